//! `quantbox`: the appliance binary. Parses the command line, loads the
//! configuration and hands over to the subcommand.

mod backtest_cli;
mod backup;
mod bootstrap;
mod cli;
mod cluster_import;
mod import;
mod plugin_cli;
mod serve;
mod users;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Everything quantbox creates (databases, blobs, caches) is its
    // owner's alone: files 0600, directories 0700. Set before any thread
    // starts, so every file the stores create inherits it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
