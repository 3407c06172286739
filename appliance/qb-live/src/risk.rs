//! Pre-trade risk: limits checked by the host before an order reaches the
//! broker, per account and per strategy. A strategy cannot bypass them:
//! every order path (API, strategy runner) goes through
//! [`crate::desk::Desk::submit`].
//!
//! Each limit is optional (absent = no limit) and inclusive: an order that
//! lands exactly on a limit passes, one unit beyond it is rejected with
//! the rule's name and the numbers.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// Largest quantity of one order.
    #[schema(value_type = Option<String>)]
    pub max_order_qty: Option<Decimal>,
    /// Largest notional of one order (qty × price × multiplier).
    #[schema(value_type = Option<String>)]
    pub max_order_notional: Option<Decimal>,
    /// Limit and stop prices must be within this fraction of the last
    /// price (0.05 = ±5 %).
    #[schema(value_type = Option<String>)]
    pub price_collar: Option<Decimal>,
    /// Largest absolute position per symbol, counting open orders on the
    /// same side as if they filled.
    #[schema(value_type = Option<String>)]
    pub max_position: Option<Decimal>,
    /// Most open orders at once.
    pub max_open_orders: Option<u32>,
    /// Most orders submitted in any one second.
    pub max_orders_per_sec: Option<u32>,
    /// New orders stop once the day's loss (equity below the day's
    /// starting equity) reaches this.
    #[schema(value_type = Option<String>)]
    pub daily_loss_limit: Option<Decimal>,
}

/// Why an order was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct Rejection {
    pub rule: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }
}

/// What the checks look at for one order, under one set of limits.
pub struct Exposure {
    pub qty: Decimal,
    /// Signed quantity (+ buy).
    pub signed: Decimal,
    /// Limit/stop price, or the price a market order would trade at.
    pub price: Decimal,
    pub is_priced: bool,
    pub last: Decimal,
    pub multiplier: Decimal,
    /// Current position in the symbol.
    pub position: Decimal,
    /// Open quantity on the order's side in the symbol (unsigned).
    pub open_same_side: Decimal,
    pub open_orders: u32,
    /// Orders submitted within the last second.
    pub recent_orders: u32,
    /// Today's PnL (negative is a loss).
    pub day_pnl: Decimal,
}

impl RiskLimits {
    /// Checks `e` against these limits; `scope` ("account" or "strategy
    /// NAME") goes into the message.
    pub fn check(&self, scope: &str, e: &Exposure) -> Result<(), Rejection> {
        if let Some(max) = self.max_order_qty
            && e.qty > max
        {
            return Err(Rejection::new(
                "max_order_qty",
                format!("{scope}: quantity {} exceeds {max}", e.qty),
            ));
        }
        let notional = e.qty * e.price * e.multiplier;
        if let Some(max) = self.max_order_notional
            && notional > max
        {
            return Err(Rejection::new(
                "max_order_notional",
                format!(
                    "{scope}: notional {notional} ({} × {} × {}) exceeds {max}",
                    e.qty, e.price, e.multiplier
                ),
            ));
        }
        if let Some(collar) = self.price_collar
            && e.is_priced
            && e.last > Decimal::ZERO
        {
            let off = (e.price - e.last).abs() / e.last;
            if off > collar {
                return Err(Rejection::new(
                    "price_collar",
                    format!(
                        "{scope}: price {} is {:.4} % from the last price {}, beyond ±{} %",
                        e.price,
                        off * Decimal::ONE_HUNDRED,
                        e.last,
                        collar * Decimal::ONE_HUNDRED
                    ),
                ));
            }
        }
        if let Some(max) = self.max_position {
            let dir = if e.signed.is_sign_negative() {
                Decimal::NEGATIVE_ONE
            } else {
                Decimal::ONE
            };
            let worst = (e.position + dir * e.open_same_side + e.signed).abs();
            if worst > max && worst > e.position.abs() {
                return Err(Rejection::new(
                    "max_position",
                    format!(
                        "{scope}: position would reach {worst} (now {}, open on this side {}, order {}), limit {max}",
                        e.position, e.open_same_side, e.signed
                    ),
                ));
            }
        }
        if let Some(max) = self.max_open_orders
            && e.open_orders >= max
        {
            return Err(Rejection::new(
                "max_open_orders",
                format!("{scope}: {} orders open, limit {max}", e.open_orders),
            ));
        }
        if let Some(max) = self.max_orders_per_sec
            && e.recent_orders >= max
        {
            return Err(Rejection::new(
                "max_orders_per_sec",
                format!(
                    "{scope}: {} orders in the last second, limit {max}",
                    e.recent_orders
                ),
            ));
        }
        if let Some(max) = self.daily_loss_limit
            && -e.day_pnl >= max
        {
            return Err(Rejection::new(
                "daily_loss_limit",
                format!(
                    "{scope}: today's loss {} has reached the limit {max}",
                    -e.day_pnl
                ),
            ));
        }
        Ok(())
    }
}
