//! `trading.retention`: final orders and their fills leave the hot-state
//! store `trading.order_retention_days` after their last change (nothing
//! when it is 0). Open orders, books and positions are never touched.

use qb_jobs::{JobContext, JobError, JobHandler};

use crate::holder::DeskSlot;

/// Runs on the `trading` queue, which only nodes with the `trader` role
/// serve; other nodes register it without a desk (they know the kind, to
/// accept and schedule it, and never run it). Standby traders do not
/// claim it (see `WorkerDeps::takes`); should one run it all the same,
/// it fails naming the holder.
pub struct TradingRetention {
    pub desk: Option<DeskSlot>,
    pub retention_days: u32,
}

impl JobHandler for TradingRetention {
    fn kind(&self) -> &'static str {
        "trading.retention"
    }
    fn queue(&self) -> &'static str {
        qb_jobs::QUEUE_TRADING
    }
    fn description(&self) -> &'static str {
        "Delete final orders and their fills past trading.order_retention_days"
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        _: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let slot = self
            .desk
            .as_ref()
            .ok_or_else(|| JobError::failed("trading jobs run on nodes with the trader role"))?;
        let desk = slot.desk().ok_or_else(|| {
            JobError::failed(format!(
                "this trader is on standby; the desk is held by {}",
                slot.holder().unwrap_or_else(|| "no node yet".into())
            ))
        })?;
        let (orders, fills) = match qb_jobs::retention_cut(self.retention_days) {
            None => (0, 0),
            Some(cut) => ctx
                .block_on(desk.prune(cut.timestamp_millis()))
                .map_err(JobError::failed)?,
        };
        Ok(serde_json::json!({
            "orders_deleted": orders,
            "fills_deleted": fills,
            "retention_days": self.retention_days,
        }))
    }
}
