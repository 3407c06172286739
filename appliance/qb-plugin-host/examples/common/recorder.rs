//! An environment that fills market orders at once and records them
//! (shared by the examples and the tests; natively, strategies run in
//! it through `qb_plugin_host::native`).

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
