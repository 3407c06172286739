//! One desk in the cluster: the `desk` lease.
//!
//! Every trader node runs [`keep`]. The node that takes the lease opens the
//! desk and the live strategies over a [`Fenced`] store, so every trading
//! write (orders, fills, books, the kill switch, strategy documents and
//! state) is checked against the lease's epoch in its own transaction.
//! The others wait on standby and take over when the lease expires (the
//! holder died, froze or lost the database) or is released (a graceful
//! stop): they restore positions, open orders, the kill switch and the
//! strategies from the store, and client order ids stay idempotent
//! because the index of ids is restored with the orders. A holder that
//! comes back after a takeover finds its next write refused and its next
//! renewal denied, and stops trading: it writes nothing.
//!
//! On one box the same loop runs against the embedded store: the lease is
//! taken at start (a restart of the same node takes it at once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use qb_core::{Fenced, KvStore, Lease, PubSub};
use tokio::sync::watch;

use crate::desk::Desk;
use crate::error::LiveError;
use crate::strategies::Strategies;

/// The lease's name in the store.
pub const DESK_LEASE: &str = "desk";

/// How the lease is timed: a holder renews every `renew` for `ttl`; a
/// standby asks every `poll`. A dead holder is replaced within `ttl +
/// poll` of its last renewal.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl: Duration,
    pub renew: Duration,
    pub poll: Duration,
}

/// What a node runs while it holds the lease.
pub struct Held {
    pub desk: Arc<Desk>,
    pub strategies: Arc<Strategies>,
    pub lease: Lease,
    feed: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct SlotState {
    held: Option<Arc<Held>>,
    /// The holder last seen (this node while held).
    holder: Option<String>,
}

/// This node's view of the desk: held here, or where it is.
#[derive(Clone, Default)]
pub struct DeskSlot(Arc<RwLock<SlotState>>);

impl DeskSlot {
    pub fn held(&self) -> Option<Arc<Held>> {
        self.0.read().held.clone()
    }

    pub fn desk(&self) -> Option<Arc<Desk>> {
        self.held().map(|h| h.desk.clone())
    }

    pub fn strategies(&self) -> Option<Arc<Strategies>> {
        self.held().map(|h| h.strategies.clone())
    }

    /// The node holding the desk as last seen, if any.
    pub fn holder(&self) -> Option<String> {
        self.0.read().holder.clone()
    }

    fn set(&self, held: Option<Arc<Held>>, holder: Option<String>) {
        let mut s = self.0.write();
        s.held = held;
        s.holder = holder;
    }
}

/// Opens the desk and strategies over the fenced store.
pub type Opener = Box<
    dyn Fn(
            Arc<dyn KvStore>,
        )
            -> Pin<Box<dyn Future<Output = Result<(Arc<Desk>, Arc<Strategies>), LiveError>> + Send>>
        + Send
        + Sync,
>;

/// Reports lease changes: held (1/0) and the epoch.
pub trait LeaseGauges: Send + Sync {
    fn held(&self, held: bool, epoch: i64);
}

enum Outcome {
    Lost,
    Stopping,
}

/// Takes the desk lease whenever it can, runs the desk while it holds it,
/// and stands by otherwise, until `stop` turns true. On stop, a holder
/// stops its strategies after a final snapshot and releases the lease so
/// a standby takes over at once.
#[allow(clippy::too_many_arguments)]
pub async fn keep(
    kv: Arc<dyn KvStore>,
    pubsub: Arc<dyn PubSub>,
    node: String,
    timing: Timing,
    slot: DeskSlot,
    open: Opener,
    gauges: Arc<dyn LeaseGauges>,
    mut stop: watch::Receiver<bool>,
) {
    let mut announced_standby = false;
    while !*stop.borrow() {
        let lease = match kv.lease_acquire(DESK_LEASE, &node, timing.ttl).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let holder = holder_now(kv.as_ref()).await;
                if !announced_standby {
                    tracing::info!(holder = ?holder, "desk held by another trader: standing by");
                    announced_standby = true;
                }
                slot.set(None, holder);
                wait(timing.poll, &mut stop).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not ask for the desk lease");
                wait(timing.poll, &mut stop).await;
                continue;
            }
        };
        announced_standby = false;
        let taken = Instant::now();
        let fenced: Arc<dyn KvStore> = Arc::new(Fenced::new(kv.clone(), lease.clone()));
        let (desk, strategies) = match open(fenced).await {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(error = %e, epoch = lease.epoch, "could not open the desk; releasing the lease");
                let _ = kv.lease_release(&lease).await;
                wait(timing.poll, &mut stop).await;
                continue;
            }
        };
        let feed = crate::feed::follow_ticks(desk.clone(), pubsub.as_ref());
        let held = Arc::new(Held {
            desk,
            strategies,
            lease: lease.clone(),
            feed,
        });
        slot.set(Some(held.clone()), Some(node.clone()));
        gauges.held(true, lease.epoch);
        tracing::info!(
            epoch = lease.epoch,
            open_ms = taken.elapsed().as_millis() as u64,
            "desk lease taken: this node trades"
        );
        let outcome = hold(kv.as_ref(), &lease, timing, &mut stop).await;
        // Standing by from this moment, pointing at whoever took over (a
        // standby never says "held by no node" while a node holds it).
        slot.set(None, holder_now(kv.as_ref()).await);
        gauges.held(false, lease.epoch);
        held.feed.abort();
        match outcome {
            Outcome::Stopping => {
                let n = held.strategies.shutdown().await;
                tracing::info!(
                    strategies = n,
                    "live strategies stopped after a final snapshot; they resume at the next start"
                );
                if let Err(e) = kv.lease_release(&lease).await {
                    tracing::warn!(error = %e, "could not release the desk lease; it expires by itself");
                }
                return;
            }
            Outcome::Lost => {
                tracing::warn!(
                    epoch = lease.epoch,
                    "desk lease lost (another trader took over, or the store was out of reach \
                     for a whole lease term): this node stops trading"
                );
                held.strategies.shutdown().await;
            }
        }
    }
}

/// The node holding the desk lease, as the store says now.
async fn holder_now(kv: &dyn KvStore) -> Option<String> {
    kv.lease_state(DESK_LEASE)
        .await
        .ok()
        .flatten()
        .map(|s| s.holder)
}

/// Renews `lease` until it is lost or `stop` turns true.
async fn hold(
    kv: &dyn KvStore,
    lease: &Lease,
    timing: Timing,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut renewed = Instant::now();
    loop {
        if wait(timing.renew, stop).await {
            return Outcome::Stopping;
        }
        // A renewal stuck on a dead link must not keep this node trading
        // past its term: it is given until the next one is due.
        let renewal = tokio::time::timeout(timing.renew, kv.lease_renew(lease, timing.ttl))
            .await
            .unwrap_or_else(|_| {
                Err(qb_core::StoreError::Backend(
                    "the renewal did not answer in time".into(),
                ))
            });
        match renewal {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => return Outcome::Lost,
            // Out of reach: after a whole term another node may hold it.
            Err(e) if renewed.elapsed() >= timing.ttl => {
                tracing::warn!(error = %e, "desk lease not renewed for a whole term");
                return Outcome::Lost;
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the desk lease; retrying"),
        }
    }
}

/// Sleeps `d`; true if `stop` turned true meanwhile.
async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
