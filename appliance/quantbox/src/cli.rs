//! Command-line interface.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use qb_core::config::{Config, ConfigSource};

#[derive(Parser)]
#[command(
    name = "quantbox",
    version,
    about = "Self-hosted quant trading backend"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone, Default)]
pub struct Global {
    /// Config file (default: /etc/quantbox/quantbox.toml when it exists; env QUANTBOX_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (env QUANTBOX_BIND; default 127.0.0.1:8000).
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Data directory (env QUANTBOX_DATA_DIR; default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Set by `serve --role`.
    #[arg(skip)]
    pub role: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: API, dashboard, job workers, scheduler and trading
    /// desk, or the roles given with --role.
    Serve(ServeArgs),
    /// Apply schema migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import a market data file into this data directory (the same code as
    /// `POST /api/v1/market/imports`; stop the server first or use the API).
    Import(ImportArgs),
    /// Run one backtest of a plugin file over this data directory's bars.
    Backtest(crate::backtest_cli::BacktestArgs),
    /// Strategy plugins: scaffold, build, check.
    #[command(subcommand)]
    Plugin(crate::plugin_cli::PluginCommand),
    /// Back up this box's stores while it serves (the running server
    /// writes the copy; pass an admin token) or while it is stopped.
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into a new, empty data directory (--data-dir),
    /// checking every file's SHA-256 and every table's rows against the
    /// backup's manifest. Offline: no server may use the directory.
    Restore(crate::backup::RestoreArgs),
    /// Cluster mode: move a box's data into the cluster stores.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print the version.
    Version,
}

#[derive(Args)]
pub struct ImportArgs {
    pub file: PathBuf,
    #[arg(long, value_parser = ["csv", "ctp", "bars_csv", "parquet"])]
    pub format: String,
    #[arg(long, default_value = "strict", value_parser = ["strict", "skip"])]
    pub mode: String,
    /// Zone of timestamps without an offset (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Symbol for files without a symbol column.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Bar interval for bars_csv (e.g. 1m).
    #[arg(long)]
    pub interval: Option<String>,
    /// Unit of integer timestamps: ns, us, ms, s.
    #[arg(long)]
    pub ts_unit: Option<String>,
    /// Column mapping, FIELD=COLUMN (repeatable), e.g. --map ts=time.
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    pub map: Vec<String>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password unless --password-stdin.
    Add {
        username: String,
        #[arg(long, default_value = "viewer", value_parser = ["admin", "trader", "viewer"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password; prints a generated one unless --password-stdin.
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Args, Clone, Default)]
pub struct ServeArgs {
    /// What this process runs: any of api, worker, scheduler, trader,
    /// comma-separated (env QUANTBOX_ROLE; default all of them).
    #[arg(long, value_name = "ROLES")]
    pub role: Option<String>,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Copy a box's data directory (users, API keys, instruments, ticks,
    /// imported bars, plugins, backtests and their files, schedules,
    /// trading state) into the cluster DATABASE_URL selects; resumable, a
    /// no-op when run again; prints counts and checksums of both sides.
    Import(crate::cluster_import::ImportArgs),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit 2 when invalid.
    Check,
    /// Print every environment variable the configuration reads, one per line.
    EnvKeys,
}

impl Global {
    fn source(&self) -> ConfigSource {
        let mut source = ConfigSource::from_process();
        source.file = self.config.clone();
        let mut overrides = BTreeMap::new();
        if let Some(b) = &self.bind {
            overrides.insert("bind".to_string(), b.clone());
        }
        if let Some(d) = &self.data_dir {
            overrides.insert("data_dir".to_string(), d.display().to_string());
        }
        if let Some(r) = &self.role {
            overrides.insert("role".to_string(), r.clone());
        }
        source.overrides = overrides;
        source
    }

    pub fn load(&self) -> Result<Config, qb_core::config::ConfigError> {
        Config::load(&self.source())
    }
}

fn load_or_exit(global: &Global) -> Result<Config, ExitCode> {
    global.load().map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("quantbox {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::EnvKeys) => {
            for k in Config::env_keys() {
                println!("{k}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            let source = cli.global.source();
            match Config::load(&source) {
                Ok(c) => {
                    if let Some(f) = source.config_file() {
                        println!("# config file: {}", f.display());
                    } else {
                        println!("# config file: none (built-in defaults and environment)");
                    }
                    print!("{}", c.to_redacted_toml());
                    println!("\n# stores (what this configuration selects)");
                    print!(
                        "{}",
                        toml::to_string_pretty(&qb_stores::backends(&c)).unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Migrate => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::bootstrap::ensure_data_dir(&config.data_dir)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (before, after) = rt.block_on(qb_stores::migrate(&config))?;
            if before == after {
                println!("schema is up to date (version {after})");
            } else {
                println!("migrated schema from version {before} to {after}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::users::run(&config, cmd)
        }
        Command::Import(args) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::import::run(&config, args)
        }
        Command::Cluster(ClusterCommand::Import(args)) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::cluster_import::run(&config, args)
        }
        Command::Backup(args) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::backup::run_backup(&config, args)
        }
        Command::Restore(args) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::backup::run_restore(&config, args)
        }
        Command::Backtest(args) => {
            let config = match load_or_exit(&cli.global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::backtest_cli::run_cli(&config, args)
        }
        Command::Plugin(cmd) => {
            // The sandbox limits of this installation when its config
            // loads, the built-in ones otherwise (plugins are often built
            // on a workstation).
            let limits = cli
                .global
                .load()
                .map(|c| qb_plugin_host::Limits::from(&c.plugins))
                .unwrap_or_default();
            crate::plugin_cli::run(cmd, limits)
        }
        Command::Serve(args) => {
            let mut global = cli.global.clone();
            global.role = args.role;
            let config = match load_or_exit(&global) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::serve::run(config)
        }
    }
}
