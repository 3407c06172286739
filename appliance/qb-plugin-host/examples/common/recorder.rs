//! An environment that fills market orders at once and records them
//! (shared by the examples and the tests).

use qb_plugin_host::{Account, Env, Order, Position, Side};

#[derive(Default, Clone)]
pub struct Recorder {
    /// Client id, symbol, side, quantity, decision time.
    pub orders: Vec<(String, String, Side, f64, i64)>,
    pub positions: std::collections::BTreeMap<String, f64>,
    pub state: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Env for Recorder {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        *self.positions.entry(order.symbol.clone()).or_default() += if order.side == Side::Buy {
            order.quantity
        } else {
            -order.quantity
        };
        self.orders.push((
            order.client_id,
            order.symbol,
            order.side,
            order.quantity,
            order.ts,
        ));
        Ok(())
    }
    fn cancel_order(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn position(&mut self, symbol: &str) -> Position {
        Position {
            symbol: symbol.into(),
            quantity: self.positions.get(symbol).copied().unwrap_or(0.0),
            average_price: 0.0,
        }
    }
    fn account(&mut self) -> Account {
        Account {
            cash: 0.0,
            equity: 0.0,
            margin_used: 0.0,
        }
    }
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }
    fn state_set(&mut self, key: &str, value: Vec<u8>) {
        self.state.insert(key.into(), value);
    }
}

/// The SDK context over a [`Recorder`]: what a native run acts through.
pub struct NativeCtx<'a>(pub &'a mut Recorder);

fn to_host_side(s: quantbox_sdk::Side) -> Side {
    match s {
        quantbox_sdk::Side::Buy => Side::Buy,
        quantbox_sdk::Side::Sell => Side::Sell,
    }
}

impl quantbox_sdk::Ctx for NativeCtx<'_> {
    fn submit_order(&mut self, o: quantbox_sdk::Order) -> Result<(), String> {
        self.0.submit_order(Order {
            client_id: o.client_id,
            symbol: o.symbol,
            side: to_host_side(o.side),
            quantity: o.quantity,
            type_: match o.type_ {
                quantbox_sdk::OrderType::Market => qb_plugin_host::OrderType::Market,
                quantbox_sdk::OrderType::Limit(p) => qb_plugin_host::OrderType::Limit(p),
                quantbox_sdk::OrderType::Stop(p) => qb_plugin_host::OrderType::Stop(p),
            },
            ts: o.ts,
        })
    }
    fn cancel_order(&mut self, id: &str) -> Result<(), String> {
        self.0.cancel_order(id)
    }
    fn position(&mut self, s: &str) -> quantbox_sdk::Position {
        let p = self.0.position(s);
        quantbox_sdk::Position {
            symbol: p.symbol,
            quantity: p.quantity,
            average_price: p.average_price,
        }
    }
    fn account(&mut self) -> quantbox_sdk::Account {
        quantbox_sdk::Account {
            cash: 0.0,
            equity: 0.0,
            margin_used: 0.0,
        }
    }
    fn log(&mut self, _: quantbox_sdk::LogLevel, _: &str) {}
    fn state_get(&mut self, k: &str) -> Option<Vec<u8>> {
        self.0.state_get(k)
    }
    fn state_set(&mut self, k: &str, v: &[u8]) {
        self.0.state_set(k, v.to_vec())
    }
    fn random_u64(&mut self) -> u64 {
        0
    }
}
