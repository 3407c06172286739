//! `quantbox backup` and `quantbox restore` (one box), and the writer
//! behind `POST /api/v1/backups`. The copies are made by
//! `qb_stores::backup`; this module decides who makes them: the running
//! server (asked over HTTP, as DuckDB and redb lock their files against
//! other processes) or, when none runs, this process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use qb_api::routes::backups::{BackupSummary, BackupWriter};
use qb_core::config::Config;
use qb_stores::backup::{BoxBackup, Manifest};

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
    fn write(&self, name: &str) -> Result<Option<BackupSummary>, String> {
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
    let name = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    match qb_stores::open_box_backup(config) {
        Ok(b) => {
            // No server holds the stores: this process copies them.
            let dir = args.to.clone().unwrap_or_else(|| b.dir());
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
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

/// `POST /api/v1/backups` over plain HTTP/1.1 (the server on this box;
/// behind TLS, run the command on the box itself).
fn ask_server(url: &str, token: &str) -> anyhow::Result<BackupSummary> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs (the server on this box)"))?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let mut stream = TcpStream::connect(authority)
        .with_context(|| format!("connecting to the server at {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3600)))?;
    let request = format!(
        "POST {base}/api/v1/backups HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the server's answer has no header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the server's answer has no status")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status != 201 {
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("the server answered {status}: {detail}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).context("the server's answer is not JSON")?;
    let stores = serde_json::from_value(v["stores"].clone()).unwrap_or_default();
    Ok(BackupSummary {
        name: v["name"]
            .as_str()
            .context("the server's answer names no backup")?
            .to_string(),
        started_at: v["started_at"].as_str().unwrap_or_default().to_string(),
        took_ms: v["took_ms"].as_u64().unwrap_or(0),
        files: v["files"].as_u64().unwrap_or(0),
        bytes: v["bytes"].as_u64().unwrap_or(0),
        stores,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
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
