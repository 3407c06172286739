//! Cash, positions and fees: the accounting of a backtest, or of a live
//! account or strategy.
//!
//! Rules (netting, one position per symbol):
//! - A fill first reduces an opposite position (closing), any remainder
//!   opens a new one. Closing quantity is matched against lots opened on
//!   earlier trading days first, then today's (`close-today` fees apply to
//!   the latter, as Chinese futures exchanges charge them).
//! - Realized PnL of a close: `(fill - average) * qty * multiplier`,
//!   negated for shorts. The average price changes only when opening; it
//!   is a quotient, kept to `Decimal`'s 28 significant digits (the one
//!   rounding in the ledger; cash, fees and PnL are otherwise exact).
//! - Fees: `qty * price * multiplier * rate + qty * per_lot`, with the
//!   open / close / close-today rates of the instrument's schedule.
//! - Every instrument is margined: `margin = |qty| * price * multiplier *
//!   margin_ratio` (ratio 1 is fully paid). Equity = cash + unrealized PnL;
//!   cash moves by realized PnL and fees only. An order is accepted when
//!   the margin after it fits within equity.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use qb_core::market::Instrument;
use rust_decimal::Decimal;

/// A fill as the ledger books it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fill {
    pub ts: i64,
    pub symbol: String,
    pub client_id: String,
    /// Signed: positive buys.
    pub qty: Decimal,
    pub price: Decimal,
    pub commission: Decimal,
    /// Realized PnL of the closing part (before fees).
    pub realized: Decimal,
}

/// One symbol's position.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Signed: negative is short.
    pub qty: Decimal,
    pub avg_price: Decimal,
    /// Of `qty`, the part opened on `today`.
    pub today_qty: Decimal,
    pub today: Option<NaiveDate>,
    pub realized: Decimal,
    pub fees: Decimal,
    /// The last price it was marked at.
    pub mark: Decimal,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("unknown instrument {0}")]
    UnknownSymbol(String),
    #[error("arithmetic overflow booking {0}")]
    Overflow(String),
}

/// Cash and positions.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub cash: Decimal,
    pub positions: BTreeMap<String, Position>,
    instruments: BTreeMap<String, Instrument>,
    zones: BTreeMap<String, chrono_tz::Tz>,
}

/// A fill split against the position (unsigned quantities).
#[derive(Debug, Clone, Copy)]
struct Split {
    day: NaiveDate,
    close_old: Decimal,
    close_today: Decimal,
    open: Decimal,
}

/// -1, 0 or 1.
fn sign(x: Decimal) -> Decimal {
    if x.is_zero() {
        Decimal::ZERO
    } else if x.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

/// The checked arithmetic every booking goes through.
fn mul(a: Decimal, b: Decimal, what: &str) -> Result<Decimal, LedgerError> {
    a.checked_mul(b)
        .ok_or_else(|| LedgerError::Overflow(what.into()))
}
fn add(a: Decimal, b: Decimal, what: &str) -> Result<Decimal, LedgerError> {
    a.checked_add(b)
        .ok_or_else(|| LedgerError::Overflow(what.into()))
}

impl Ledger {
    pub fn new(cash: Decimal, instruments: impl IntoIterator<Item = Instrument>) -> Self {
        let instruments: BTreeMap<String, Instrument> = instruments
            .into_iter()
            .map(|i| (i.symbol.clone(), i))
            .collect();
        let zones = instruments
            .iter()
            .map(|(s, i)| (s.clone(), i.timezone.parse().unwrap_or(chrono_tz::UTC)))
            .collect();
        Self {
            cash,
            positions: BTreeMap::new(),
            instruments,
            zones,
        }
    }

    /// Adds (or replaces) an instrument the ledger can book.
    pub fn add_instrument(&mut self, inst: Instrument) {
        let tz = inst.timezone.parse().unwrap_or(chrono_tz::UTC);
        self.zones.insert(inst.symbol.clone(), tz);
        self.instruments.insert(inst.symbol.clone(), inst);
    }

    pub fn instrument(&self, symbol: &str) -> Option<&Instrument> {
        self.instruments.get(symbol)
    }

    /// The trading day of `ts` for `symbol`: the calendar date in the
    /// instrument's time zone.
    fn day(&self, symbol: &str, ts: i64) -> NaiveDate {
        let tz = self.zones.get(symbol).copied().unwrap_or(chrono_tz::UTC);
        DateTime::from_timestamp_nanos(ts)
            .with_timezone(&tz)
            .date_naive()
    }

    pub fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).map_or(Decimal::ZERO, |p| p.qty)
    }

    /// Fees of trading `qty` (unsigned) at `price` with the given rates.
    fn fee(
        inst: &Instrument,
        qty: Decimal,
        price: Decimal,
        rate: Decimal,
        per_lot: Decimal,
    ) -> Result<Decimal, LedgerError> {
        let notional = mul(mul(qty, price, "fee")?, inst.multiplier, "fee")?;
        add(
            mul(notional, rate, "fee")?,
            mul(qty, per_lot, "fee")?,
            "fee",
        )
    }

    /// The commission a fill of signed `qty` at `price` would cost now.
    pub fn commission(
        &self,
        symbol: &str,
        ts: i64,
        qty: Decimal,
        price: Decimal,
    ) -> Result<Decimal, LedgerError> {
        let inst = self
            .instruments
            .get(symbol)
            .ok_or_else(|| LedgerError::UnknownSymbol(symbol.into()))?;
        let split = self.split(symbol, ts, qty);
        Self::fees(inst, split, price)
    }

    /// Fees of a fill split into (closing older lots, closing today's
    /// lots, opening).
    fn fees(inst: &Instrument, split: Split, price: Decimal) -> Result<Decimal, LedgerError> {
        let f = &inst.fees;
        let old = Self::fee(inst, split.close_old, price, f.close_rate, f.close_per_lot)?;
        let today = Self::fee(
            inst,
            split.close_today,
            price,
            f.close_today_rate,
            f.close_today_per_lot,
        )?;
        let open = Self::fee(inst, split.open, price, f.open_rate, f.open_per_lot)?;
        add(add(old, today, "fee")?, open, "fee")
    }

    /// How a signed fill of `symbol` at `ts` splits against the position:
    /// closing older lots first, then today's, the rest opening.
    fn split(&self, symbol: &str, ts: i64, qty: Decimal) -> Split {
        let day = self.day(symbol, ts);
        let none = Split {
            day,
            close_old: Decimal::ZERO,
            close_today: Decimal::ZERO,
            open: qty.abs(),
        };
        let Some(pos) = self.positions.get(symbol) else {
            return none;
        };
        let opposite = !pos.qty.is_zero() && (pos.qty.is_sign_positive() != qty.is_sign_positive());
        if !opposite {
            return none;
        }
        let closing = qty.abs().min(pos.qty.abs());
        let today = if pos.today == Some(day) {
            pos.today_qty.abs()
        } else {
            Decimal::ZERO
        };
        let close_old = closing.min(pos.qty.abs() - today);
        Split {
            day,
            close_old,
            close_today: closing - close_old,
            open: qty.abs() - closing,
        }
    }

    /// Books a fill: position, average price, realized PnL, fees, cash.
    pub fn apply(
        &mut self,
        ts: i64,
        symbol: &str,
        client_id: &str,
        qty: Decimal,
        price: Decimal,
    ) -> Result<Fill, LedgerError> {
        let inst = self
            .instruments
            .get(symbol)
            .ok_or_else(|| LedgerError::UnknownSymbol(symbol.into()))?;
        let mult = inst.multiplier;
        let split = self.split(symbol, ts, qty);
        let commission = Self::fees(inst, split, price)?;
        let pos = self.positions.entry(symbol.to_string()).or_default();
        if pos.today != Some(split.day) {
            pos.today = Some(split.day);
            pos.today_qty = Decimal::ZERO;
        }
        let closing = split.close_old + split.close_today;
        let mut realized = Decimal::ZERO;
        let mut remaining = qty;
        if !closing.is_zero() {
            realized = mul(
                mul(price - pos.avg_price, closing, "pnl")?,
                mul(mult, sign(pos.qty), "pnl")?,
                "pnl",
            )?;
            pos.today_qty -= split.close_today * sign(pos.today_qty);
            let signed_closing = closing * sign(qty);
            pos.qty += signed_closing;
            remaining -= signed_closing;
            if pos.qty.is_zero() {
                pos.avg_price = Decimal::ZERO;
            }
        }
        if !remaining.is_zero() {
            // Opening (or adding): the average price moves.
            let cost = add(
                mul(pos.avg_price, pos.qty.abs(), "avg")?,
                mul(price, remaining.abs(), "avg")?,
                "avg",
            )?;
            pos.qty += remaining;
            pos.avg_price = cost / pos.qty.abs();
            pos.today_qty += remaining;
        }
        pos.realized = add(pos.realized, realized, "pnl")?;
        pos.fees = add(pos.fees, commission, "fees")?;
        pos.mark = price;
        self.cash = add(self.cash, realized - commission, "cash")?;
        Ok(Fill {
            ts,
            symbol: symbol.into(),
            client_id: client_id.into(),
            qty,
            price,
            commission,
            realized,
        })
    }

    /// Marks a symbol at `price` (for unrealized PnL and margin).
    pub fn mark(&mut self, symbol: &str, price: Decimal) {
        if let Some(p) = self.positions.get_mut(symbol) {
            p.mark = price;
        }
    }

    /// Unrealized PnL at the marks.
    pub fn unrealized(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(s, p)| (p.mark - p.avg_price) * p.qty * self.instruments[s].multiplier)
            .sum()
    }

    pub fn equity(&self) -> Decimal {
        self.cash + self.unrealized()
    }

    /// Margin held at the marks, optionally with `symbol` at `qty` instead.
    pub fn margin(&self, replace: Option<(&str, Decimal, Decimal)>) -> Decimal {
        let mut total = Decimal::ZERO;
        let mut replaced = false;
        for (s, p) in &self.positions {
            let inst = &self.instruments[s];
            let (qty, price) = match replace {
                Some((sym, q, px)) if sym == s => {
                    replaced = true;
                    (q, px)
                }
                _ => (p.qty, p.mark),
            };
            total += qty.abs() * price * inst.multiplier * inst.margin_ratio;
        }
        if let Some((sym, q, px)) = replace
            && !replaced
            && let Some(inst) = self.instruments.get(sym)
        {
            total += q.abs() * px * inst.multiplier * inst.margin_ratio;
        }
        total
    }

    /// Why an order of signed `qty` at about `price` cannot be accepted, if
    /// it cannot: the margin after it (and its fees) must fit in equity.
    pub fn check_margin(
        &self,
        ts: i64,
        symbol: &str,
        held_after: Decimal,
        qty: Decimal,
        price: Decimal,
    ) -> Result<(), String> {
        let fee = self
            .commission(symbol, ts, qty, price)
            .map_err(|e| e.to_string())?;
        let need = self.margin(Some((symbol, held_after, price)));
        let equity = self.equity() - fee;
        if need > equity {
            return Err(format!(
                "insufficient margin: position {held_after} {symbol} at {price} needs {need} margin in all, equity after fees is {equity}"
            ));
        }
        Ok(())
    }
}
