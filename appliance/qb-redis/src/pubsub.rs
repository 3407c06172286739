//! [`RedisPubSub`]: the event fan-out of a cluster over Redis pub/sub.
//!
//! Every event travels through Redis, also to the subscribers of the node
//! that published it, so every node sees one stream in one order:
//!
//! - `publish` serialises `data` to JSON and pushes it onto a bounded queue
//!   (never blocks); one publisher task drains the queue in order and sends
//!   `PUBLISH {prefix}:ev:{topic}` pipelines over a self-reconnecting
//!   multiplexed connection. A full queue drops the event (counted by
//!   [`RedisPubSub::dropped`]); a failed `PUBLISH` loses its batch (counted
//!   by [`RedisPubSub::failed`]); both are logged at most every few seconds.
//! - one subscriber task holds a dedicated connection with
//!   `PSUBSCRIBE {prefix}:ev:*` and forwards each message to the local
//!   per-topic broadcast channel (capacity 4096, as the embedded adapter);
//!   a subscriber falling further behind gets `RecvError::Lagged`. When
//!   the connection drops (or stops answering pings) the task reconnects
//!   with backoff.
//!
//! What is lost, by contract (Redis carries only what may be lost): events
//! in flight when Redis restarts, events published while Redis or the
//! subscriber connection is away, and events published before a
//! subscriber's `subscribe`. Redis stores nothing for this adapter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use qb_core::seams::Event;
use qb_core::{PubSub, StoreResult};
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, backend, client, glob_escape, manager};

/// Messages a local subscriber may fall behind by before it loses the oldest.
const CAPACITY: usize = 4096;
/// Events waiting for the publisher task before new ones are dropped.
const QUEUE: usize = 100_000;
/// `PUBLISH` commands sent in one pipeline.
const BATCH: usize = 512;
/// How often the subscriber connection is probed for liveness.
const PING_EVERY: Duration = Duration::from_secs(15);
/// At most one warning about lost events per this long.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Backoff between attempts to reconnect the subscriber connection.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A subscriber connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>>;

/// [`PubSub`] over Redis. Cheap to clone; the background tasks end when
/// the last clone is dropped (the publisher after draining its queue).
#[derive(Clone)]
pub struct RedisPubSub {
    inner: Arc<Inner>,
}

struct Inner {
    /// `{prefix}:ev:`
    channel_prefix: String,
    queue: mpsc::Sender<(String, String)>,
    topics: Topics,
    stats: Arc<Stats>,
    subscriber: JoinHandle<()>,
    /// Whether the subscription is up (events can reach this node).
    connected: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// Counters of lost events, and the throttle of their warning.
struct Stats {
    dropped: AtomicU64,
    failed: AtomicU64,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last warning; `u64::MAX` for never.
    last_warning: AtomicU64,
}

impl Stats {
    fn new() -> Self {
        Self {
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            epoch: Instant::now(),
            last_warning: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether a warning may be logged now (at most one per [`LOG_EVERY`]).
    fn warning_due(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_warning.load(Ordering::Relaxed);
        if last != u64::MAX && now < last.saturating_add(LOG_EVERY.as_millis() as u64) {
            return false;
        }
        self.last_warning
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn warn_lost(&self, why: &str) {
        if self.warning_due() {
            tracing::warn!(
                dropped_queue_full = self.dropped.load(Ordering::Relaxed),
                failed_publish = self.failed.load(Ordering::Relaxed),
                "events lost on their way to Redis: {why}"
            );
        }
    }
}

impl RedisPubSub {
    /// Connects to `url` and subscribes to the events of `prefix`; fails at
    /// once (`Backend`) when Redis does not answer, `Invalid` for a
    /// malformed URL. Must be called inside a tokio runtime, which then
    /// runs the publisher and subscriber tasks. Events published after
    /// this returns reach every subscriber of every connected node.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<RedisPubSub> {
        let client = client(url)?;
        let conn = manager(&client).await?;
        let channel_prefix = format!("{prefix}:ev:");
        let pattern = format!("{}*", glob_escape(&channel_prefix));
        let subscription = subscribe(&client, &pattern).await?;

        let topics: Topics = Arc::default();
        let stats = Arc::new(Stats::new());
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publisher(rx, conn, stats.clone()));
        let connected = Arc::new(AtomicBool::new(true));
        let subscriber = tokio::spawn(subscriber(
            client,
            pattern,
            channel_prefix.clone(),
            topics.clone(),
            subscription,
            connected.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                channel_prefix,
                queue,
                topics,
                stats,
                subscriber,
                connected,
            }),
        })
    }

    /// Events dropped because the publish queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.stats.dropped.load(Ordering::Relaxed)
    }

    /// Events lost because their `PUBLISH` failed (Redis away).
    pub fn failed(&self) -> u64 {
        self.inner.stats.failed.load(Ordering::Relaxed)
    }
}

impl PubSub for RedisPubSub {
    fn publish(&self, topic: &str, data: serde_json::Value) {
        let channel = format!("{}{topic}", self.inner.channel_prefix);
        let payload = data.to_string();
        match self.inner.queue.try_send((channel, payload)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.inner.stats.warn_lost("publish queue full");
            }
            // The publisher task is gone: the runtime is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.inner.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Event>> {
        // Subscribing under the lock: the forwarder removes channels that
        // have no receivers under the same lock.
        self.inner
            .topics
            .lock()
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    fn status(&self) -> Result<(), String> {
        if self.inner.connected.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the Redis subscription is reconnecting; events are lost until it is back".into())
        }
    }
}

/// Sends the queued events, in order, in pipelines of up to [`BATCH`].
async fn publisher(
    mut rx: mpsc::Receiver<(String, String)>,
    mut conn: ConnectionManager,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        if let Err(e) = pipe.exec_async(&mut conn).await {
            stats
                .failed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            stats.warn_lost(&format!("PUBLISH failed: {e}"));
        }
        batch.clear();
    }
}

/// A dedicated pub/sub connection subscribed to `pattern`.
async fn subscribe(
    client: &redis::Client,
    pattern: &str,
) -> StoreResult<(PubSubSink, PubSubStream)> {
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| backend("connecting timed out"))?
        .map_err(backend)?;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(RESPONSE_TIMEOUT, sink.psubscribe(pattern))
        .await
        .map_err(|_| backend("PSUBSCRIBE timed out"))?
        .map_err(backend)?;
    Ok((sink, stream))
}

/// Forwards every message of the subscription to the local channels;
/// reconnects with backoff whenever the connection is lost.
async fn subscriber(
    client: redis::Client,
    pattern: String,
    channel_prefix: String,
    topics: Topics,
    first: (PubSubSink, PubSubStream),
    connected: Arc<AtomicBool>,
) {
    let mut subscription = Some(first);
    let mut pause = RECONNECT_MIN;
    loop {
        let (mut sink, mut stream) = match subscription.take() {
            Some(s) => s,
            None => match subscribe(&client, &pattern).await {
                Ok(s) => {
                    tracing::info!(pattern, "Redis event subscription restored");
                    connected.store(true, Ordering::Relaxed);
                    s
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = pause.as_millis() as u64,
                        "Redis event subscription: reconnecting failed"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        let since = Instant::now();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => forward(&topics, &channel_prefix, &msg),
                    None => break "connection closed".to_string(),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("ping failed: {e}"),
                        Err(_) => break "ping unanswered".to_string(),
                    }
                }
            }
        };
        drop((sink, stream));
        connected.store(false, Ordering::Relaxed);
        if since.elapsed() >= STABLE_AFTER {
            pause = RECONNECT_MIN;
        }
        tracing::warn!(
            reason = why,
            retry_in_ms = pause.as_millis() as u64,
            "Redis event subscription lost; events published until it is back are lost"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Hands one Redis message to the local subscribers of its topic.
fn forward(topics: &Topics, channel_prefix: &str, msg: &redis::Msg) {
    let channel = msg.get_channel_name();
    let Some(topic) = channel.strip_prefix(channel_prefix) else {
        return;
    };
    let sender = {
        let mut topics = topics.lock();
        let Some(sender) = topics.get(topic) else {
            return;
        };
        if sender.receiver_count() == 0 {
            // Everybody unsubscribed: forget the topic.
            topics.remove(topic);
            return;
        }
        sender.clone()
    };
    let data = match serde_json::from_slice(msg.get_payload_bytes()) {
        Ok(data) => data,
        Err(e) => {
            tracing::warn!(channel, error = %e, "ignoring an event that is not JSON");
            return;
        }
    };
    let _ = sender.send(Arc::new(Event {
        topic: topic.to_string(),
        data,
    }));
}
