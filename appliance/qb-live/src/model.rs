//! Orders, fills and accounts as the order manager keeps and persists them.

use std::collections::BTreeMap;

use qb_trading::ledger::Position;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::risk::RiskLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for buys, -1 for sells.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
}

/// What a trader or a strategy asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Unique per account and source; the same id twice is one order.
    #[schema(min_length = 1, max_length = 64)]
    pub client_id: String,
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    pub side: Side,
    #[schema(value_type = String)]
    pub qty: Decimal,
    #[serde(rename = "type", default = "market")]
    pub order_type: OrderType,
    /// Limit or stop price.
    #[schema(value_type = Option<String>)]
    pub price: Option<Decimal>,
}

fn market() -> OrderType {
    OrderType::Market
}

/// Order states. `new` is never acknowledged: an order is persisted as
/// accepted or rejected before its submitter hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    New,
    Accepted,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

impl OrderState {
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderState::New | OrderState::Accepted | OrderState::PartiallyFilled
        )
    }
}

/// An order and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// Server id (UUID v7: sorts by creation).
    pub id: String,
    pub account: String,
    /// The strategy that sent it; `None` for manual orders.
    pub strategy: Option<String>,
    pub client_id: String,
    pub symbol: String,
    pub side: Side,
    #[schema(value_type = String)]
    pub qty: Decimal,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    #[schema(value_type = Option<String>)]
    pub price: Option<Decimal>,
    pub state: OrderState,
    #[schema(value_type = String)]
    pub filled_qty: Decimal,
    #[schema(value_type = Option<String>)]
    pub avg_fill_price: Option<Decimal>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// The risk rule that rejected it.
    pub rule: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Tried on a quote already (a resting limit fills at its own price).
    #[serde(default)]
    pub rested: bool,
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Fill {
    /// Per account, increasing.
    pub seq: u64,
    pub order_id: String,
    pub account: String,
    pub strategy: Option<String>,
    pub client_id: String,
    pub symbol: String,
    pub side: Side,
    #[schema(value_type = String)]
    pub qty: Decimal,
    #[schema(value_type = String)]
    pub price: Decimal,
    #[schema(value_type = String)]
    pub commission: Decimal,
    /// Realized PnL of the closing part, before fees.
    #[schema(value_type = String)]
    pub realized: Decimal,
    /// Market time of the quote it filled on (Unix ns).
    pub ts: i64,
}

/// Cash and positions of an account or of one strategy in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub cash: Decimal,
    pub positions: BTreeMap<String, Position>,
}

/// An account as persisted: its book, the strategies' sub-books (cash
/// starts at 0, so a sub-book's equity is the strategy's PnL), state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountDoc {
    pub name: String,
    pub initial_cash: Decimal,
    pub book: Book,
    pub strategies: BTreeMap<String, Book>,
    pub halted: bool,
    pub halted_reason: Option<String>,
    pub limits: RiskLimits,
    pub strategy_limits: BTreeMap<String, RiskLimits>,
    /// UTC day (YYYY-MM-DD) and the equity it started with, for the daily
    /// loss limit.
    pub day: String,
    pub day_start_equity: Decimal,
    /// Each strategy's sub-book equity when the day started.
    #[serde(default)]
    pub strategy_day_start: BTreeMap<String, Decimal>,
    pub next_fill_seq: u64,
}

/// The best quote and last trade of a symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub ts: i64,
    pub last: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
}
