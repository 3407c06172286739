//! `backtest.run`: one backtest as a job on the `backtest` queue. The job's
//! params are the resolved [`BacktestSpec`] (the plugin pinned by its
//! sha256); its result holds the summary; fills, equity, round trips and
//! the HTML report are the blobs `backtests/<job id>/<file>` (files under
//! the data directory on one box, PostgreSQL in a cluster, so any API node
//! serves them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use qb_core::market::{BarQuery, Instrument, Interval, check_symbol};
use qb_core::{BlobStore, MetaStore, TickStore};
use qb_jobs::{FieldError, JobContext, JobError, JobHandler};
use qb_plugin_host::Param;
use qb_plugin_host::registry::PluginRegistry;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::{Feed, RunError, Settings, SymbolBars, SymbolTicks, run};
use crate::execution::Slippage;

pub const KIND: &str = "backtest.run";

/// The `interval` that selects tick mode.
pub const TICK: &str = "tick";

/// Ticks read from the store per query.
const TICK_PAGE: u32 = 500_000;

/// What to run; stored as the job's params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestSpec {
    /// The plugin's sha256.
    pub plugin: String,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    pub symbols: Vec<String>,
    /// Unix nanoseconds, inclusive.
    pub start: Option<i64>,
    /// Unix nanoseconds, exclusive.
    pub end: Option<i64>,
    /// A bar interval ("1m", "1h", "1d", ...) or "tick" for tick mode.
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_cash")]
    pub initial_cash: Decimal,
    /// Overrides every commission rate (fraction of notional).
    pub commission_rate: Option<Decimal>,
    /// Overrides every per-lot commission.
    pub commission_per_lot: Option<Decimal>,
    pub slippage_bps: Option<Decimal>,
    pub slippage_ticks: Option<u32>,
    #[serde(default)]
    pub seed: u64,
}

fn default_interval() -> String {
    "1m".into()
}

fn default_cash() -> Decimal {
    Decimal::from(1_000_000)
}

impl BacktestSpec {
    /// Checks everything that does not need the stores.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.symbols.is_empty() {
            return Err(("symbols", "at least one symbol".into()));
        }
        for s in &self.symbols {
            check_symbol(s).map_err(|e| ("symbols", e))?;
        }
        if self.interval != TICK {
            self.interval
                .parse::<Interval>()
                .map_err(|e| ("interval", format!("{e} (or \"{TICK}\" for tick mode)")))?;
        }
        if let (Some(a), Some(b)) = (self.start, self.end)
            && a >= b
        {
            return Err(("end", "must be after start".into()));
        }
        if self.initial_cash <= Decimal::ZERO {
            return Err(("initial_cash", "must be positive".into()));
        }
        for (field, v) in [
            ("commission_rate", self.commission_rate),
            ("commission_per_lot", self.commission_per_lot),
            ("slippage_bps", self.slippage_bps),
        ] {
            if v.is_some_and(|v| v < Decimal::ZERO) {
                return Err((field, "must not be negative".into()));
            }
        }
        if self.slippage_bps.is_some() && self.slippage_ticks.is_some() {
            return Err((
                "slippage_ticks",
                "give slippage in bps or in ticks, not both".into(),
            ));
        }
        for (name, v) in &self.params {
            if !v.is_finite() {
                return Err(("params", format!("{name}: {v} is not a finite number")));
            }
        }
        Ok(())
    }

    fn slippage(&self) -> Slippage {
        match (self.slippage_bps, self.slippage_ticks) {
            (Some(b), _) => Slippage::Bps(b),
            (_, Some(t)) => Slippage::Ticks(t),
            _ => Slippage::None,
        }
    }
}

/// What a run replays, as loaded from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Bars(Vec<SymbolBars>),
    Ticks(Vec<SymbolTicks>),
}

impl Data {
    pub fn feed(&self) -> Feed<'_> {
        match self {
            Data::Bars(b) => Feed::Bars(b),
            Data::Ticks(t) => Feed::Ticks(t),
        }
    }
}

/// The bars (or ticks) of a spec's symbols and their instruments
/// (defaults for symbols not registered), with the spec's commission
/// overrides applied.
pub async fn inputs(
    ticks: &dyn TickStore,
    meta: &dyn MetaStore,
    spec: &BacktestSpec,
) -> Result<(Data, Vec<Instrument>), String> {
    let mut data = if spec.interval == TICK {
        Data::Ticks(Vec::new())
    } else {
        Data::Bars(Vec::new())
    };
    let mut instruments = Vec::new();
    for symbol in &spec.symbols {
        let rows = match &mut data {
            Data::Bars(all) => {
                let b = load_bars(ticks, spec, symbol).await?;
                let n = b.ts.len();
                all.push(b);
                n
            }
            Data::Ticks(all) => {
                let t = load_ticks(ticks, spec, symbol).await?;
                let n = t.ts.len();
                all.push(t);
                n
            }
        };
        if rows == 0 {
            let what = if spec.interval == TICK {
                "ticks".to_string()
            } else {
                format!("{} bars", spec.interval)
            };
            return Err(format!("no {what} of {symbol} in the selected range"));
        }
        let mut inst = meta
            .instrument(symbol)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| Instrument::with_defaults(symbol));
        if let Some(r) = spec.commission_rate {
            (
                inst.fees.open_rate,
                inst.fees.close_rate,
                inst.fees.close_today_rate,
            ) = (r, r, r);
        }
        if let Some(l) = spec.commission_per_lot {
            (
                inst.fees.open_per_lot,
                inst.fees.close_per_lot,
                inst.fees.close_today_per_lot,
            ) = (l, l, l);
        }
        instruments.push(inst);
    }
    Ok((data, instruments))
}

async fn load_bars(
    ticks: &dyn TickStore,
    spec: &BacktestSpec,
    symbol: &str,
) -> Result<SymbolBars, String> {
    let interval: Interval = spec
        .interval
        .parse()
        .map_err(|e| format!("interval: {e}"))?;
    let query = BarQuery {
        symbol: symbol.to_string(),
        interval,
        start: spec.start,
        end: spec.end,
        timezone: None,
    };
    let bars = ticks.bars(query).await.map_err(|e| e.to_string())?;
    let mut b = SymbolBars {
        symbol: symbol.to_string(),
        ..Default::default()
    };
    for bar in bars {
        b.ts.push(bar.ts);
        b.open.push(bar.open);
        b.high.push(bar.high);
        b.low.push(bar.low);
        b.close.push(bar.close);
        b.volume.push(bar.volume);
    }
    Ok(b)
}

/// A symbol's ticks in `(ts, seq)` order, read in pages.
async fn load_ticks(
    store: &dyn TickStore,
    spec: &BacktestSpec,
    symbol: &str,
) -> Result<SymbolTicks, String> {
    let mut t = SymbolTicks {
        symbol: symbol.to_string(),
        ..Default::default()
    };
    qb_core::seams::tick_pages(store, symbol, spec.start, spec.end, TICK_PAGE, |page| {
        for tick in page {
            t.ts.push(tick.ts);
            t.price.push(tick.price);
            t.size.push(tick.size);
            t.bid.push(tick.bid.unwrap_or(f64::NAN));
            t.ask.push(tick.ask.unwrap_or(f64::NAN));
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(t)
}

impl BacktestSpec {
    /// The engine settings the spec describes.
    pub fn settings(&self) -> Settings {
        Settings {
            initial_cash: self.initial_cash,
            slippage: self.slippage(),
            seed: self.seed,
            ..Settings::default()
        }
    }
}

/// A finished run with its figures and its hash (computed once).
pub struct Outcome {
    pub result: crate::engine::RunResult,
    pub hash: String,
    pub metrics: crate::analytics::Metrics,
    pub trips: Vec<crate::analytics::RoundTrip>,
    pub per_symbol: BTreeMap<String, crate::analytics::SymbolStats>,
}

/// Runs `spec` over its inputs (from [`inputs`]) and computes the figures.
pub fn execute(
    plugin: &qb_plugin_host::Plugin,
    spec: &BacktestSpec,
    data: &Data,
    instruments: Vec<Instrument>,
    progress: impl FnMut(f64) -> bool,
) -> Result<Outcome, RunError> {
    let multipliers: BTreeMap<String, Decimal> = instruments
        .iter()
        .map(|i| (i.symbol.clone(), i.multiplier))
        .collect();
    let params: Vec<Param> = spec
        .params
        .iter()
        .map(|(n, v)| Param {
            name: n.clone(),
            value: *v,
        })
        .collect();
    let result = run(
        plugin,
        &params,
        data.feed(),
        instruments,
        &spec.settings(),
        progress,
    )?;
    let (metrics, trips, per_symbol) =
        crate::analytics::metrics(spec.initial_cash, &result.equity, &result.fills, |s| {
            multipliers.get(s).copied().unwrap_or(Decimal::ONE)
        });
    Ok(Outcome {
        hash: result.hash(),
        result,
        metrics,
        trips,
        per_symbol,
    })
}

impl Outcome {
    /// The HTML report, with the spec's settings and `plugin` as its label.
    pub fn report(&self, title: &str, spec: &BacktestSpec, plugin: &str) -> String {
        let mut shown = vec![
            ("Plugin".to_string(), plugin.to_string()),
            ("Symbols".to_string(), spec.symbols.join(", ")),
            ("Interval".to_string(), spec.interval.clone()),
            ("Initial cash".to_string(), spec.initial_cash.to_string()),
        ];
        shown.extend(
            spec.params
                .iter()
                .map(|(k, v)| (format!("Parameter {k}"), v.to_string())),
        );
        crate::report::html(&crate::report::ReportInput {
            title,
            settings: &shown,
            metrics: &self.metrics,
            equity: &self.result.equity,
            fills: &self.result.fills,
            trips: &self.trips,
            result_hash: &self.hash,
        })
    }
}

/// The one check of a backtest, whoever starts it (its route, the jobs
/// API, a schedule, a sweep): the plugin (a hash, `name` or
/// `name@version`) exists and is pinned by its hash, every parameter (and
/// every value of a sweep's `grid`) is one the plugin declares and within
/// its range, and [`BacktestSpec::validate`]. Fields are named as in the
/// request (`plugin`, `params.fast`, `grid.fast`).
pub async fn check_spec(
    plugins: &PluginRegistry,
    mut spec: BacktestSpec,
    grid: &BTreeMap<String, Vec<f64>>,
) -> Result<BacktestSpec, FieldError> {
    let plugin = plugins
        .resolve(&spec.plugin)
        .await
        .map_err(|_| ("plugin".to_string(), format!("no plugin {:?}", spec.plugin)))?;
    let declared: Vec<(&str, Option<f64>, Option<f64>)> = plugin
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.min, p.max))
        .collect();
    let label = format!("{} {}", plugin.name, plugin.version);
    check_params(&label, &declared, &spec.params, grid)?;
    spec.plugin = plugin.id;
    spec.validate().map_err(|(f, m)| (f.to_string(), m))?;
    Ok(spec)
}

/// Parameters (and a sweep's grid values) against what a plugin declares:
/// `(name, min, max)` each; `label` names the plugin in messages.
pub fn check_params(
    label: &str,
    declared: &[(&str, Option<f64>, Option<f64>)],
    params: &BTreeMap<String, f64>,
    grid: &BTreeMap<String, Vec<f64>>,
) -> Result<(), FieldError> {
    let tried = params
        .iter()
        .map(|(n, v)| (format!("params.{n}"), n, *v))
        .chain(
            grid.iter()
                .flat_map(|(n, vs)| vs.iter().map(move |v| (format!("grid.{n}"), n, *v))),
        );
    for (field, name, value) in tried {
        let Some((_, min, max)) = declared.iter().find(|(n, ..)| n == name) else {
            let known: Vec<&str> = declared.iter().map(|(n, ..)| *n).collect();
            return Err((
                field,
                format!(
                    "{label} has no parameter {name:?} (it has: {})",
                    known.join(", ")
                ),
            ));
        };
        if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
            return Err((field, format!("{value} is outside [{min:?}, {max:?}]")));
        }
    }
    Ok(())
}

/// The job handler.
pub struct BacktestRun {
    pub plugins: Arc<PluginRegistry>,
    pub ticks: Arc<dyn TickStore>,
    pub meta: Arc<dyn MetaStore>,
    /// Where each run's files go: `backtests/<job id>/<file>`.
    pub blobs: Arc<dyn BlobStore>,
    /// Where files are written before they are stored as blobs, when the
    /// blob store keeps them elsewhere than in local files.
    pub scratch: PathBuf,
}

/// The blob key of a backtest's file.
pub fn blob_key(job_id: &str, file: &str) -> String {
    format!("backtests/{job_id}/{file}")
}

impl BacktestRun {
    /// Writes the run's files where the blob store keeps them, or to
    /// scratch and then into the store.
    fn store_files(&self, ctx: &JobContext<'_>, o: &Outcome, report: &str) -> Result<(), String> {
        let job_id = ctx.job().id.as_str();
        if let Some(dir) = self.blobs.local_path(&format!("backtests/{job_id}")) {
            return crate::export::write_files(&dir, o, report);
        }
        let dir = self.scratch.join(format!("backtest-{job_id}"));
        let stored = (|| {
            crate::export::write_files(&dir, o, report)?;
            for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
                let path = entry.map_err(|e| e.to_string())?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                ctx.block_on(self.blobs.put_file(&blob_key(job_id, name), &path))
                    .map_err(|e| format!("storing {name}: {e}"))?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        stored
    }
}

#[async_trait::async_trait]
impl JobHandler for BacktestRun {
    fn kind(&self) -> &'static str {
        KIND
    }
    fn queue(&self) -> &'static str {
        qb_jobs::QUEUE_BACKTEST
    }
    fn description(&self) -> &'static str {
        "Run a strategy plugin over stored bars (POST /api/v1/backtests enqueues these)"
    }
    fn trader_may_enqueue(&self) -> bool {
        true
    }
    async fn check(&self, params: serde_json::Value) -> Result<serde_json::Value, FieldError> {
        let spec: BacktestSpec =
            serde_json::from_value(params).map_err(|e| ("params".to_string(), e.to_string()))?;
        let spec = check_spec(&self.plugins, spec, &BTreeMap::new()).await?;
        serde_json::to_value(&spec).map_err(|e| ("params".to_string(), e.to_string()))
    }

    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let spec: BacktestSpec =
            serde_json::from_value(params.clone()).map_err(JobError::failed)?;
        let plugin = ctx
            .block_on(self.plugins.load(&spec.plugin))
            .map_err(|e| JobError::Failed(format!("plugin: {e}")))?;
        let _lease = self.plugins.lease(&spec.plugin);
        let info = ctx.block_on(self.plugins.get(&spec.plugin)).ok().flatten();
        let (data, instruments) = ctx
            .block_on(inputs(&*self.ticks, &*self.meta, &spec))
            .map_err(JobError::Failed)?;
        let mut stop = None;
        let outcome = execute(&plugin, &spec, &data, instruments, |f| {
            match ctx
                .check()
                .and_then(|()| ctx.progress(f * 0.95, "replaying"))
            {
                Ok(()) => true,
                Err(e) => {
                    stop = Some(e);
                    false
                }
            }
        });
        let o = match outcome {
            Ok(o) => o,
            Err(RunError::Cancelled) => return Err(stop.unwrap_or(JobError::Cancelled)),
            Err(e) => return Err(JobError::Failed(e.to_string())),
        };
        let plugin_label = info
            .as_ref()
            .map_or(spec.plugin.clone(), |i| format!("{} {}", i.name, i.version));
        let report = o.report(&format!("Backtest {}", ctx.job().id), &spec, &plugin_label);
        self.store_files(ctx, &o, &report)
            .map_err(JobError::Failed)?;
        Ok(serde_json::json!({
            "final_equity": o.result.final_equity,
            "final_cash": o.result.final_cash,
            "result_hash": o.hash,
            "rows": o.result.rows,
            "fills": o.result.fills.len(),
            "round_trips": o.trips.len(),
            "metrics": o.metrics,
            "per_symbol": o.per_symbol,
            "rejections": o.result.rejections.iter().take(20).collect::<Vec<_>>(),
            "rejected_orders": o.result.rejections.len(),
        }))
    }
}
