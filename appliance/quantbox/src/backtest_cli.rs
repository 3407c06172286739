//! `quantbox backtest ...`: one backtest of a plugin file over this data
//! directory's bars, without a server; prints the summary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use qb_backtest::job::{BacktestSpec, execute};
use qb_core::config::Config;
use qb_plugin_host::{Limits, Param, Plugin, PluginEngine, WasmKind, componentize, kind};

#[derive(Args)]
pub struct BacktestArgs {
    /// The strategy: a component, or a core module built with the SDK.
    #[arg(long)]
    pub plugin: PathBuf,
    /// Symbols to replay (repeatable).
    #[arg(long = "symbol", required = true)]
    pub symbols: Vec<String>,
    /// Start (RFC 3339 or YYYY-MM-DD, inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// End (RFC 3339 or YYYY-MM-DD, exclusive).
    #[arg(long)]
    pub end: Option<String>,
    /// Bar interval (1m, 5m, 1h, 1d, ...) or `tick` for tick mode.
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// Strategy parameter NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    #[arg(long, default_value = "1000000")]
    pub cash: String,
    /// Slippage of market and stop fills in price ticks.
    #[arg(long, default_value_t = 0)]
    pub slippage_ticks: u32,
    /// Print the whole result as JSON (metrics, fills, round trips).
    #[arg(long)]
    pub json: bool,
    /// Also write the self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

fn time(field: &str, s: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(s) = s else { return Ok(None) };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_nanos_opt());
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--{field} {s:?} is neither RFC 3339 nor YYYY-MM-DD"))?;
    Ok(day
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_utc().timestamp_nanos_opt()))
}

pub fn run_cli(config: &Config, args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let (start, end) = (time("start", &args.start)?, time("end", &args.end)?);
    let mut params = Vec::new();
    for p in &args.params {
        let Some((name, value)) = p.split_once('=') else {
            bail!("--param {p:?} is not NAME=VALUE");
        };
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--param {name}: {value:?} is not a number"))?;
        if params.iter().any(|q: &Param| q.name == name.trim()) {
            bail!("--param {name} is given twice");
        }
        params.push(Param {
            name: name.trim().into(),
            value,
        });
    }
    let cash = args
        .cash
        .parse()
        .with_context(|| format!("--cash {:?} is not a number", args.cash))?;
    let bytes = std::fs::read(&args.plugin).with_context(|| args.plugin.display().to_string())?;
    let bytes = if kind(&bytes) == WasmKind::CoreModule {
        componentize(&bytes)?
    } else {
        bytes
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (meta, store) = rt.block_on(qb_stores::open_meta_and_ticks(config))?;
    let spec = BacktestSpec {
        plugin: qb_plugin_host::sha256_hex(&bytes),
        params: params.iter().map(|p| (p.name.clone(), p.value)).collect(),
        symbols: args.symbols.clone(),
        start,
        end,
        interval: args.interval.clone(),
        initial_cash: cash,
        commission_rate: None,
        commission_per_lot: None,
        slippage_bps: None,
        slippage_ticks: Some(args.slippage_ticks),
        seed: 0,
    };
    spec.validate()
        .map_err(|(field, msg)| anyhow::anyhow!("{field}: {msg}"))?;
    let (data, instruments) = rt
        .block_on(qb_backtest::job::inputs(
            store.as_ref(),
            meta.as_ref(),
            &spec,
        ))
        .map_err(anyhow::Error::msg)?;
    let limits = Limits::from(&config.plugins);
    let run_spec = spec.clone();
    // Plugins run on a thread with a worker's stack, as in the server.
    let o = std::thread::Builder::new()
        .stack_size(qb_jobs::WORKER_STACK_BYTES)
        .spawn(move || -> anyhow::Result<_> {
            let engine = PluginEngine::new(limits)?;
            let plugin = Plugin::compile(&engine, &bytes)?;
            // The parameters against the plugin's own schema, as for an
            // uploaded plugin (`qb_backtest::job::check_spec`).
            let inst = plugin.instantiate(qb_plugin_host::Inert, 0)?;
            let info = inst.info();
            let declared: Vec<(&str, Option<f64>, Option<f64>)> = info
                .params
                .iter()
                .map(|p| (p.name.as_str(), p.min, p.max))
                .collect();
            qb_backtest::job::check_params(
                &format!("{} {}", info.name, info.version),
                &declared,
                &run_spec.params,
                &Default::default(),
            )
            .map_err(|(field, msg)| anyhow::anyhow!("--param ({field}): {msg}"))?;
            drop(inst);
            Ok(execute(&plugin, &run_spec, &data, instruments, |_| true)?)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the backtest thread panicked"))??;
    let (result, metrics) = (&o.result, &o.metrics);
    if let Some(path) = &args.report {
        let doc = o.report(
            "quantbox backtest",
            &spec,
            &args.plugin.display().to_string(),
        );
        std::fs::write(path, doc).with_context(|| path.display().to_string())?;
    }
    if args.json {
        let out = serde_json::json!({
            "result_hash": o.hash,
            "rows": result.rows,
            "final_equity": result.final_equity,
            "final_cash": result.final_cash,
            "metrics": metrics,
            "per_symbol": o.per_symbol,
            "fills": result.fills,
            "round_trips": o.trips,
            "rejections": result.rejections,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("rows          {}", result.rows);
        println!("fills         {}", result.fills.len());
        println!("round trips   {}", metrics.round_trips);
        println!("final equity  {}", result.final_equity);
        println!("total return  {:.4}%", metrics.total_return * 100.0);
        println!("CAGR          {:.4}%", metrics.cagr * 100.0);
        println!("Sharpe        {:.3}", metrics.sharpe);
        println!("max drawdown  {:.4}%", metrics.max_drawdown * 100.0);
        println!("win rate      {:.2}%", metrics.win_rate * 100.0);
        println!("fees          {:.2}", metrics.total_fees);
        println!("result hash   {}", o.hash);
        for r in &result.rejections {
            println!("rejected      {} at {}: {}", r.client_id, r.ts, r.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}
