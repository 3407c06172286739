//! Replay feeds: stored ticks published on the ticks topic again, at a
//! chosen speed, as if they were arriving live (demos, tests, rehearsals).
//! Replayed ticks are not stored again; everything that follows the
//! ticks topic (the desk, live strategies, `/ws`) sees them like live ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use qb_core::market::{TICKS_TOPIC, Tick, TickColumns};
use qb_core::{PubSub, TickStore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const PAGE: u32 = 10_000;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// At least one.
    #[schema(min_items = 1)]
    pub symbols: Vec<String>,
    /// Unix ns, inclusive; default: the beginning.
    pub start: Option<i64>,
    /// Unix ns, exclusive; default: the end.
    pub end: Option<i64>,
    /// Market seconds per wall second (1 = real time); 0 = as fast as the
    /// subscribers take them.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub speed: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplayStatus {
    pub id: String,
    pub symbols: Vec<String>,
    pub speed: f64,
    pub published: u64,
    pub done: bool,
    pub error: Option<String>,
}

struct Replay {
    status: Arc<Mutex<ReplayStatus>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Replays {
    all: Mutex<BTreeMap<String, Replay>>,
}

impl Replays {
    pub fn start(
        &self,
        spec: ReplaySpec,
        ticks: Arc<dyn TickStore>,
        pubsub: Arc<dyn PubSub>,
    ) -> Result<ReplayStatus, (&'static str, String)> {
        if spec.symbols.is_empty() {
            return Err(("symbols", "at least one symbol".into()));
        }
        for s in &spec.symbols {
            qb_core::market::check_symbol(s).map_err(|e| ("symbols", e))?;
        }
        if !(spec.speed >= 0.0 && spec.speed.is_finite()) {
            return Err(("speed", "a number ≥ 0".into()));
        }
        let status = Arc::new(Mutex::new(ReplayStatus {
            id: uuid::Uuid::now_v7().to_string(),
            symbols: spec.symbols.clone(),
            speed: spec.speed,
            published: 0,
            done: false,
            error: None,
        }));
        let shown = status.lock().clone();
        let st = status.clone();
        let task = tokio::spawn(async move {
            let result = replay(&spec, &*ticks, &*pubsub, &st).await;
            let mut s = st.lock();
            s.done = true;
            s.error = result.err();
        });
        self.all
            .lock()
            .insert(shown.id.clone(), Replay { status, task });
        Ok(shown)
    }

    pub fn list(&self) -> Vec<ReplayStatus> {
        self.all
            .lock()
            .values()
            .map(|r| r.status.lock().clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<ReplayStatus> {
        self.all.lock().get(id).map(|r| r.status.lock().clone())
    }

    /// Stops a replay; `false` if there is none with this id.
    pub fn stop(&self, id: &str) -> bool {
        match self.all.lock().get(id) {
            Some(r) => {
                r.task.abort();
                let mut s = r.status.lock();
                s.done = true;
                true
            }
            None => false,
        }
    }
}

/// Merges the symbols' ticks in time order and publishes them, one batch
/// per symbol and timestamp run, pacing by market time.
async fn replay(
    spec: &ReplaySpec,
    store: &dyn TickStore,
    pubsub: &dyn PubSub,
    status: &Mutex<ReplayStatus>,
) -> Result<(), String> {
    let mut all: Vec<Tick> = Vec::new();
    for symbol in &spec.symbols {
        qb_core::seams::tick_pages(store, symbol, spec.start, spec.end, PAGE, |p| all.extend(p))
            .await
            .map_err(|e| e.to_string())?;
    }
    all.sort_by_key(|t| (t.ts, t.symbol.clone(), t.seq));
    let all = TickColumns::from(all);
    let wall0 = tokio::time::Instant::now();
    let market0 = all.ts().first().copied().unwrap_or(0);
    let mut i = 0;
    while i < all.len() {
        // Ticks of one instant go out together.
        let ts = all.ts()[i];
        let j = i + all.ts()[i..].partition_point(|&t| t == ts);
        if spec.speed > 0.0 {
            let due = (ts - market0) as f64 / 1e9 / spec.speed;
            tokio::time::sleep_until(wall0 + std::time::Duration::from_secs_f64(due)).await;
        }
        for batch in all.group(i..j) {
            pubsub.publish(TICKS_TOPIC, serde_json::to_value(batch).unwrap_or_default());
        }
        status.lock().published += (j - i) as u64;
        if spec.speed == 0.0 {
            // Let subscribers run between instants.
            tokio::task::yield_now().await;
        }
        i = j;
    }
    Ok(())
}
