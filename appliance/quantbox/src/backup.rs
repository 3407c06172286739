//! `quantbox backup` and `quantbox restore` (one box), and the writer
//! behind `POST /api/v1/backups`. The copies are made by
//! `qb_stores::backup`; this module decides who makes them: the running
//! server (asked over HTTP, as DuckDB and redb lock their files against
//! other processes) or, when none runs, this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use qb_api::routes::backups::{BackupSummary, BackupWriter};
use qb_core::config::Config;
use qb_stores::backup::{BoxBackup, Manifest, backup_name};

#[derive(Args)]
pub struct BackupArgs {
    /// Directory to put the backup in (it becomes DIR/<name>); default
    /// the data directory's `backups/`.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// The running server's address (default: `bind` of the
    /// configuration, on 127.0.0.1 when it listens on every address).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// An admin's access token or API key, for a running server (env
    /// QB_TOKEN: not QUANTBOX_, which names configuration keys).
    #[arg(long, env = "QB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Write one tar file, `<name>.tar`, instead of the directory
    /// `<name>/` (`restore --from` takes either).
    #[arg(long)]
    pub archive: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup: the directory or the `.tar` file `quantbox backup`
    /// wrote.
    #[arg(long, value_name = "BACKUP")]
    pub from: PathBuf,
}

/// The server's writer: backups under `<data_dir>/backups/<name>`.
pub struct ServerBackups(pub BoxBackup);

impl BackupWriter for ServerBackups {
    fn write(&self) -> Result<Option<BackupSummary>, String> {
        let name = &backup_name();
        let dest = self.0.dir().join(name);
        std::fs::create_dir_all(self.0.dir()).map_err(|e| e.to_string())?;
        match self.0.write(&dest, env!("CARGO_PKG_VERSION")) {
            None => Ok(None),
            Some(Ok(m)) => {
                tracing::info!(backup = %dest.display(), took_ms = m.took_ms, bytes = m.bytes(), "backup written");
                Ok(Some(summary(name, &m)))
            }
            Some(Err(e)) => Err(format!("{e:#}")),
        }
    }
}

fn summary(name: &str, m: &Manifest) -> BackupSummary {
    BackupSummary {
        name: name.to_string(),
        started_at: m.started_at.clone(),
        took_ms: m.took_ms,
        files: m.files.len() as u64,
        bytes: m.bytes(),
        stores: m.stores.clone(),
    }
}

fn print_summary(s: &BackupSummary, at: &Path) {
    println!(
        "backup {} written to {} ({} files, {} bytes, {} ms; everything acknowledged before {} is in it)",
        s.name,
        at.display(),
        s.files,
        s.bytes,
        s.took_ms,
        s.started_at
    );
    for (store, tables) in &s.stores {
        for (table, rows) in tables {
            println!("  {store:<8} {table:<24} {rows:>12}");
        }
    }
}

pub fn run_backup(config: &Config, args: BackupArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !config.cluster_mode(),
        "cluster mode keeps its data in PostgreSQL: back it up with PostgreSQL's tools \
         (pg_dump, or base backups with WAL archiving)"
    );
    match qb_stores::open_box_backup(config) {
        Ok(b) => {
            // No server holds the stores: this process copies them.
            let dir = args.to.clone().unwrap_or_else(|| b.dir());
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let name = backup_name();
            let dest = dir.join(&name);
            let m = b
                .write(&dest, env!("CARGO_PKG_VERSION"))
                .context("another backup is being written")??;
            let at = if args.archive { pack(&dest)? } else { dest };
            print_summary(&summary(&name, &m), &at);
            Ok(ExitCode::SUCCESS)
        }
        Err(open) => {
            let Some(token) = args.token.as_deref() else {
                bail!(
                    "{open:#}\nIf a server is using this data directory, it writes the backup: \
                     pass --token (or QB_TOKEN) with an admin's access token or API key"
                );
            };
            let url = args.url.clone().unwrap_or_else(|| default_url(config.bind));
            let s = ask_server(&url, token)?;
            let written = config.data_dir.join("backups").join(&s.name);
            let at = match &args.to {
                Some(dir) if written.is_dir() => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let to = dir.join(&s.name);
                    move_dir(&written, &to)?;
                    to
                }
                Some(_) => bail!(
                    "the server wrote backup {} under its data directory's backups/, which is not {} here: \
                     move it from the server's machine",
                    s.name,
                    written.display()
                ),
                None => written,
            };
            let at = if args.archive { pack(&at)? } else { at };
            print_summary(&s, &at);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_restore(config: &Config, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let restored = if args.from.is_file() {
        if std::fs::read_dir(&config.data_dir).is_ok_and(|mut d| d.next().is_some()) {
            bail!(
                "{} is not empty: restore only into a new or empty data directory",
                config.data_dir.display()
            );
        }
        // An archive: unpacked next to the new data directory, restored
        // (every digest checked) from there, then removed.
        let staging = unpack(&args.from, &config.data_dir)?;
        let r = staging
            .backup()
            .and_then(|b| qb_stores::backup::restore(&b, &config.data_dir));
        drop(staging);
        r
    } else {
        qb_stores::backup::restore(&args.from, &config.data_dir)
    };
    let (m, checks) = restored?;
    println!(
        "restored backup of {} (quantbox {}) into {}: {} files, {} bytes, every SHA-256 as the manifest says",
        m.started_at,
        m.version,
        config.data_dir.display(),
        m.files.len(),
        m.bytes()
    );
    println!("  store    table                        manifest     restored");
    let mut bad = 0;
    for c in &checks {
        let verdict = if c.expected == c.found {
            "ok"
        } else {
            bad += 1;
            "DIFFERS"
        };
        println!(
            "  {:<8} {:<24} {:>12} {:>12}  {verdict}",
            c.store, c.table, c.expected, c.found
        );
    }
    if bad == 0 {
        println!("done: start quantbox with this data directory");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: {bad} table(s) differ from the manifest");
        Ok(ExitCode::from(1))
    }
}

fn default_url(bind: SocketAddr) -> String {
    let host = match bind {
        SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_string(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_string(),
        a => a.ip().to_string(),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}", bind.port())
}

/// `POST /api/v1/backups` to the server at `url`.
fn ask_server(url: &str, token: &str) -> anyhow::Result<BackupSummary> {
    let url = format!("{}/api/v1/backups", url.trim_end_matches('/'));
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?
        .post(&url)
        .bearer_auth(token)
        .send()
        .with_context(|| format!("asking the server at {url}"))?;
    let status = r.status();
    if status != reqwest::StatusCode::CREATED {
        let body = r.text().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("the server answered {}: {detail}", status.as_u16());
    }
    r.json()
        .context("the server's answer is not a backup summary")
}

/// Moves a directory, by rename or, across file systems, by copy.
fn move_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!to.exists(), "{} exists", to.display());
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    copy_dir(from, to)?;
    std::fs::remove_dir_all(from).with_context(|| format!("removing {}", from.display()))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    Ok(())
}

/// Packs the backup directory `dir` into `<dir>.tar` (entries under
/// `<name>/`; written as `.tar.partial`, synced, renamed) and removes the
/// directory. Returns the archive's path.
fn pack(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = dir
        .file_name()
        .context("a backup needs a directory name")?
        .to_string_lossy()
        .into_owned();
    let archive = dir.with_file_name(format!("{name}.tar"));
    anyhow::ensure!(!archive.exists(), "{} exists", archive.display());
    let partial = dir.with_file_name(format!("{name}.tar.partial"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let packed = (|| -> anyhow::Result<()> {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        tar.follow_symlinks(false);
        tar.append_dir_all(&name, dir)?;
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = packed {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("writing {}", partial.display())));
    }
    std::fs::rename(&partial, &archive)
        .with_context(|| format!("renaming {} to {}", partial.display(), archive.display()))?;
    if let Some(parent) = archive.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(archive)
}

/// An archive unpacked into a directory beside the data directory,
/// removed when dropped.
struct Staging(PathBuf);

impl Staging {
    /// The backup inside: the one top-level directory holding a manifest.
    fn backup(&self) -> anyhow::Result<PathBuf> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&self.0)? {
            let e = e?;
            if e.file_type()?.is_dir() && e.path().join(qb_stores::backup::MANIFEST).is_file() {
                found.push(e.path());
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            n => bail!("the archive holds {n} backups (directories with a manifest.json), not one"),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unpack(archive: &Path, data_dir: &Path) -> anyhow::Result<Staging> {
    let name = data_dir
        .file_name()
        .context("the data directory needs a name")?
        .to_string_lossy();
    let dir = data_dir.with_file_name(format!(".{name}.restore-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = Staging(dir);
    let file =
        std::fs::File::open(archive).with_context(|| format!("reading {}", archive.display()))?;
    // `unpack` keeps every entry inside the directory (no `..`, no
    // absolute paths).
    tar::Archive::new(std::io::BufReader::new(file))
        .unpack(&staging.0)
        .with_context(|| format!("unpacking {} (is it a quantbox backup?)", archive.display()))?;
    Ok(staging)
}
