//! Market data into the desk: every [`TickBatch`] published on the ticks
//! topic (live ingest, replay feeds) updates quotes and lets the paper
//! broker match.

use std::sync::Arc;

use qb_core::PubSub;
use qb_core::market::{TICKS_TOPIC, TickBatch};
use tokio::sync::broadcast::error::RecvError;

use crate::desk::Desk;

/// Follows the ticks topic until the pub/sub closes.
pub fn follow_ticks(desk: Arc<Desk>, pubsub: &dyn PubSub) -> tokio::task::JoinHandle<()> {
    let mut rx = pubsub.subscribe(TICKS_TOPIC);
    tokio::spawn(async move {
        loop {
            let event = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "desk fell behind the tick feed");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Ok(b) = serde_json::from_value::<TickBatch>(event.data.clone()) else {
                continue;
            };
            for i in 0..b.ts.len() {
                let (bid, ask) = (
                    b.bid.get(i).copied().flatten(),
                    b.ask.get(i).copied().flatten(),
                );
                if let Err(e) = desk.on_tick(&b.symbol, b.ts[i], b.price[i], bid, ask).await {
                    tracing::error!(symbol = %b.symbol, error = %e, "desk could not book a tick");
                }
            }
        }
    })
}
