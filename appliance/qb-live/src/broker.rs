//! The broker seam: where accepted orders go. [`PaperBroker`] simulates a
//! venue against live quotes with the backtest's fill rules
//! (`qb_trading::execution`, tick mode); a gateway to a real venue (a CTP
//! front, an exchange API) implements the same trait:
//!
//! - `place` hands over an order the desk has accepted (risk passed,
//!   persisted); an `Err` is the venue refusing it;
//! - `cancel` withdraws a working order; `Err` if the venue no longer has it;
//! - `on_quote` passes market data on (a real gateway may ignore it);
//! - `take_executions` returns the executions the venue reported since the
//!   last call; the desk books and persists each before anyone hears of it.
//!
//! Strategies never see the broker: they talk to the desk, so changing the
//! venue changes nothing in them.

use std::collections::BTreeMap;

use qb_trading::execution::{Kind, Px, QuotePx, Slippage, fill_price, priority};
use rust_decimal::Decimal;

use crate::model::{Order, OrderType, Quote, Side};

/// A venue's report that (part of) an order traded.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub order_id: String,
    pub qty: Decimal,
    pub price: Decimal,
    /// Market time (Unix ns).
    pub ts: i64,
}

pub trait Broker: Send {
    fn name(&self) -> &str;
    fn place(&mut self, order: &Order, price_tick: Decimal) -> Result<(), String>;
    fn cancel(&mut self, order_id: &str) -> Result<(), String>;
    fn on_quote(&mut self, symbol: &str, quote: &Quote);
    fn take_executions(&mut self) -> Vec<Execution>;
}

struct Working {
    order: Order,
    tick: Decimal,
    seq: u64,
}

/// Fills whole orders against the best bid/ask: a market order at the
/// current (or, without one yet, the next) quote; limits and stops as in a
/// tick-mode backtest. No partial fills: the paper venue has no depth.
#[derive(Default)]
pub struct PaperBroker {
    working: BTreeMap<String, Working>,
    quotes: BTreeMap<String, Quote>,
    slippage_ticks: u32,
    seq: u64,
    out: Vec<Execution>,
}

impl PaperBroker {
    /// `slippage_ticks` price ticks against the trader on market and stop
    /// fills.
    pub fn new(slippage_ticks: u32) -> Self {
        Self {
            slippage_ticks,
            ..Self::default()
        }
    }

    fn kind(o: &Order) -> Kind {
        let p = o.price.unwrap_or_default();
        match o.order_type {
            OrderType::Market => Kind::Market,
            OrderType::Limit => Kind::Limit(p),
            OrderType::Stop => Kind::Stop(p),
        }
    }

    /// Tries the working orders of `symbol` on its latest quote.
    fn try_symbol(&mut self, symbol: &str) {
        let Some(q) = self.quotes.get(symbol).copied() else {
            return;
        };
        let mut due: Vec<(u8, u64, String)> = self
            .working
            .iter()
            .filter(|(_, w)| w.order.symbol == symbol)
            .map(|(id, w)| (priority(Self::kind(&w.order)), w.seq, id.clone()))
            .collect();
        due.sort();
        for (_, _, id) in due {
            let Some(w) = self.working.get_mut(&id) else {
                continue;
            };
            let px = Px::Quote {
                quote: QuotePx {
                    bid: q.bid,
                    ask: q.ask,
                },
                rested: w.order.rested,
            };
            let buy = w.order.side == Side::Buy;
            let slip = Slippage::Ticks(self.slippage_ticks);
            match fill_price(Self::kind(&w.order), buy, px, slip, w.tick) {
                Some(price) => {
                    let w = self.working.remove(&id).expect("present");
                    self.out.push(Execution {
                        order_id: id,
                        qty: w.order.qty - w.order.filled_qty,
                        price,
                        ts: q.ts,
                    });
                }
                None => w.order.rested = true,
            }
        }
    }
}

impl Broker for PaperBroker {
    fn name(&self) -> &str {
        "paper"
    }

    fn place(&mut self, order: &Order, price_tick: Decimal) -> Result<(), String> {
        self.seq += 1;
        self.working.insert(
            order.id.clone(),
            Working {
                order: order.clone(),
                tick: price_tick,
                seq: self.seq,
            },
        );
        self.try_symbol(&order.symbol);
        Ok(())
    }

    fn cancel(&mut self, order_id: &str) -> Result<(), String> {
        self.working
            .remove(order_id)
            .map(|_| ())
            .ok_or_else(|| format!("order {order_id} is not working"))
    }

    fn on_quote(&mut self, symbol: &str, quote: &Quote) {
        self.quotes.insert(symbol.to_string(), *quote);
        self.try_symbol(symbol);
    }

    fn take_executions(&mut self) -> Vec<Execution> {
        std::mem::take(&mut self.out)
    }
}
