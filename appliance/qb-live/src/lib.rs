//! Live paper trading: the desk (accounts, order management, persistence,
//! kill switch), pre-trade risk, and the broker seam with its paper
//! implementation. The fill rules and the ledger are `qb-trading`'s, the
//! same the backtest engine uses.

pub mod broker;
pub mod desk;
mod error;
pub mod feed;
pub mod holder;
pub mod model;
pub mod replay;
pub mod retention;
pub mod risk;
pub mod strategies;

pub use broker::{Broker, Execution, PaperBroker};
pub use desk::{AccountView, Desk, Placed, PositionView, QuoteView};
pub use error::LiveError;
pub use model::{Fill, Order, OrderRequest, OrderState, OrderType, Side};
pub use risk::{Rejection, RiskLimits};
