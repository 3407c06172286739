//! Live strategies: a plugin instance per running strategy, on its own OS
//! thread, fed by the tick feed (ticks, or bars aggregated on the fly),
//! trading through the desk (so every risk rule applies), told about its
//! orders, and persisted so it resumes after a restart.
//!
//! Persisted (KvStore namespace `strategies`): `doc/<id>` (what to run
//! and its status), `state/<id>/<key>` (the plugin's `state-set` values,
//! written before the call returns), `snapshot/<id>` (the last
//! `snapshot-state`, taken on stop, on swap and every few seconds; handed
//! to `init` when the strategy starts again).
//!
//! Hot swap: the running instance's snapshot goes to the new plugin's
//! `init`; only when that succeeds does the new instance replace the old
//! one, on the same thread, between two events. If it fails the old one
//! keeps trading.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use qb_core::market::{BarBuilder, Interval, TICKS_TOPIC, TickBatch};
use qb_core::{KvStore, PubSub};
use qb_plugin_host::registry::{Lease, PluginRegistry};
use qb_plugin_host::{
    Account, Bars, Env, Instance, LogLine, Order as PluginOrder, OrderEvent, OrderState as PState,
    OrderType as PType, Param, Plugin, Position, Side as PSide, Ticks,
};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use utoipa::ToSchema;

use crate::desk::{Desk, ORDERS_TOPIC};
use crate::error::{LiveError, invalid};
use crate::model::{Order, OrderRequest, OrderState, OrderType, Side};
use crate::risk::RiskLimits;

const NS: &str = "strategies";
/// Events waiting for one strategy; beyond this, ticks are dropped (and
/// counted) rather than slowing the feed.
const INBOX: usize = 10_000;
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
const LOG_LINES_KEPT: usize = 500;
/// Topic of strategy log lines and status changes.
pub const STRATEGIES_TOPIC: &str = "strategies";
/// Native stack of strategy threads (as for job workers).
const STACK_BYTES: usize = 16 << 20;

/// What to run.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    /// Plugin id (sha256), name, or name@version.
    pub plugin: String,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// At least one.
    #[schema(min_items = 1)]
    pub symbols: Vec<String>,
    /// Default: the configured default account.
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub account: Option<String>,
    /// `tick` for `on-ticks`, or a bar interval (bars aggregated from
    /// ticks). Default: the plugin's first declared interval, else `tick`.
    #[schema(pattern = r"^(tick|[0-9]+[smhd])$")]
    pub interval: Option<String>,
    /// Risk limits of this strategy within its account.
    pub limits: Option<RiskLimits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Stopped,
    Failed,
}

/// A strategy as persisted and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StrategyDoc {
    pub id: String,
    /// The plugin's sha256.
    pub plugin: String,
    /// `name@version` of the plugin.
    pub plugin_label: String,
    pub params: BTreeMap<String, f64>,
    pub symbols: Vec<String>,
    pub account: String,
    pub interval: String,
    pub status: Status,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Plugin versions swapped in so far.
    pub swaps: u32,
    /// Ticks dropped because the strategy fell behind.
    #[serde(default)]
    pub dropped: u64,
}

enum Msg {
    Ticks(Arc<TickBatch>),
    Order(i64, OrderEvent),
    Swap(
        Arc<Plugin>,
        String,
        std::sync::mpsc::Sender<Result<(), String>>,
    ),
    Stop(std::sync::mpsc::Sender<()>),
}

struct Running {
    tx: SyncSender<Msg>,
    /// Set by `stop`: the thread skips what is still queued.
    halt: Arc<AtomicBool>,
    symbols: Vec<String>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Every live strategy of this process.
pub struct Strategies {
    desk: Arc<Desk>,
    plugins: Arc<PluginRegistry>,
    kv: Arc<dyn KvStore>,
    pubsub: Arc<dyn PubSub>,
    rt: Handle,
    default_account: String,
    docs: Mutex<BTreeMap<String, StrategyDoc>>,
    running: Mutex<HashMap<String, Running>>,
    logs: Mutex<HashMap<String, Arc<Mutex<VecDeque<serde_json::Value>>>>>,
    /// Strategies whose plugin stopped them, with the reason.
    failures: Arc<Mutex<HashMap<String, String>>>,
    running_gauge: prometheus::IntGauge,
    pnl: prometheus::GaugeVec,
    /// The tasks feeding ticks and order events to the strategies.
    feeds: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Strategies {
    /// Restores the strategy list from `kv` and starts again those that
    /// were running. Needs a tokio runtime (`rt`) for the feeds.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        desk: Arc<Desk>,
        plugins: Arc<PluginRegistry>,
        kv: Arc<dyn KvStore>,
        pubsub: Arc<dyn PubSub>,
        rt: Handle,
        default_account: &str,
        running_gauge: prometheus::IntGauge,
        pnl: prometheus::GaugeVec,
    ) -> Result<Arc<Self>, LiveError> {
        let docs: BTreeMap<String, StrategyDoc> = kv
            .scan(NS, "doc/")
            .await
            .map_err(|e| LiveError::Failed(e.to_string()))?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<StrategyDoc>(&v).ok())
            .map(|d| (d.id.clone(), d))
            .collect();
        let me = Arc::new(Self {
            desk,
            plugins,
            kv,
            pubsub,
            rt,
            default_account: default_account.into(),
            docs: Mutex::new(docs.clone()),
            running: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            failures: Arc::new(Mutex::new(HashMap::new())),
            running_gauge,
            pnl,
            feeds: Mutex::new(Vec::new()),
        });
        me.clone().follow_feeds();
        for d in docs.values().filter(|d| d.status == Status::Running) {
            if let Err(e) = me.launch(d.clone()).await {
                tracing::error!(strategy = %d.id, error = %e, "could not resume strategy");
                me.set_status(&d.id, Status::Failed, Some(format!("resume failed: {e}")))
                    .await;
            } else {
                tracing::info!(strategy = %d.id, plugin = %d.plugin_label, "strategy resumed");
            }
        }
        Ok(me)
    }

    /// Routes ticks and order events to the running strategies.
    fn follow_feeds(self: Arc<Self>) {
        let mut ticks = self.pubsub.subscribe(TICKS_TOPIC);
        let mut orders = self.pubsub.subscribe(ORDERS_TOPIC);
        let me = self.clone();
        let tick_feed = self.rt.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let e = match ticks.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "strategies fell behind the tick feed");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Ok(b) = serde_json::from_value::<TickBatch>(e.data.clone()) else {
                    continue;
                };
                me.dispatch_ticks(Arc::new(b));
            }
        });
        let me = self.clone();
        let order_feed = self.rt.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let e = match orders.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let Ok(o) = serde_json::from_value::<Order>(e.data.clone()) else {
                    continue;
                };
                let Some(id) = o.strategy.clone() else {
                    continue;
                };
                if let Some(r) = me.running.lock().get(&id) {
                    let _ =
                        r.tx.try_send(Msg::Order(o.updated_at * 1_000_000, event_of(&o)));
                }
            }
        });
        self.feeds.lock().extend([tick_feed, order_feed]);
    }

    fn dispatch_ticks(&self, b: Arc<TickBatch>) {
        let mut dropped: Vec<String> = Vec::new();
        for (id, r) in self.running.lock().iter() {
            if r.symbols.iter().any(|s| *s == b.symbol)
                && let Err(TrySendError::Full(_)) = r.tx.try_send(Msg::Ticks(b.clone()))
            {
                dropped.push(id.clone());
            }
        }
        if !dropped.is_empty() {
            let mut docs = self.docs.lock();
            for id in dropped {
                if let Some(d) = docs.get_mut(&id) {
                    d.dropped += b.ts.len() as u64;
                }
            }
        }
    }

    /// Starts a strategy; answers once its `init` succeeded.
    pub async fn start(&self, spec: StrategySpec) -> Result<StrategyDoc, LiveError> {
        if spec.symbols.is_empty() {
            return Err(invalid("symbols", "at least one symbol"));
        }
        for s in &spec.symbols {
            qb_core::market::check_symbol(s).map_err(|e| invalid("symbols", e))?;
        }
        let info = self
            .plugins
            .resolve(&spec.plugin)
            .await
            .map_err(|e| LiveError::NotFound(format!("plugin {}: {e}", spec.plugin)))?;
        let account = spec.account.unwrap_or_else(|| self.default_account.clone());
        self.desk.account(&account).await?;
        let interval = match spec.interval {
            Some(i) => i,
            None => info
                .intervals
                .first()
                .cloned()
                .unwrap_or_else(|| "tick".into()),
        };
        if interval != "tick" {
            interval
                .parse::<Interval>()
                .map_err(|e| invalid("interval", format!("{e} (or \"tick\")")))?;
        }
        let now = now_ms();
        let doc = StrategyDoc {
            id: uuid::Uuid::now_v7().to_string(),
            plugin: info.id.clone(),
            plugin_label: format!("{}@{}", info.name, info.version),
            params: spec.params,
            symbols: spec.symbols,
            account,
            interval,
            status: Status::Running,
            error: None,
            created_at: now,
            updated_at: now,
            swaps: 0,
            dropped: 0,
        };
        if let Some(limits) = spec.limits {
            self.desk
                .set_limits(&doc.account, Some(&doc.id), limits)
                .await?;
        }
        self.launch(doc.clone()).await?;
        self.save(&doc).await;
        self.docs.lock().insert(doc.id.clone(), doc.clone());
        Ok(doc)
    }

    async fn save(&self, doc: &StrategyDoc) {
        let bytes = serde_json::to_vec(doc).unwrap_or_default();
        if let Err(e) = self
            .kv
            .put(NS, &format!("doc/{}", doc.id), &bytes, None)
            .await
        {
            tracing::error!(strategy = %doc.id, error = %e, "could not persist strategy");
        }
    }

    async fn set_status(&self, id: &str, status: Status, error: Option<String>) {
        let doc = {
            let mut docs = self.docs.lock();
            let Some(d) = docs.get_mut(id) else { return };
            d.status = status;
            d.error = error;
            d.updated_at = now_ms();
            d.clone()
        };
        self.save(&doc).await;
        self.pubsub.publish(
            STRATEGIES_TOPIC,
            serde_json::json!({"id": id, "account": doc.account, "status": doc.status, "error": doc.error}),
        );
    }

    /// Loads the plugin, instantiates and inits it on a new thread.
    async fn launch(&self, doc: StrategyDoc) -> Result<(), LiveError> {
        let plugin = self
            .plugins
            .load(&doc.plugin)
            .await
            .map_err(|e| LiveError::Failed(format!("plugin: {e}")))?;
        let lease = self.plugins.lease(&doc.plugin);
        let snapshot = self
            .kv
            .get(NS, &format!("snapshot/{}", doc.id))
            .await
            .map_err(|e| LiveError::Failed(e.to_string()))?;
        let (tx, rx) = sync_channel(INBOX);
        let halt = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ctx = Ctx {
            doc: doc.clone(),
            desk: self.desk.clone(),
            kv: self.kv.clone(),
            pubsub: self.pubsub.clone(),
            rt: self.rt.clone(),
            plugins: self.plugins.clone(),
            logs: self.logs.lock().entry(doc.id.clone()).or_default().clone(),
            failures: self.failures.clone(),
            halt: halt.clone(),
        };
        self.failures.lock().remove(&doc.id);
        let thread = std::thread::Builder::new()
            .name(format!("strategy-{}", &doc.id[doc.id.len() - 8..]))
            .stack_size(STACK_BYTES)
            .spawn(move || run(ctx, plugin, lease, snapshot, rx, ready_tx))
            .map_err(|e| LiveError::Failed(e.to_string()))?;
        let ready = tokio::task::spawn_blocking(move || {
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| Err("the strategy did not start in 30 s".into()))
        })
        .await
        .map_err(|e| LiveError::Failed(e.to_string()))?;
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(LiveError::Failed(e));
        }
        self.running.lock().insert(
            doc.id.clone(),
            Running {
                tx,
                halt,
                symbols: doc.symbols.clone(),
                thread: Some(thread),
            },
        );
        self.running_gauge.set(self.running.lock().len() as i64);
        Ok(())
    }

    /// Stops a strategy (its snapshot is kept for a restart).
    pub async fn stop(&self, id: &str, reason: Option<String>) -> Result<StrategyDoc, LiveError> {
        self.get(id)?;
        self.halt(id).await?;
        self.set_status(id, Status::Stopped, reason).await;
        self.get(id)
    }

    /// Ends a running strategy's thread after its final snapshot (the
    /// plugin's `snapshot-state`, written by the thread as it stops).
    async fn halt(&self, id: &str) -> Result<(), LiveError> {
        let r = self.running.lock().remove(id);
        if let Some(mut r) = r {
            r.halt.store(true, Ordering::SeqCst);
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let _ = r.tx.send(Msg::Stop(done_tx));
            let thread = r.thread.take();
            tokio::task::spawn_blocking(move || {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
                if let Some(t) = thread {
                    let _ = t.join();
                }
            })
            .await
            .map_err(|e| LiveError::Failed(e.to_string()))?;
        }
        self.running_gauge.set(self.running.lock().len() as i64);
        Ok(())
    }

    /// Server shutdown: every running strategy stops after a final
    /// snapshot but stays `running` in the list, so the next start of
    /// this node (or the trader taking over) resumes it where it stopped.
    /// Returns how many were stopped.
    pub async fn shutdown(&self) -> usize {
        let ids: Vec<String> = self.running.lock().keys().cloned().collect();
        for id in &ids {
            if let Err(e) = self.halt(id).await {
                tracing::warn!(strategy = %id, error = %e, "strategy did not stop cleanly");
            }
        }
        // This set of strategies is done on this node (the desk lease was
        // released or lost): nothing feeds it any more.
        for feed in self.feeds.lock().drain(..) {
            feed.abort();
        }
        ids.len()
    }

    /// Stops every strategy trading on `account` (the kill switch).
    pub async fn stop_account(&self, account: &str, reason: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .docs
            .lock()
            .values()
            .filter(|d| d.account == account && d.status == Status::Running)
            .map(|d| d.id.clone())
            .collect();
        for id in &ids {
            let _ = self.stop(id, Some(reason.to_string())).await;
        }
        ids
    }

    /// Starts a stopped or failed strategy again, with its last snapshot.
    pub async fn restart(&self, id: &str) -> Result<StrategyDoc, LiveError> {
        let doc = self.get(id)?;
        if self.alive(id) {
            return Err(LiveError::Conflict(format!("strategy {id} is running")));
        }
        self.running.lock().remove(id);
        self.launch(doc).await?;
        self.set_status(id, Status::Running, None).await;
        self.get(id)
    }

    /// Replaces the plugin of a running strategy without stopping it.
    pub async fn swap(&self, id: &str, plugin: &str) -> Result<StrategyDoc, LiveError> {
        let info = self
            .plugins
            .resolve(plugin)
            .await
            .map_err(|e| LiveError::NotFound(format!("plugin {plugin}: {e}")))?;
        let loaded = self
            .plugins
            .load(&info.id)
            .await
            .map_err(|e| LiveError::Failed(format!("plugin: {e}")))?;
        let tx = self
            .running
            .lock()
            .get(id)
            .map(|r| r.tx.clone())
            .ok_or_else(|| LiveError::Conflict(format!("strategy {id} is not running")))?;
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        tx.send(Msg::Swap(loaded, info.id.clone(), reply_tx))
            .map_err(|_| LiveError::Conflict(format!("strategy {id} has stopped")))?;
        let reply = tokio::task::spawn_blocking(move || {
            reply_rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| Err("no answer from the strategy in 30 s".into()))
        })
        .await
        .map_err(|e| LiveError::Failed(e.to_string()))?;
        reply.map_err(|e| {
            LiveError::Failed(format!("swap refused, the old version keeps running: {e}"))
        })?;
        let doc = {
            let mut docs = self.docs.lock();
            let d = docs
                .get_mut(id)
                .ok_or_else(|| LiveError::NotFound(format!("strategy {id} not found")))?;
            d.plugin = info.id.clone();
            d.plugin_label = format!("{}@{}", info.name, info.version);
            d.swaps += 1;
            d.updated_at = now_ms();
            d.clone()
        };
        self.save(&doc).await;
        Ok(doc)
    }

    pub fn get(&self, id: &str) -> Result<StrategyDoc, LiveError> {
        let mut d = self
            .docs
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| LiveError::NotFound(format!("strategy {id} not found")))?;
        // A thread the plugin stopped (a trap) shows as failed, with why.
        if d.status == Status::Running && !self.alive(id) {
            d.status = Status::Failed;
            d.error = self.failures.lock().get(id).cloned();
        }
        Ok(d)
    }

    /// Whether the strategy's thread is running.
    fn alive(&self, id: &str) -> bool {
        self.running
            .lock()
            .get(id)
            .is_some_and(|r| r.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }

    pub fn list(&self) -> Vec<StrategyDoc> {
        let ids: Vec<String> = self.docs.lock().keys().cloned().collect();
        ids.iter().filter_map(|id| self.get(id).ok()).collect()
    }

    /// The last log lines of a strategy, oldest first.
    pub fn logs(&self, id: &str) -> Result<Vec<serde_json::Value>, LiveError> {
        self.get(id)?;
        Ok(self
            .logs
            .lock()
            .get(id)
            .map(|l| l.lock().iter().cloned().collect())
            .unwrap_or_default())
    }

    /// Updates `quantbox_strategy_pnl` from the desk's sub-books.
    pub async fn refresh_metrics(&self) {
        let docs = self.list();
        for d in docs {
            if let Ok(a) = self.desk.account(&d.account).await
                && let Some(p) = a.pnl_by_strategy.get(&d.id)
            {
                self.pnl
                    .with_label_values(&[d.id.as_str(), d.account.as_str()])
                    .set(p.to_f64().unwrap_or(0.0));
            }
        }
        self.running_gauge.set(self.running.lock().len() as i64);
    }
}

/// The order event a strategy gets for a desk order.
fn event_of(o: &Order) -> OrderEvent {
    OrderEvent {
        client_id: o.client_id.clone(),
        symbol: o.symbol.clone(),
        state: match o.state {
            OrderState::New | OrderState::Accepted => PState::Accepted,
            OrderState::PartiallyFilled => PState::PartiallyFilled,
            OrderState::Filled => PState::Filled,
            OrderState::Cancelled => PState::Cancelled,
            OrderState::Rejected => PState::Rejected,
        },
        fill_quantity: o.filled_qty.to_f64().unwrap_or(0.0),
        fill_price: o.avg_fill_price.and_then(|p| p.to_f64()).unwrap_or(0.0),
        reason: o.reason.clone().unwrap_or_default(),
    }
}

/// What a strategy thread needs.
#[derive(Clone)]
struct Ctx {
    doc: StrategyDoc,
    desk: Arc<Desk>,
    kv: Arc<dyn KvStore>,
    pubsub: Arc<dyn PubSub>,
    rt: Handle,
    plugins: Arc<PluginRegistry>,
    logs: Arc<Mutex<VecDeque<serde_json::Value>>>,
    failures: Arc<Mutex<HashMap<String, String>>>,
    halt: Arc<AtomicBool>,
}

/// The plugin's view of the live world: orders go to the desk under the
/// strategy's id, state to the KvStore.
struct LiveEnv {
    ctx: Ctx,
}

impl Env for LiveEnv {
    fn submit_order(&mut self, o: PluginOrder) -> Result<(), String> {
        let c = &self.ctx;
        let qty = qb_trading::dec(o.quantity)
            .ok_or_else(|| format!("quantity {} is not a finite number", o.quantity))?;
        let (order_type, price) = match o.type_ {
            PType::Market => (OrderType::Market, None),
            PType::Limit(p) => (OrderType::Limit, qb_trading::dec(p)),
            PType::Stop(p) => (OrderType::Stop, qb_trading::dec(p)),
        };
        let req = OrderRequest {
            client_id: o.client_id,
            symbol: o.symbol,
            side: if o.side == PSide::Buy {
                Side::Buy
            } else {
                Side::Sell
            },
            qty,
            order_type,
            price,
        };
        let placed =
            c.rt.block_on(c.desk.submit(&c.doc.account, Some(&c.doc.id), req))
                .map_err(|e| e.to_string())?
                .order;
        match placed.state {
            OrderState::Rejected => Err(format!(
                "{}: {}",
                placed.rule.unwrap_or_default(),
                placed.reason.unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }

    fn cancel_order(&mut self, client_id: &str) -> Result<(), String> {
        let c = &self.ctx;
        c.rt.block_on(
            c.desk
                .cancel(&c.doc.account, client_id, "cancelled by the strategy"),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn position(&mut self, symbol: &str) -> Position {
        let c = &self.ctx;
        let (qty, avg) =
            c.rt.block_on(c.desk.strategy_position(&c.doc.account, &c.doc.id, symbol))
                .unwrap_or_default();
        Position {
            symbol: symbol.into(),
            quantity: qty.to_f64().unwrap_or(0.0),
            average_price: avg.to_f64().unwrap_or(0.0),
        }
    }

    fn account(&mut self) -> Account {
        let c = &self.ctx;
        match c.rt.block_on(c.desk.account(&c.doc.account)) {
            Ok(a) => Account {
                cash: a.cash.to_f64().unwrap_or(0.0),
                equity: a.equity.to_f64().unwrap_or(0.0),
                margin_used: a.margin.to_f64().unwrap_or(0.0),
            },
            Err(_) => Account {
                cash: 0.0,
                equity: 0.0,
                margin_used: 0.0,
            },
        }
    }

    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        let c = &self.ctx;
        c.rt.block_on(c.kv.get(NS, &format!("state/{}/{key}", c.doc.id)))
            .ok()
            .flatten()
    }

    fn state_set(&mut self, key: &str, value: Vec<u8>) {
        let c = &self.ctx;
        if let Err(e) =
            c.rt.block_on(c.kv.put(NS, &format!("state/{}/{key}", c.doc.id), &value, None))
        {
            tracing::error!(strategy = %c.doc.id, error = %e, "could not persist strategy state");
        }
    }

    fn state_sizes(&mut self) -> Vec<(String, usize)> {
        let c = &self.ctx;
        let prefix = format!("state/{}/", c.doc.id);
        match c.rt.block_on(c.kv.scan(NS, &prefix)) {
            Ok(entries) => entries
                .into_iter()
                .map(|(k, v)| (k.strip_prefix(&prefix).unwrap_or(&k).to_string(), v.len()))
                .collect(),
            Err(e) => {
                tracing::error!(strategy = %c.doc.id, error = %e, "could not read strategy state");
                Vec::new()
            }
        }
    }
}

/// Bar strategies: one [`BarBuilder`] per symbol.
struct LiveBars {
    interval: Interval,
    by_symbol: HashMap<String, BarBuilder>,
}

impl LiveBars {
    /// The bars `b` completed, as one batch for the strategy.
    fn push(&mut self, b: &TickBatch) -> Option<Bars> {
        let builder = self
            .by_symbol
            .entry(b.symbol.clone())
            .or_insert_with(|| BarBuilder::new(self.interval));
        let mut out = Bars {
            symbol: b.symbol.clone(),
            ts: Vec::new(),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
            volume: Vec::new(),
        };
        for i in 0..b.ts.len() {
            if let Some(done) = builder.push(b.ts[i], b.price[i], b.size[i]) {
                out.ts.push(done.ts);
                out.open.push(done.open);
                out.high.push(done.high);
                out.low.push(done.low);
                out.close.push(done.close);
                out.volume.push(done.volume);
            }
        }
        (!out.ts.is_empty()).then_some(out)
    }
}

fn params_of(doc: &StrategyDoc) -> Vec<Param> {
    doc.params
        .iter()
        .map(|(n, v)| Param {
            name: n.clone(),
            value: *v,
        })
        .collect()
}

/// A strategy's thread: instantiate, init, then events until stopped.
fn run(
    ctx: Ctx,
    plugin: Arc<Plugin>,
    lease: Lease,
    snapshot: Option<Vec<u8>>,
    rx: Receiver<Msg>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let id = ctx.doc.id.clone();
    let start = |plugin: &Plugin, state: Option<&[u8]>| -> Result<Instance<LiveEnv>, String> {
        let mut inst = plugin
            .instantiate(LiveEnv { ctx: ctx.clone() }, 0)
            .map_err(|e| e.to_string())?;
        inst.init(0, &params_of(&ctx.doc), state)
            .map_err(|e| e.to_string())?;
        Ok(inst)
    };
    let mut inst = match start(&plugin, snapshot.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut _lease = lease;
    // Validated at start: "tick", or an interval.
    let mut bars = ctx
        .doc
        .interval
        .parse::<Interval>()
        .ok()
        .map(|interval| LiveBars {
            interval,
            by_symbol: HashMap::new(),
        });
    let mut last_snapshot = Instant::now();
    let persist_snapshot = |inst: &mut Instance<LiveEnv>| {
        if let Ok(s) = inst.snapshot_state() {
            let _ = ctx.rt.block_on(
                ctx.kv
                    .put(NS, &format!("snapshot/{}", ctx.doc.id), &s, None),
            );
        }
    };
    let failure = loop {
        let Ok(msg) = rx.recv() else { break None };
        if ctx.halt.load(Ordering::SeqCst) && matches!(msg, Msg::Ticks(_) | Msg::Order(..)) {
            continue;
        }
        let result = match msg {
            Msg::Ticks(b) => {
                let now = b.ts.last().copied().unwrap_or(0);
                match bars.as_mut() {
                    Some(live) => match live.push(&b) {
                        Some(done) => inst.on_bars(now, &done),
                        None => Ok(()),
                    },
                    None => inst.on_ticks(
                        now,
                        &Ticks {
                            symbol: b.symbol.clone(),
                            ts: b.ts.clone(),
                            price: b.price.clone(),
                            size: b.size.clone(),
                            bid: b.bid.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
                            ask: b.ask.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
                        },
                    ),
                }
            }
            Msg::Order(now, e) => inst.on_order(now, &e),
            Msg::Swap(next, sha, reply) => {
                let handed = inst.snapshot_state().map_err(|e| e.to_string());
                match handed.and_then(|s| start(&next, Some(&s))) {
                    Ok(new) => {
                        inst = new;
                        _lease = ctx.plugins.lease(&sha);
                        persist_snapshot(&mut inst);
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
                Ok(())
            }
            Msg::Stop(done) => {
                persist_snapshot(&mut inst);
                let _ = done.send(());
                break None;
            }
        };
        let (lines, _) = inst.take_logs();
        publish_logs(&ctx, lines);
        if let Err(e) = result {
            break Some(e.to_string());
        }
        if last_snapshot.elapsed() > SNAPSHOT_EVERY {
            persist_snapshot(&mut inst);
            last_snapshot = Instant::now();
        }
    };
    if let Some(e) = failure {
        tracing::warn!(strategy = %id, error = %e, "strategy stopped by its plugin");
        let doc = StrategyDoc {
            status: Status::Failed,
            error: Some(e.clone()),
            updated_at: now_ms(),
            ..ctx.doc.clone()
        };
        let _ = ctx.rt.block_on(ctx.kv.put(
            NS,
            &format!("doc/{id}"),
            &serde_json::to_vec(&doc).unwrap_or_default(),
            None,
        ));
        ctx.pubsub.publish(
            STRATEGIES_TOPIC,
            serde_json::json!({"id": id, "account": ctx.doc.account, "status": "failed", "error": e}),
        );
        ctx.failures.lock().insert(id, e);
    }
}

fn publish_logs(ctx: &Ctx, lines: Vec<LogLine>) {
    if lines.is_empty() {
        return;
    }
    let mut buf = ctx.logs.lock();
    for l in lines {
        let v = serde_json::json!({
            "strategy": ctx.doc.id,
            "account": ctx.doc.account,
            "ts": l.ts,
            "level": format!("{:?}", l.level).to_lowercase(),
            "message": l.message,
        });
        ctx.pubsub.publish(STRATEGIES_TOPIC, v.clone());
        buf.push_back(v);
        if buf.len() > LOG_LINES_KEPT {
            buf.pop_front();
        }
    }
}
