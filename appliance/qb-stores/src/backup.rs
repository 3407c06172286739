//! Backup and restore of one box's data directory (`quantbox backup`,
//! `quantbox restore`, `POST /api/v1/backups`).
//!
//! A backup is a directory holding a consistent copy of each store, taken
//! while the server serves and writes (the copies are made by the process
//! that holds the stores open: DuckDB and redb lock their files against
//! other processes):
//!
//! - `quantbox.sqlite`: SQLite's `VACUUM INTO` (one read transaction);
//! - `state.redb`: every table read in one redb read transaction and
//!   written into a new redb file;
//! - `market.duckdb`: `ticks` and `bars` inserted, in one DuckDB
//!   transaction, into a new file attached to the live database;
//! - the blobs under `uploads/` and `backtests/` (written by rename, so a
//!   file is copied whole, old or new), and the signing secret file.
//!
//! Stores are copied in that order, one after the other: each is
//! consistent in itself and holds at least everything acknowledged before
//! the backup started. `manifest.json` lists every file with its size and
//! SHA-256 and every table with its rows; `restore` refuses a non-empty
//! target, checks every file's digest as it copies, then opens the
//! restored stores and compares their rows with the manifest.
//! The backup is written as `<name>.partial` and renamed when complete.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "manifest.json";
/// The layout version a backup is written in.
pub const FORMAT: u32 = 1;
/// The data directory's blob prefixes (directories) a backup copies.
pub const BLOB_DIRS: &[&str] = &["uploads", "backtests"];
/// Small files of the data directory copied when present (the generated
/// access-token signing secret).
pub const EXTRA_FILES: &[&str] = &["secret_key"];

const SQLITE: &str = "quantbox.sqlite";
const REDB: &str = "state.redb";
const DUCKDB: &str = "market.duckdb";

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the backup (and to the data directory it restores into).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The quantbox version that wrote it.
    pub version: String,
    /// When the backup started, RFC 3339 UTC.
    pub started_at: String,
    pub took_ms: u64,
    /// Store (`sqlite`, `redb`, `duckdb`, `blobs`) → table → rows
    /// (`blobs`: `files`, `bytes`).
    pub stores: BTreeMap<String, BTreeMap<String, u64>>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// The open stores of a box, as a backup reads them. Cheap to clone; one
/// backup at a time.
#[derive(Clone)]
pub struct BoxBackup {
    data_dir: PathBuf,
    sqlite: qb_store::Sqlite,
    kv: qb_store::RedbKv,
    ticks: qb_market::DuckStore,
    running: Arc<parking_lot::Mutex<()>>,
}

impl BoxBackup {
    pub fn new(
        data_dir: &Path,
        sqlite: qb_store::Sqlite,
        kv: qb_store::RedbKv,
        ticks: qb_market::DuckStore,
    ) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            sqlite,
            kv,
            ticks,
            running: Arc::default(),
        }
    }

    /// Where the server writes backups: `<data_dir>/backups`.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }

    /// Writes a backup into the new directory `dest` (blocking). `None`
    /// when another backup is being written.
    pub fn write(&self, dest: &Path, version: &str) -> Option<anyhow::Result<Manifest>> {
        let _one = self.running.try_lock()?;
        Some(self.write_locked(dest, version))
    }

    fn write_locked(&self, dest: &Path, version: &str) -> anyhow::Result<Manifest> {
        ensure!(!dest.exists(), "{} exists", dest.display());
        let started = Instant::now();
        let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let name = dest
            .file_name()
            .context("a backup needs a directory name")?
            .to_string_lossy();
        let partial = dest.with_file_name(format!("{name}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let result = self.fill(&partial, version, &started_at, started);
        match result {
            Ok(m) => {
                std::fs::rename(&partial, dest).with_context(|| {
                    format!("renaming {} to {}", partial.display(), dest.display())
                })?;
                sync_dir(dest.parent().unwrap_or(dest));
                Ok(m)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                Err(e)
            }
        }
    }

    fn fill(
        &self,
        out: &Path,
        version: &str,
        started_at: &str,
        started: Instant,
    ) -> anyhow::Result<Manifest> {
        let mut stores = BTreeMap::new();
        let sqlite = self
            .sqlite
            .backup_into(&out.join(SQLITE))
            .context("copying the metadata store (SQLite)")?;
        stores.insert("sqlite".to_string(), sqlite.into_iter().collect());
        let redb = self
            .kv
            .backup_into(&out.join(REDB))
            .context("copying the hot state (redb)")?;
        stores.insert("redb".to_string(), redb.into_iter().collect());
        let duck = self
            .ticks
            .backup_into(&out.join(DUCKDB))
            .context("copying the tick store (DuckDB)")?;
        stores.insert("duckdb".to_string(), duck.into_iter().collect());
        let mut files = Vec::new();
        for f in [SQLITE, REDB, DUCKDB] {
            files.push(hash_file(out, f)?);
        }
        let (mut blobs, mut blob_bytes) = (0u64, 0u64);
        for dir in BLOB_DIRS {
            for rel in walk(&self.data_dir, Path::new(dir))? {
                let from = self.data_dir.join(&rel);
                let to = out.join(&rel);
                let Some((bytes, sha)) = copy_hashed(&from, &to)? else {
                    continue; // deleted since it was listed (an import done)
                };
                blobs += 1;
                blob_bytes += bytes;
                files.push(FileEntry {
                    path: rel_text(&rel)?,
                    bytes,
                    sha256: sha,
                });
            }
        }
        stores.insert(
            "blobs".to_string(),
            BTreeMap::from([
                ("files".to_string(), blobs),
                ("bytes".to_string(), blob_bytes),
            ]),
        );
        for f in EXTRA_FILES {
            if let Some((bytes, sha)) = copy_hashed(&self.data_dir.join(f), &out.join(f))? {
                files.push(FileEntry {
                    path: f.to_string(),
                    bytes,
                    sha256: sha,
                });
            }
        }
        let manifest = Manifest {
            format: FORMAT,
            version: version.to_string(),
            started_at: started_at.to_string(),
            took_ms: started.elapsed().as_millis() as u64,
            stores,
            files,
        };
        let path = out.join(MANIFEST);
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
        f.sync_all()?;
        sync_dir(out);
        Ok(manifest)
    }
}

/// The name of a backup started now: its UTC time, to the millisecond
/// (`20261202T190300.123Z`), so names sort as the backups were taken.
pub fn backup_name() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// Reads `<backup>/manifest.json`.
pub fn read_manifest(backup: &Path) -> anyhow::Result<Manifest> {
    let path = backup.join(MANIFEST);
    let raw = std::fs::read(&path)
        .with_context(|| format!("reading {} (is this a quantbox backup?)", path.display()))?;
    let m: Manifest = serde_json::from_slice(&raw)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    ensure!(
        m.format == FORMAT,
        "{} is format {}, this build reads format {FORMAT}",
        path.display(),
        m.format
    );
    Ok(m)
}

/// One line of a restore's check: a store's table, the rows the manifest
/// lists and the rows found in the restored store.
#[derive(Debug, Clone)]
pub struct CountCheck {
    pub store: String,
    pub table: String,
    pub expected: u64,
    pub found: u64,
}

/// `quantbox restore`: copies the backup at `from` into the empty (or
/// absent) directory `data_dir`, checking every file's size and SHA-256
/// against the manifest as it copies, then opens the restored stores and
/// counts their rows. Errors on a digest mismatch; the counts are
/// returned for the caller to compare (`CountCheck`).
pub fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<(Manifest, Vec<CountCheck>)> {
    let manifest = read_manifest(from)?;
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty: restore only into a new or empty data directory",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    for f in &manifest.files {
        let rel = safe_rel(&f.path)?;
        let (bytes, sha) = copy_hashed(&from.join(&rel), &data_dir.join(&rel))?
            .with_context(|| format!("{} is missing from the backup", f.path))?;
        if bytes != f.bytes || sha != f.sha256 {
            bail!(
                "{}: {bytes} bytes, SHA-256 {sha}; the manifest says {} bytes, {}: the backup is damaged",
                f.path,
                f.bytes,
                f.sha256
            );
        }
    }
    sync_dir(data_dir);
    let found = count(data_dir)?;
    let mut checks = Vec::new();
    for (store, tables) in &manifest.stores {
        for (table, expected) in tables {
            let found = found
                .get(store)
                .and_then(|t| t.get(table))
                .copied()
                .unwrap_or(0);
            checks.push(CountCheck {
                store: store.clone(),
                table: table.clone(),
                expected: *expected,
                found,
            });
        }
    }
    Ok((manifest, checks))
}

/// The rows of every store of the (stopped) box at `data_dir`, keyed as a
/// manifest keys them.
pub fn count(data_dir: &Path) -> anyhow::Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut out = BTreeMap::new();
    let sqlite = data_dir.join(SQLITE);
    out.insert(
        "sqlite".to_string(),
        qb_store::Sqlite::table_counts(&sqlite)
            .with_context(|| format!("counting {}", sqlite.display()))?
            .into_iter()
            .collect(),
    );
    let redb = data_dir.join(REDB);
    out.insert(
        "redb".to_string(),
        qb_store::RedbKv::open(&redb)
            .and_then(|kv| kv.table_counts())
            .with_context(|| format!("counting {}", redb.display()))?
            .into_iter()
            .collect(),
    );
    let duck = data_dir.join(DUCKDB);
    out.insert(
        "duckdb".to_string(),
        qb_market::DuckStore::open(&duck)
            .and_then(|d| d.table_counts())
            .with_context(|| format!("counting {}", duck.display()))?
            .into_iter()
            .collect(),
    );
    let (mut files, mut bytes) = (0u64, 0u64);
    for dir in BLOB_DIRS {
        for rel in walk(data_dir, Path::new(dir))? {
            files += 1;
            bytes += std::fs::metadata(data_dir.join(&rel))?.len();
        }
    }
    out.insert(
        "blobs".to_string(),
        BTreeMap::from([("files".to_string(), files), ("bytes".to_string(), bytes)]),
    );
    Ok(out)
}

/// A manifest path as a relative path with normal components only.
fn safe_rel(path: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(path);
    ensure!(
        !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_))),
        "the manifest names a file outside the backup: {path:?}"
    );
    Ok(p)
}

fn rel_text(rel: &Path) -> anyhow::Result<String> {
    rel.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not UTF-8", rel.display()))
}

/// Files under `root/dir`, relative to `root`, in name order; hidden files
/// (a blob being written is a `.…partial` file) are left out.
fn walk(root: &Path, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.join(dir).display())),
    };
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let rel = dir.join(e.file_name());
        let kind = e.file_type()?;
        if kind.is_dir() {
            out.extend(walk(root, &rel)?);
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(out)
}

/// Copies `from` to `to` (creating its directory, mode 0600, synced),
/// returning its size and SHA-256; `None` if `from` does not exist.
fn copy_hashed(from: &Path, to: &Path) -> anyhow::Result<Option<(u64, String)>> {
    let mut src = match std::fs::File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", from.display())),
    };
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut dst = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .with_context(|| format!("creating {}", to.display()))?
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .with_context(|| format!("reading {}", from.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .with_context(|| format!("writing {}", to.display()))?;
        bytes += n as u64;
    }
    dst.sync_all()?;
    Ok(Some((bytes, hex::encode(h.finalize()))))
}

/// Size and SHA-256 of the file `rel` under `dir`, synced.
fn hash_file(dir: &Path, rel: &str) -> anyhow::Result<FileEntry> {
    let path = dir.join(rel);
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    f.sync_all()?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h)?;
    Ok(FileEntry {
        path: rel.to_string(),
        bytes,
        sha256: hex::encode(h.finalize()),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
