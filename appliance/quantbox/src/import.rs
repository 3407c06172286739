//! `quantbox import FILE ...`: the import job's code, run in the foreground.

use std::process::ExitCode;

use anyhow::{Context, bail};
use qb_core::config::Config;
use qb_core::market::{ImportMode, ImportOptions, ImportRequest};

use crate::cli::ImportArgs;

pub fn run(config: &Config, args: ImportArgs) -> anyhow::Result<ExitCode> {
    crate::bootstrap::ensure_data_dir(&config.data_dir)?;
    let mut mapping = std::collections::BTreeMap::new();
    for m in &args.map {
        let Some((field, column)) = m.split_once('=') else {
            bail!("--map {m:?} is not FIELD=COLUMN");
        };
        mapping.insert(field.trim().to_string(), column.trim().to_string());
    }
    let path = std::fs::canonicalize(&args.file)
        .with_context(|| format!("{} is not readable", args.file.display()))?;
    let options: ImportOptions = serde_json::from_value(serde_json::json!({
        "format": args.format,
        "mode": args.mode,
        "timezone": args.timezone,
        "symbol": args.symbol,
        "interval": args.interval,
        "ts_unit": args.ts_unit,
        "mapping": mapping,
    }))?;
    let request = ImportRequest {
        path: path.to_string_lossy().into_owned(),
        options,
    };
    // Multi-threaded: the PostgreSQL tick store runs an import's database
    // work on the runtime while this thread parses.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (meta, store) = rt.block_on(qb_stores::open_meta_and_ticks(config))?;
    let progress = |f: f64, msg: &str| eprintln!("{:>3.0}% {msg}", f * 100.0);
    let report = store.import(&request, &progress)?;
    let created = rt.block_on(meta.ensure_instruments(&report.symbols))?;
    rt.block_on(store.checkpoint())?;
    let mut out = serde_json::to_value(&report)?;
    out["symbols_created"] = serde_json::json!(created);
    println!("{}", serde_json::to_string_pretty(&out)?);
    if request.mode == ImportMode::Strict && report.rows_rejected > 0 {
        eprintln!("file rejected: nothing stored");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
