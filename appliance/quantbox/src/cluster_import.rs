//! `quantbox cluster import --from DATA_DIR`: copies one box's data into
//! the cluster stores `DATABASE_URL` selects, then checks the copy.
//!
//! What moves, through the storage seams only (never a backend's files):
//! the metadata and job tables row by row with their ids
//! (`qb_core::records`: users with their password hashes and token
//! versions, API keys, the audit log, instruments, plugins, schedules,
//! jobs, so backtests keep their ids), the hot state's durable entries
//! (trading accounts, orders, fills, positions, strategies), the blobs
//! (uploads waiting for their import, backtest files), every symbol's
//! ticks with their `seq`, and imported bars.
//!
//! - **Idempotent**: every write inserts only what the cluster does not
//!   hold yet (rows by key, entries by key, ticks by identity, bars by
//!   time); run again, it copies nothing and checks everything again.
//! - **Resumable**: ticks and bars, the long part, are copied in pages
//!   after a marker the cluster keeps (`cluster-import` entries of its
//!   hot state), advanced after each committed page; an interrupted run
//!   continues where it stopped.
//! - **Checked**: for every table, the hot state, the blobs, and each
//!   symbol's ticks and bars, it prints the box's count and SHA-256 over
//!   the rows and the cluster's over the same rows, and exits 1 unless all
//!   agree. A row the cluster holds differently (say, a first admin
//!   created by starting the cluster before the import) is reported, never
//!   overwritten.
//!
//! Not copied: sessions (refresh tokens, revoked-token entries: users log
//! in again; API keys keep working) and the box's compiled plugin cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use qb_core::config::Config;
use qb_core::market::{Bar, Interval, Tick};
use qb_core::records::{Row, TABLES, Table};
use qb_core::seams::tick_pages;
use qb_core::{KvWrite, StoreError};
use qb_stores::CopyStores;
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct ImportArgs {
    /// The box's data directory (stop its server first).
    #[arg(long, value_name = "DATA_DIR")]
    pub from: PathBuf,
    /// Rows, ticks or entries per page (one transaction each).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// The hot-state namespace of the resume markers, in the cluster.
const MARKERS: &str = "cluster-import";

/// A progress line every this many pages of ticks.
const PROGRESS_PAGES: u64 = 20;

/// Blob prefixes a box writes.
const BLOB_PREFIXES: &[&str] = &["uploads/", "backtests/"];

pub fn run(config: &Config, args: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        config.cluster_mode(),
        "the cluster to import into is chosen by DATABASE_URL (and the cluster's other \
         settings); it is not set"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let src = qb_stores::open_box(config, &args.from)?;
        let dst = qb_stores::open_cluster(config).await?;
        println!("quantbox cluster import");
        println!("  from {}", src.describe);
        println!("  into {}", dst.describe);
        println!("copy");
        let mut copy = Copy {
            src: &src,
            dst: &dst,
            batch: args.batch,
            conflicts: Vec::new(),
        };
        copy.tables().await?;
        copy.entries().await?;
        copy.blobs().await?;
        copy.ticks().await?;
        copy.bars().await?;
        println!("check (count, SHA-256 of the box's rows, of the cluster's same rows)");
        let mut bad = copy.conflicts.len();
        for check in copy.checks().await? {
            println!("{check}");
            bad += usize::from(!check.agrees());
        }
        for c in &copy.conflicts {
            println!("conflict {c}");
        }
        if bad == 0 {
            println!(
                "done: the cluster holds everything the box held. Sessions are not copied: \
                 users log in again (API keys keep working)."
            );
            Ok(ExitCode::SUCCESS)
        } else {
            println!("FAILED: {bad} item(s) differ; nothing the cluster held was overwritten");
            Ok(ExitCode::from(1))
        }
    })
}

struct Copy<'a> {
    src: &'a CopyStores,
    dst: &'a CopyStores,
    batch: u32,
    /// Rows the cluster holds differently, kept as they are.
    conflicts: Vec<String>,
}

fn copied(what: &str, total: u64, new: u64) {
    println!("  {what:<28} {total:>12}  {new:>12} new");
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn row_hash(row: &Row) -> [u8; 32] {
    let mut raw = Vec::new();
    for c in row {
        c.encode(&mut raw);
    }
    sha(&raw)
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

fn put_opt(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_f64(out, v);
        }
        None => out.push(0),
    }
}

fn tick_bytes(t: &Tick, out: &mut Vec<u8>) {
    out.extend_from_slice(&t.ts.to_be_bytes());
    out.extend_from_slice(&t.seq.to_be_bytes());
    put_f64(out, t.price);
    put_f64(out, t.size);
    for v in t.optional() {
        put_opt(out, v);
    }
}

fn bar_bytes(b: &Bar) -> Vec<u8> {
    let mut out = b.ts.to_be_bytes().to_vec();
    for v in [b.open, b.high, b.low, b.close, b.volume] {
        put_f64(&mut out, v);
    }
    put_opt(&mut out, b.turnover);
    put_opt(&mut out, b.open_interest);
    out
}

/// One line of the check: what, how many on the box, both digests.
struct Check {
    what: String,
    count: u64,
    box_sha: String,
    cluster_sha: String,
    /// Why it does not agree (missing rows), if it does not.
    problem: Option<String>,
}

impl Check {
    fn new(what: String, count: u64, a: Sha256, b: Sha256, problem: Option<String>) -> Self {
        Check {
            what,
            count,
            box_sha: hex::encode(a.finalize()),
            cluster_sha: hex::encode(b.finalize()),
            problem,
        }
    }

    fn agrees(&self) -> bool {
        self.problem.is_none() && self.box_sha == self.cluster_sha
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match (&self.problem, self.agrees()) {
            (_, true) => "ok".to_string(),
            (Some(p), _) => format!("DIFFERS: {p}"),
            (None, false) => "DIFFERS".to_string(),
        };
        write!(
            f,
            "  {:<28} {:>12}  {}  {}  {verdict}",
            self.what,
            self.count,
            &self.box_sha[..16],
            &self.cluster_sha[..16]
        )
    }
}

/// Row hashes of a table by key, read in pages.
async fn table_hashes(
    s: &CopyStores,
    table: &Table,
    batch: u32,
) -> anyhow::Result<BTreeMap<String, [u8; 32]>> {
    let mut out = BTreeMap::new();
    let mut after: Option<Row> = None;
    loop {
        let rows = s.records.read_rows(table, after.as_ref(), batch).await?;
        let full = rows.len() == batch as usize;
        for r in &rows {
            // The same key text on both sides, so both maps order alike.
            out.insert(table.key_text(r), row_hash(r));
        }
        after = rows.last().cloned();
        if !full {
            return Ok(out);
        }
    }
}

/// Every durable hot-state entry's hash by (namespace, key).
async fn entry_hashes(
    s: &CopyStores,
    batch: u32,
) -> anyhow::Result<BTreeMap<(String, String), [u8; 32]>> {
    let mut out = BTreeMap::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page =
            s.kv.entries(after.as_ref().map(|(n, k)| (n.as_str(), k.as_str())), batch)
                .await?;
        let full = page.len() == batch as usize;
        after = page.last().map(|e| (e.ns.clone(), e.key.clone()));
        for e in page {
            if e.ns != MARKERS {
                out.insert((e.ns, e.key), sha(&e.value));
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The SHA-256 of a blob's bytes, streamed from a temporary file.
async fn blob_hash(
    s: &CopyStores,
    key: &str,
    scratch: &tempfile_path::Scratch,
) -> anyhow::Result<Option<[u8; 32]>> {
    let path = match s.blobs.local_path(key) {
        Some(p) => p,
        None => {
            let p = scratch.file();
            if !s.blobs.get_file(key, &p).await? {
                return Ok(None);
            }
            p
        }
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Some(h.finalize().into()))
}

/// Scratch files for blobs the cluster keeps as rows.
mod tempfile_path {
    use std::path::PathBuf;

    pub struct Scratch {
        dir: PathBuf,
    }

    impl Scratch {
        pub fn new() -> std::io::Result<Self> {
            let dir = std::env::temp_dir().join(format!("quantbox-import-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Self { dir })
        }

        pub fn file(&self) -> PathBuf {
            self.dir.join("blob")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Seconds of an imported bar interval as coverage names it (`1m`).
fn interval_secs(name: &str) -> anyhow::Result<u32> {
    let i: Interval = name
        .parse()
        .map_err(|e| anyhow::anyhow!("interval {name}: {e}"))?;
    Ok(i.secs())
}

fn marker_key_ticks(symbol: &str) -> String {
    format!("ticks/{symbol}")
}

fn marker_key_bars(symbol: &str, interval_s: u32) -> String {
    format!("bars/{symbol}/{interval_s}")
}

impl Copy<'_> {
    async fn tables(&mut self) -> anyhow::Result<()> {
        for table in TABLES {
            let (mut total, mut new) = (0u64, 0u64);
            let mut after: Option<Row> = None;
            loop {
                let rows = self
                    .src
                    .records
                    .read_rows(table, after.as_ref(), self.batch)
                    .await?;
                let full = rows.len() == self.batch as usize;
                total += rows.len() as u64;
                new += match self.dst.records.insert_rows(table, &rows).await {
                    Ok(n) => n,
                    Err(StoreError::Conflict(_)) => self.rows_one_by_one(table, &rows).await?,
                    Err(e) => return Err(e.into()),
                };
                after = rows.last().cloned();
                if !full {
                    break;
                }
            }
            if table.generated_key {
                let high = self.src.records.id_high_water(table).await?;
                self.dst.records.raise_id_high_water(table, high).await?;
            }
            copied(table.name, total, new);
        }
        Ok(())
    }

    /// A page with a colliding row: the others go in one by one, the
    /// collision is reported.
    async fn rows_one_by_one(&mut self, table: &Table, rows: &[Row]) -> anyhow::Result<u64> {
        let mut new = 0;
        for r in rows {
            match self
                .dst
                .records
                .insert_rows(table, std::slice::from_ref(r))
                .await
            {
                Ok(n) => new += n,
                Err(StoreError::Conflict(why)) => self.conflicts.push(why),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(new)
    }

    async fn entries(&mut self) -> anyhow::Result<()> {
        let have = entry_hashes(self.dst, self.batch).await?;
        let mut after: Option<(String, String)> = None;
        let (mut total, mut new) = (0u64, 0u64);
        loop {
            let page = self
                .src
                .kv
                .entries(
                    after.as_ref().map(|(n, k)| (n.as_str(), k.as_str())),
                    self.batch,
                )
                .await?;
            let full = page.len() == self.batch as usize;
            after = page.last().map(|e| (e.ns.clone(), e.key.clone()));
            let mut writes = Vec::new();
            for e in page {
                total += 1;
                match have.get(&(e.ns.clone(), e.key.clone())) {
                    None => writes.push(KvWrite::Put {
                        ns: e.ns,
                        key: e.key,
                        value: e.value,
                    }),
                    Some(h) if *h == sha(&e.value) => {}
                    Some(_) => self.conflicts.push(format!(
                        "hot state {}/{}: the cluster holds another value",
                        e.ns, e.key
                    )),
                }
            }
            new += writes.len() as u64;
            self.dst.kv.write(writes).await?;
            if !full {
                break;
            }
        }
        copied("hot state (entries)", total, new);
        Ok(())
    }

    async fn blobs(&mut self) -> anyhow::Result<()> {
        let scratch = tempfile_path::Scratch::new()?;
        let (mut total, mut new, mut bytes) = (0u64, 0u64, 0u64);
        for prefix in BLOB_PREFIXES {
            let have: HashMap<String, u64> = self
                .dst
                .blobs
                .list(prefix)
                .await?
                .into_iter()
                .map(|b| (b.key, b.size))
                .collect();
            for b in self.src.blobs.list(prefix).await? {
                total += 1;
                bytes += b.size;
                match have.get(&b.key) {
                    Some(size) if *size == b.size => {}
                    Some(_) => self
                        .conflicts
                        .push(format!("blob {}: the cluster holds another file", b.key)),
                    None => {
                        let path = match self.src.blobs.local_path(&b.key) {
                            Some(p) => p,
                            None => {
                                let p = scratch.file();
                                self.src.blobs.get_file(&b.key, &p).await?;
                                p
                            }
                        };
                        self.dst.blobs.put_file(&b.key, &path).await?;
                        new += 1;
                    }
                }
            }
        }
        copied(&format!("blobs ({} bytes)", bytes), total, new);
        Ok(())
    }

    async fn marker(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .dst
            .kv
            .get(MARKERS, key)
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn ticks(&mut self) -> anyhow::Result<()> {
        for cov in self.src.ticks.coverage().await? {
            if cov.ticks == 0 {
                continue;
            }
            let key = marker_key_ticks(&cov.symbol);
            // Resume after the last page a run committed.
            let mut after: Option<(i64, i32)> = match self.marker(&key).await? {
                Some(m) => {
                    let (ts, seq) = m
                        .split_once(' ')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                        .with_context(|| format!("a damaged resume marker {key}: {m:?}"))?;
                    Some((ts, seq))
                }
                None => None,
            };
            let resumed = after.is_some();
            let (mut read, mut new, mut pages) = (0u64, 0u64, 0u64);
            // The page read last; `read` counts what this run read.
            loop {
                let page = self
                    .src
                    .ticks
                    .ticks(qb_core::market::TickQuery {
                        symbol: cov.symbol.clone(),
                        start: None,
                        end: None,
                        after,
                        limit: self.batch,
                    })
                    .await?;
                let full = page.len() == self.batch as usize;
                let Some(last) = page.last().map(|t| (t.ts, t.seq)) else {
                    break;
                };
                read += page.len() as u64;
                new += self.dst.ticks.restore_ticks(page).await?;
                self.dst
                    .kv
                    .put(
                        MARKERS,
                        &key,
                        format!("{} {}", last.0, last.1).as_bytes(),
                        None,
                    )
                    .await?;
                after = Some(last);
                pages += 1;
                if pages % PROGRESS_PAGES == 0 {
                    println!("  ... ticks {}: {read} read, {new} new", cov.symbol);
                }
                if !full {
                    break;
                }
            }
            // Resumed: read only after the marker of an earlier run.
            let what = if resumed {
                format!("ticks {} (resumed)", cov.symbol)
            } else {
                format!("ticks {}", cov.symbol)
            };
            copied(&what, cov.ticks, new);
        }
        Ok(())
    }

    async fn bars(&mut self) -> anyhow::Result<()> {
        for cov in self.src.ticks.coverage().await? {
            for bc in &cov.bars {
                let secs = interval_secs(&bc.interval)?;
                let key = marker_key_bars(&cov.symbol, secs);
                let mut after: Option<i64> = match self.marker(&key).await? {
                    Some(m) => Some(
                        m.parse()
                            .with_context(|| format!("a damaged resume marker {key}: {m:?}"))?,
                    ),
                    None => None,
                };
                let mut new = 0;
                loop {
                    let page = self
                        .src
                        .ticks
                        .imported_bars(&cov.symbol, secs, after, self.batch)
                        .await?;
                    let full = page.len() == self.batch as usize;
                    let Some(last) = page.last().map(|b| b.ts) else {
                        break;
                    };
                    new += self.dst.ticks.restore_bars(&cov.symbol, secs, page).await?;
                    self.dst
                        .kv
                        .put(MARKERS, &key, last.to_string().as_bytes(), None)
                        .await?;
                    after = Some(last);
                    if !full {
                        break;
                    }
                }
                copied(
                    &format!("bars {} {}", cov.symbol, bc.interval),
                    bc.count,
                    new,
                );
            }
        }
        Ok(())
    }

    async fn checks(&self) -> anyhow::Result<Vec<Check>> {
        let mut out = Vec::new();
        for table in TABLES {
            let src = table_hashes(self.src, table, self.batch).await?;
            let dst = table_hashes(self.dst, table, self.batch).await?;
            out.push(compare(table.name.to_string(), &src, &dst));
        }
        let src = entry_hashes(self.src, self.batch).await?;
        let dst = entry_hashes(self.dst, self.batch).await?;
        out.push(compare("hot state (entries)".into(), &src, &dst));
        let scratch = tempfile_path::Scratch::new()?;
        let mut src = BTreeMap::new();
        let mut dst = BTreeMap::new();
        for prefix in BLOB_PREFIXES {
            for b in self.src.blobs.list(prefix).await? {
                if let Some(h) = blob_hash(self.src, &b.key, &scratch).await? {
                    src.insert(b.key.clone(), h);
                }
                if let Some(h) = blob_hash(self.dst, &b.key, &scratch).await? {
                    dst.insert(b.key, h);
                }
            }
        }
        out.push(compare("blobs".into(), &src, &dst));
        for cov in self.src.ticks.coverage().await? {
            if cov.ticks > 0 {
                out.push(self.check_ticks(&cov.symbol).await?);
            }
            for bc in &cov.bars {
                let secs = interval_secs(&bc.interval)?;
                let src = self.bar_hashes(self.src, &cov.symbol, secs).await?;
                let dst = self.bar_hashes(self.dst, &cov.symbol, secs).await?;
                out.push(compare(
                    format!("bars {} {}", cov.symbol, bc.interval),
                    &src,
                    &dst,
                ));
            }
        }
        Ok(out)
    }

    async fn bar_hashes(
        &self,
        s: &CopyStores,
        symbol: &str,
        secs: u32,
    ) -> anyhow::Result<BTreeMap<i64, [u8; 32]>> {
        let mut out = BTreeMap::new();
        let mut after = None;
        loop {
            let page = s
                .ticks
                .imported_bars(symbol, secs, after, self.batch)
                .await?;
            let full = page.len() == self.batch as usize;
            after = page.last().map(|b| b.ts);
            for b in &page {
                out.insert(b.ts, sha(&bar_bytes(b)));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// A symbol's ticks page by page: the box's page, and the cluster's
    /// ticks with the same identities (the cluster may hold more).
    async fn check_ticks(&self, symbol: &str) -> anyhow::Result<Check> {
        let (mut a, mut b) = (Sha256::new(), Sha256::new());
        let (mut count, mut missing) = (0u64, 0u64);
        let mut after = None;
        let mut buf = Vec::new();
        loop {
            let page = self
                .src
                .ticks
                .ticks(qb_core::market::TickQuery {
                    symbol: symbol.to_string(),
                    start: None,
                    end: None,
                    after,
                    limit: self.batch,
                })
                .await?;
            let full = page.len() == self.batch as usize;
            let (Some(first), Some(last)) = (page.first(), page.last()) else {
                break;
            };
            let ids: HashSet<(i64, i32)> = page.iter().map(|t| (t.ts, t.seq)).collect();
            let mut theirs = Vec::with_capacity(page.len());
            tick_pages(
                self.dst.ticks.as_ref(),
                symbol,
                Some(first.ts),
                Some(last.ts.saturating_add(1)),
                self.batch,
                |p| theirs.extend(p.into_iter().filter(|t| ids.contains(&(t.ts, t.seq)))),
            )
            .await?;
            missing += (page.len() - theirs.len()) as u64;
            for t in &page {
                buf.clear();
                tick_bytes(t, &mut buf);
                a.update(&buf);
            }
            for t in &theirs {
                buf.clear();
                tick_bytes(t, &mut buf);
                b.update(&buf);
            }
            count += page.len() as u64;
            after = Some((last.ts, last.seq));
            if !full {
                break;
            }
        }
        let problem = (missing > 0).then(|| format!("{missing} missing in the cluster"));
        Ok(Check::new(format!("ticks {symbol}"), count, a, b, problem))
    }
}

/// The check of one keyed set: the box's hashes in key order against the
/// cluster's hashes of the same keys.
fn compare<K: Ord + std::fmt::Debug>(
    what: String,
    src: &BTreeMap<K, [u8; 32]>,
    dst: &BTreeMap<K, [u8; 32]>,
) -> Check {
    let (mut a, mut b) = (Sha256::new(), Sha256::new());
    let mut missing = Vec::new();
    let mut differing = Vec::new();
    for (k, h) in src {
        a.update(h);
        match dst.get(k) {
            Some(theirs) => {
                b.update(theirs);
                if theirs != h {
                    differing.push(k);
                }
            }
            None => missing.push(k),
        }
    }
    let problem = match (missing.len(), differing.len()) {
        (0, 0) => None,
        (m, d) => Some(format!(
            "{m} missing, {d} different in the cluster (first: {:?})",
            missing.first().or(differing.first()).unwrap()
        )),
    };
    Check::new(what, src.len() as u64, a, b, problem)
}
