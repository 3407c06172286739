//! The tick-store conformance suite: what every [`TickStore`] must do,
//! asserted through the trait alone (no backend is named here). The DuckDB
//! store (`qb-market/tests/store`) and the PostgreSQL store
//! (`qb-pg/tests/conformance_ticks.rs`) both run [`suite`], so a user sees
//! the same imports, the same bars to the last digit, the same idempotency
//! and the same exports whichever store serves them.
//!
//! What is held invariant:
//! - identity: a tick is `(symbol, ts, seq)`; `seq` numbers the ticks of one
//!   `(symbol, ts)` within one append or one file, in order, from 0; storing
//!   a tick whose identity is already stored does nothing and counts it as a
//!   duplicate (re-sent batches, re-imported files, concurrent retries);
//! - bars: bucket start `ts - ts mod interval` in UTC, or aligned to local
//!   midnight of a zone; open and close by `(ts, seq)`, high and low, sums
//!   of size and turnover, the last non-null open interest; served from
//!   imported bars (largest stored interval dividing the one asked for)
//!   only where the symbol has no ticks in the range. Expected bars are
//!   computed here by hand ([`reference_bars`]); the values used are exact
//!   in binary64, so sums do not depend on summation order;
//! - imports: CSV (strict and skip, rejections with their line), CTP
//!   (night sessions, the DBL_MAX sentinel, cumulative volume), bar CSV,
//!   Parquet (row numbers); exports in CSV with the exact text pinned here,
//!   and Parquet with the same content;
//! - retention and coverage.
//!
//! Each case takes a fresh, empty store. [`suite`] runs every case, each on
//! a store from the factory. What an adapter cannot do is declared in
//! [`Capabilities`]; the suite then prints each case or check it leaves out
//! (`SKIP tick-store conformance: ...`) and returns the list, which the
//! caller asserts — nothing is skipped silently.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use qb_core::market::*;
use qb_core::seams::tick_pages;
use qb_core::{StoreError, TickStore};

/// Opens a fresh, empty store of one adapter.
pub type TickStoreFactory = Arc<dyn Fn() -> BoxFuture<'static, Arc<dyn TickStore>> + Send + Sync>;

/// Writes ticks to a Parquet file with the columns `symbol` (text), `ts`
/// (64-bit integer, as given) and `price`, `size`, `volume`, `turnover`,
/// `open_interest`, `bid`, `bid_size`, `ask`, `ask_size` (doubles); `seq`
/// is not written.
pub type ParquetWriter = Arc<dyn Fn(&Path, &[Tick]) -> Result<(), String> + Send + Sync>;

/// The rows of a Parquet file as CSV text, written the way the stores
/// write CSV exports (header line, `,`, timestamps as `YYYY-MM-DD
/// HH:MM:SS[.fraction]`, doubles in shortest form, NULL as empty).
pub type ParquetToCsv = Arc<dyn Fn(&Path) -> Result<String, String> + Send + Sync>;

/// The suite has no Parquet library of its own: the caller lends one.
#[derive(Clone)]
pub struct ParquetFixtures {
    pub write: ParquetWriter,
    pub to_csv: ParquetToCsv,
}

/// What the adapter can do, and the fixtures the suite needs. Every check
/// left out because of a `false` or a `None` here is printed and returned
/// by [`suite`].
#[derive(Clone)]
pub struct Capabilities {
    /// The adapter imports Parquet files ([`ImportFormat::Parquet`]).
    pub parquet_import: bool,
    /// Two appends may run at once on the same store (from two tasks).
    pub concurrent_appends: bool,
    /// For Parquet fixtures written independently of the store, and for
    /// comparing Parquet exports with CSV exports.
    pub parquet: Option<ParquetFixtures>,
}

/// Runs every case on a fresh store from `open`; returns the checks left
/// out (each also printed), which the caller asserts.
pub async fn suite(open: TickStoreFactory, caps: &Capabilities) -> Vec<String> {
    let mut skipped = Vec::new();
    let mut skip = |what: &str| {
        eprintln!("SKIP tick-store conformance: {what}");
        skipped.push(what.to_string());
    };
    eprintln!("tick-store conformance: appends");
    appends(open().await).await;
    if caps.concurrent_appends {
        eprintln!("tick-store conformance: concurrent appends");
        concurrent_appends(open().await).await;
    } else {
        skip("concurrent appends: the adapter declares it does not take two appends at once");
    }
    eprintln!("tick-store conformance: bars from ticks, hand-computed");
    bars_hand_computed(open().await).await;
    eprintln!("tick-store conformance: bars of every interval, UTC and local midnight");
    bars_every_interval(open().await).await;
    eprintln!("tick-store conformance: bars in zones with daylight saving");
    bars_across_daylight_saving(open().await).await;
    eprintln!("tick-store conformance: imported bars");
    imported_bars(open().await).await;
    eprintln!("tick-store conformance: copies (ticks with their seq, imported bars)");
    copies(open().await, open().await).await;
    eprintln!("tick-store conformance: CTP");
    ctp(open().await).await;
    eprintln!("tick-store conformance: CSV imports");
    csv_imports(open().await).await;
    if caps.parquet_import {
        eprintln!("tick-store conformance: Parquet imports");
        parquet_round_trip(open().await).await;
        match &caps.parquet {
            Some(fx) => {
                eprintln!("tick-store conformance: Parquet files written by another writer");
                parquet_foreign(open().await, fx).await;
            }
            None => skip(
                "Parquet imports of files written by another writer: no Parquet fixtures given",
            ),
        }
    } else {
        skip("Parquet imports: the adapter declares it cannot import Parquet");
    }
    eprintln!("tick-store conformance: exports");
    let pq = exports(open().await, caps.parquet.as_ref()).await;
    if let Some(why) = pq {
        skip(&why);
    }
    eprintln!("tick-store conformance: retention");
    retention(open().await).await;
    eprintln!("tick-store conformance: coverage");
    coverage(open().await).await;
    skipped
}

// ---------------------------------------------------------------- helpers

pub const S: i64 = 1_000_000_000;
pub const MINUTE: i64 = 60 * S;
pub const HOUR: i64 = 3600 * S;
pub const DAY: i64 = 86_400 * S;
/// 2024-01-02T00:00:00Z in nanoseconds.
pub const DAY0: i64 = 1_704_153_600 * S;

pub fn tick(symbol: &str, ts: i64, price: f64, size: f64) -> Tick {
    Tick {
        symbol: symbol.into(),
        ts,
        seq: 0,
        price,
        size,
        volume: None,
        turnover: None,
        open_interest: None,
        bid: None,
        bid_size: None,
        ask: None,
        ask_size: None,
    }
}

pub fn request(path: &Path, format: ImportFormat) -> ImportRequest {
    ImportRequest {
        path: path.to_string_lossy().into_owned(),
        options: ImportOptions {
            format,
            mode: ImportMode::Strict,
            timezone: None,
            mapping: Default::default(),
            symbol: None,
            interval: None,
            ts_unit: None,
        },
    }
}

fn bar_query(symbol: &str, interval: &str) -> BarQuery {
    BarQuery {
        symbol: symbol.into(),
        interval: interval.parse().unwrap(),
        start: None,
        end: None,
        timezone: None,
    }
}

fn tick_export(symbol: &str) -> ExportQuery {
    ExportQuery::Ticks {
        symbol: symbol.into(),
        start: None,
        end: None,
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs an import on a worker thread, as the trait asks.
pub async fn import(
    s: &Arc<dyn TickStore>,
    req: &ImportRequest,
) -> Result<ImportReport, StoreError> {
    let (s, req) = (s.clone(), req.clone());
    tokio::task::spawn_blocking(move || s.import(&req, &|_, _| {}))
        .await
        .unwrap()
}

/// Every stored tick of `symbol` in `(ts, seq)` order, read in pages.
pub async fn all_ticks(s: &Arc<dyn TickStore>, symbol: &str) -> Vec<Tick> {
    let mut out = Vec::new();
    tick_pages(s.as_ref(), symbol, None, None, 997, |p| out.extend(p))
        .await
        .unwrap();
    out
}

fn ohlcv(bars: &[Bar]) -> Vec<(i64, f64, f64, f64, f64, f64)> {
    bars.iter()
        .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
        .collect()
}

/// Bars computed by hand from ticks in `(ts, seq)` order: bucket start
/// `ts - (ts + offset) mod interval` (`offset` = the zone's UTC offset for
/// local-midnight alignment), open/close first/last, sums, the last
/// non-null open interest.
pub fn reference_bars(ticks: &[Tick], interval: i64, offset: i64) -> Vec<Bar> {
    reference_bars_by(ticks, |ts| ts - (ts + offset).rem_euclid(interval))
}

/// [`reference_bars`] with the bucket start of each tick's time given by
/// `bucket`.
pub fn reference_bars_by(ticks: &[Tick], bucket: impl Fn(i64) -> i64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for t in ticks {
        let b = bucket(t.ts);
        match out.last_mut() {
            Some(bar) if bar.ts == b => {
                bar.high = bar.high.max(t.price);
                bar.low = bar.low.min(t.price);
                bar.close = t.price;
                bar.volume += t.size;
                bar.turnover = match (bar.turnover, t.turnover) {
                    (Some(a), Some(x)) => Some(a + x),
                    (a, x) => a.or(x),
                };
                if t.open_interest.is_some() {
                    bar.open_interest = t.open_interest;
                }
            }
            _ => {
                assert!(out.last().is_none_or(|l| l.ts < b), "ticks out of order");
                out.push(Bar {
                    ts: b,
                    open: t.price,
                    high: t.price,
                    low: t.price,
                    close: t.price,
                    volume: t.size,
                    turnover: t.turnover,
                    open_interest: t.open_interest,
                })
            }
        }
    }
    out
}

/// Deterministic pseudo-random ticks: irregular gaps (some zero: ticks
/// sharing a timestamp), prices in halves, integer sizes, turnover and
/// open interest sometimes missing. Every value and every sum of them is
/// exact in binary64.
pub fn generated(symbol: &str, start: i64, n: usize, seed: u64) -> Vec<Tick> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ts = start;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = next();
        if r % 8 != 0 {
            // Up to 90 s later, to the microsecond, plus some nanoseconds.
            ts += (r >> 8) as i64 % (90 * 1_000_000) * 1000 + (r >> 40) as i64 % 1000;
        }
        let price = 3000.0 + ((r >> 16) % 400) as f64 * 0.5;
        let size = ((r >> 24) % 9 + 1) as f64;
        let mut t = tick(symbol, ts, price, size);
        t.turnover = (r % 5 != 0).then_some(price * size);
        t.open_interest = (r % 3 == 0).then_some(100_000.0 + ((r >> 32) % 1000) as f64);
        t.bid = Some(price - 0.5);
        t.ask = (r % 7 != 0).then_some(price + 0.5);
        t.volume = Some(size);
        out.push(t);
    }
    out
}

/// `ticks` with `seq` numbered per `(symbol, ts)` in order, as a store
/// numbers one batch.
pub fn numbered(mut ticks: Vec<Tick>) -> Vec<Tick> {
    let mut seen = std::collections::HashMap::<(String, i64), i32>::new();
    for t in &mut ticks {
        let n = seen.entry((t.symbol.clone(), t.ts)).or_insert(0);
        t.seq = *n;
        *n += 1;
    }
    ticks
}

fn sorted(mut ticks: Vec<Tick>) -> Vec<Tick> {
    ticks.sort_by_key(|t| (t.ts, t.seq));
    ticks
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ------------------------------------------------------------------ cases

/// Copies between two stores of the adapter: ticks keep their `seq` (gaps
/// and all, which a renumbering append would lose), imported bars are
/// listed in pages and stored as given; copying again stores nothing.
pub async fn copies(a: Arc<dyn TickStore>, b: Arc<dyn TickStore>) {
    let mut ticks = numbered(generated("cu", DAY0, 500, 7));
    let mut same = tick("cu", DAY0 + 30 * S, 70_000.0, 2.0);
    same.bid = Some(69_990.0);
    same.seq = 5;
    ticks.push(same.clone());
    same.seq = 2;
    same.price = 70_010.0;
    ticks.push(same);
    let ticks = sorted(ticks);
    assert_eq!(
        a.restore_ticks(ticks.clone()).await.unwrap(),
        ticks.len() as u64
    );
    assert_eq!(all_ticks(&a, "cu").await, ticks, "seq kept as given");
    assert_eq!(a.restore_ticks(ticks.clone()).await.unwrap(), 0);
    assert_eq!(a.restore_ticks(Vec::new()).await.unwrap(), 0);
    // Copied page by page into a second store: the same ticks.
    let mut pages = Vec::new();
    tick_pages(a.as_ref(), "cu", None, None, 64, |p| pages.push(p))
        .await
        .unwrap();
    assert!(pages.len() > 5);
    for page in pages {
        b.restore_ticks(page).await.unwrap();
    }
    assert_eq!(all_ticks(&b, "cu").await, ticks);

    let bar = |i: i64, close: f64| Bar {
        ts: DAY0 + i * MINUTE,
        open: 10.0,
        high: 12.5,
        low: 9.75,
        close,
        volume: 100.0 + i as f64,
        turnover: (i % 2 == 0).then_some(1_000.5),
        open_interest: None,
    };
    let bars: Vec<Bar> = (0..10).map(|i| bar(i, 11.0 + i as f64 / 8.0)).collect();
    assert_eq!(a.restore_bars("au", 60, bars.clone()).await.unwrap(), 10);
    assert_eq!(a.restore_bars("au", 60, bars.clone()).await.unwrap(), 0);
    assert_eq!(
        a.restore_bars("au", 300, bars[..2].to_vec()).await.unwrap(),
        2
    );
    assert_eq!(a.restore_bars("au", 60, Vec::new()).await.unwrap(), 0);
    assert_eq!(a.imported_bars("au", 60, None, 100).await.unwrap(), bars);
    assert_eq!(
        a.imported_bars("au", 60, Some(bars[3].ts), 4)
            .await
            .unwrap(),
        bars[4..8].to_vec()
    );
    assert_eq!(
        a.imported_bars("au", 300, None, 100).await.unwrap(),
        bars[..2]
    );
    assert!(
        a.imported_bars("cu", 60, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Bars from the copies answer like imported ones.
    let got = a
        .bars(BarQuery {
            symbol: "au".into(),
            interval: "1m".parse().unwrap(),
            start: None,
            end: None,
            timezone: None,
        })
        .await
        .unwrap();
    assert_eq!(got, bars);
}

/// Appends: idempotent, same-time ticks numbered, keyset reads, exact doubles.
pub async fn appends(s: Arc<dyn TickStore>) {
    s.ping().await.unwrap();
    s.checkpoint().await.unwrap();
    assert_eq!(
        s.append(TickColumns::default()).await.unwrap(),
        AppendReport::default()
    );
    let batch = vec![
        tick("rb", DAY0, 3900.0, 1.0),
        tick("rb", DAY0, 3901.0, 2.0), // same ns: a second tick, seq 1
        tick("rb", DAY0 + S, 3902.0, 3.0),
        tick("cu", DAY0, 70000.0, 1.0),
    ];
    let prices = |r: &AppendReport| r.new.price().to_vec();
    let r = s.append(batch.clone().into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (4, 0));
    assert_eq!(prices(&r), vec![3900.0, 3901.0, 3902.0, 70000.0]);
    assert_eq!(r.new.seq()[1], 1, "handed back numbered");
    // Sending the same batch again (a retry) stores nothing.
    let r = s.append(batch.clone().into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 4));
    assert!(r.new.is_empty());
    let got = all_ticks(&s, "rb").await;
    let seen: Vec<(i64, i32, f64)> = got.iter().map(|t| (t.ts, t.seq, t.price)).collect();
    assert_eq!(
        seen,
        vec![(DAY0, 0, 3900.0), (DAY0, 1, 3901.0), (DAY0 + S, 0, 3902.0)]
    );
    // Keyset paging and [start, end) ranges.
    let q = |start, end, after, limit| TickQuery {
        symbol: "rb".into(),
        start,
        end,
        after,
        limit,
    };
    let next = s.ticks(q(None, None, Some((DAY0, 0)), 1)).await.unwrap();
    assert_eq!(
        next.iter().map(|t| (t.ts, t.seq)).collect::<Vec<_>>(),
        vec![(DAY0, 1)]
    );
    let next = s.ticks(q(None, None, Some((DAY0, 1)), 10)).await.unwrap();
    assert_eq!(
        next.iter().map(|t| (t.ts, t.seq)).collect::<Vec<_>>(),
        vec![(DAY0 + S, 0)]
    );
    assert_eq!(
        s.ticks(q(Some(DAY0 + 1), None, None, 10))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.ticks(q(None, Some(DAY0 + S), None, 10))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.ticks(q(None, None, None, 2)).await.unwrap().len(), 2);
    assert!(
        s.ticks(TickQuery {
            symbol: "none".into(),
            start: None,
            end: None,
            after: None,
            limit: 10
        })
        .await
        .unwrap()
        .is_empty()
    );
    let cov = s.coverage().await.unwrap();
    assert_eq!(
        cov.iter()
            .map(|c| (
                c.symbol.as_str(),
                c.ticks,
                c.first_ts,
                c.last_ts,
                c.bars.len()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("cu", 1, Some(DAY0), Some(DAY0), 0),
            ("rb", 3, Some(DAY0), Some(DAY0 + S), 0)
        ]
    );
    // A retry that grew: only the new ticks are reported, in batch order.
    let first = vec![tick("ni", DAY0, 1.0, 1.0), tick("ni", DAY0, 2.0, 1.0)];
    s.append(first.clone().into()).await.unwrap();
    let grown = vec![
        tick("zn", DAY0, 5.0, 1.0),
        first[0].clone(),
        first[1].clone(),
        tick("ni", DAY0, 3.0, 1.0), // seq 2: new
    ];
    let r = s.append(grown.into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (2, 2));
    assert_eq!(prices(&r), vec![5.0, 3.0]);

    // A later batch numbers its same-time ticks from 0 again: the first
    // two are taken for the stored ones (a re-send), the third is new.
    let r = s
        .append(
            vec![
                tick("rb", DAY0, 1.0, 1.0),
                tick("rb", DAY0, 2.0, 1.0),
                tick("rb", DAY0, 3.0, 1.0),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 2));
    let got = all_ticks(&s, "rb").await;
    assert_eq!(
        got.iter().map(|t| (t.seq, t.price)).collect::<Vec<_>>(),
        vec![(0, 3900.0), (1, 3901.0), (2, 3.0), (0, 3902.0)]
    );

    // Doubles and every optional field come back bit for bit.
    let mut exact = vec![
        tick("x", DAY0, 0.1 + 0.2, 1e-9),
        tick("x", DAY0 + 1, 123456789.123456, 3.0),
        tick("x", DAY0 + 2, f64::MAX, 5e-324),
        tick("x", DAY0 + 3, -42.125, 0.0),
    ];
    exact[1].volume = Some(1e15 + 1.0);
    exact[1].turnover = Some(0.1);
    exact[1].open_interest = Some(2.5e-300);
    exact[1].bid = Some(123456789.12345);
    exact[1].bid_size = Some(7.0);
    exact[1].ask = Some(-0.0);
    exact[1].ask_size = Some(f64::MIN_POSITIVE);
    s.append(exact.clone().into()).await.unwrap();
    let back = all_ticks(&s, "x").await;
    assert_eq!(back.len(), exact.len());
    let bits = |t: &Tick| {
        [
            Some(t.price),
            Some(t.size),
            t.volume,
            t.turnover,
            t.open_interest,
            t.bid,
            t.bid_size,
            t.ask,
            t.ask_size,
        ]
        .map(|v| v.map(f64::to_bits))
    };
    for (a, b) in exact.iter().zip(&back) {
        assert_eq!((a.ts, bits(a)), (b.ts, bits(b)));
    }

    // Before the epoch and across days.
    let spread = vec![
        tick("old", -DAY - 1000, 1.0, 1.0),
        tick("old", -1000, 2.0, 1.0),
        tick("old", 0, 3.0, 1.0),
        tick("old", DAY0 + 3 * DAY, 4.0, 1.0),
    ];
    assert_eq!(s.append(spread.clone().into()).await.unwrap().stored, 4);
    assert_eq!(
        all_ticks(&s, "old")
            .await
            .iter()
            .map(|t| t.ts)
            .collect::<Vec<_>>(),
        spread.iter().map(|t| t.ts).collect::<Vec<_>>()
    );

    // A batch half stored, half new.
    let half: Vec<Tick> = (0..10).map(|i| tick("h", DAY0 + i * S, 1.0, 1.0)).collect();
    s.append(half[..5].to_vec().into()).await.unwrap();
    let r = s.append(half.into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (5, 5));

    // A large batch over several days and symbols: stored once, read back
    // in order however it is paged.
    let mut big = generated("big", DAY0 - DAY / 3, 15_000, 7);
    big.extend(generated("big2", DAY0, 5_000, 8));
    let r = s.append(big.clone().into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (20_000, 0));
    let r = s.append(big.clone().into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 20_000));
    let expect = numbered(big)
        .into_iter()
        .filter(|t| t.symbol == "big")
        .collect::<Vec<_>>();
    let mut pages = 0;
    let mut got = Vec::new();
    tick_pages(s.as_ref(), "big", None, None, 4096, |p| {
        pages += 1;
        got.extend(p)
    })
    .await
    .unwrap();
    assert_eq!(pages, 4);
    assert_eq!(got, sorted(expect));
}

/// Two identical batches appended at once: each tick is stored once.
pub async fn concurrent_appends(s: Arc<dyn TickStore>) {
    let batch = generated("conc", DAY0, 4_000, 3);
    let (a, b) = tokio::join!(
        {
            let s = s.clone();
            let batch = batch.clone();
            async move { s.append(batch.into()).await.unwrap() }
        },
        {
            let s = s.clone();
            let batch = batch.clone();
            async move { s.append(batch.into()).await.unwrap() }
        }
    );
    assert_eq!(a.stored + b.stored, 4_000, "{a:?} {b:?}");
    assert_eq!(a.duplicates + b.duplicates, 4_000, "{a:?} {b:?}");
    assert_eq!(all_ticks(&s, "conc").await.len(), 4_000);
    assert_eq!(s.coverage().await.unwrap()[0].ticks, 4_000, "counted once");
}

/// The hand-computed bars of the original DuckDB tests.
pub async fn bars_hand_computed(s: Arc<dyn TickStore>) {
    let m = MINUTE;
    let mut t = vec![
        // 09:00 bucket: open 10, high 12, low 9, close 11, volume 6
        tick("a", DAY0 + 9 * 60 * m, 10.0, 1.0),
        tick("a", DAY0 + 9 * 60 * m + 10 * S, 12.0, 2.0),
        tick("a", DAY0 + 9 * 60 * m + 20 * S, 9.0, 1.0),
        tick("a", DAY0 + 9 * 60 * m + 59 * S, 11.0, 2.0),
        // 09:01 bucket: two ticks at the same ns, then one more
        tick("a", DAY0 + 9 * 60 * m + m, 20.0, 1.0),
        tick("a", DAY0 + 9 * 60 * m + m, 21.0, 1.0),
        tick("a", DAY0 + 9 * 60 * m + m + S, 19.0, 5.0),
        // 09:05 bucket (gap: no bars for 09:02..09:04)
        tick("a", DAY0 + 9 * 60 * m + 5 * m + 30 * S, 30.0, 3.0),
    ];
    t[0].open_interest = Some(100.0);
    t[3].open_interest = Some(104.0);
    t[0].turnover = Some(10.0);
    t[1].turnover = Some(24.0);
    s.append(t.into()).await.unwrap();

    let bars = s.bars(bar_query("a", "1m")).await.unwrap();
    let base = DAY0 + 9 * 60 * m;
    assert_eq!(
        ohlcv(&bars),
        vec![
            (base, 10.0, 12.0, 9.0, 11.0, 6.0),
            (base + m, 20.0, 21.0, 19.0, 19.0, 7.0),
            (base + 5 * m, 30.0, 30.0, 30.0, 30.0, 3.0),
        ]
    );
    assert_eq!(bars[0].open_interest, Some(104.0));
    assert_eq!(bars[0].turnover, Some(34.0));
    assert_eq!(bars[1].turnover, None);
    assert_eq!(bars[1].open_interest, None);

    let five = s.bars(bar_query("a", "5m")).await.unwrap();
    assert_eq!(
        ohlcv(&five),
        vec![
            (base, 10.0, 21.0, 9.0, 19.0, 13.0),
            (base + 5 * m, 30.0, 30.0, 30.0, 30.0, 3.0)
        ]
    );
    assert_eq!(five[0].open_interest, Some(104.0));
    let day = s.bars(bar_query("a", "1d")).await.unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!((day[0].ts, day[0].volume), (DAY0, 16.0));

    // A session time zone moves the day boundary: 09:00 UTC is 17:00 in
    // Shanghai, inside the local day that began at 16:00 UTC the day before.
    let mut tz = bar_query("a", "1d");
    tz.timezone = Some("Asia/Shanghai".into());
    let local = s.bars(tz).await.unwrap();
    assert_eq!(local.len(), 1);
    assert_eq!((local[0].ts, local[0].volume), (DAY0 - 8 * HOUR, 16.0));
    // Daily bars start at local midnight all year: 00:00 EDT is 04:00 UTC
    // in July (05:00 in January).
    let july = utc(2024, 7, 15, 3, 30, 0, 0); // 23:30 EDT on the 14th
    s.append(
        vec![
            tick("ny", july, 1.0, 1.0),
            tick("ny", july + HOUR, 2.0, 1.0),
        ]
        .into(),
    )
    .await
    .unwrap();
    let mut ny = bar_query("ny", "1d");
    ny.timezone = Some("America/New_York".into());
    assert_eq!(
        s.bars(ny)
            .await
            .unwrap()
            .iter()
            .map(|b| (b.ts, b.volume))
            .collect::<Vec<_>>(),
        vec![
            (utc(2024, 7, 14, 4, 0, 0, 0), 1.0),
            (utc(2024, 7, 15, 4, 0, 0, 0), 1.0)
        ]
    );
    let mut bad = bar_query("a", "1d");
    bad.timezone = Some("Mars/Olympus".into());
    is_invalid(s.bars(bad).await);
    is_invalid(s.bars(bar_query("no such symbol", "1m")).await);

    // Ranges are [start, end).
    let mut r = bar_query("a", "1m");
    r.start = Some(base + m);
    r.end = Some(base + 5 * m);
    assert_eq!(s.bars(r).await.unwrap().len(), 1);
    // A symbol without data has no bars.
    assert!(s.bars(bar_query("none", "1m")).await.unwrap().is_empty());
}

/// Intervals whose bars are compared with [`reference_bars`].
pub const INTERVALS: &[&str] = &[
    "1s", "2s", "5s", "15s", "30s", "1m", "90s", "2m", "3m", "5m", "10m", "15m", "20m", "30m",
    "1h", "2h", "3h", "4h", "6h", "8h", "12h", "1d",
];

/// Zones whose offset has not changed since 2000 and that keep no
/// daylight saving: buckets align to local midnight, i.e. are shifted by
/// the offset (half and quarter hours included).
pub const FIXED_ZONES: &[(&str, i64)] = &[
    ("UTC", 0),
    ("Asia/Shanghai", 8 * HOUR),
    ("Asia/Kolkata", 5 * HOUR + 30 * MINUTE),
    ("Asia/Kathmandu", 5 * HOUR + 45 * MINUTE),
    ("Asia/Tokyo", 9 * HOUR),
];

/// Bars of every interval, in UTC and in zones, against hand-computed
/// ones, on ticks spanning several days; whole range and partial ranges.
pub async fn bars_every_interval(s: Arc<dyn TickStore>) {
    let ticks = generated("gen", DAY0 - 5 * HOUR - 17 * S, 6_000, 11);
    assert_eq!(s.append(ticks.clone().into()).await.unwrap().stored, 6_000);
    let stored = all_ticks(&s, "gen").await;
    assert_eq!(stored, sorted(numbered(ticks)));
    let first = stored[0].ts;
    let last = stored[stored.len() - 1].ts;
    assert!(last - first > 2 * DAY, "the data spans several days");
    let (lo, hi) = (first + 3 * HOUR + 123_456_789, last - 7 * HOUR - 1);
    let part: Vec<Tick> = stored
        .iter()
        .filter(|t| t.ts >= lo && t.ts < hi)
        .cloned()
        .collect();
    for iv in INTERVALS {
        let interval: Interval = iv.parse().unwrap();
        for (zone, offset) in FIXED_ZONES {
            let mut q = bar_query("gen", iv);
            if *zone != "UTC" {
                q.timezone = Some(zone.to_string());
            }
            let want = reference_bars(&stored, interval.nanos(), *offset);
            let got = s.bars(q.clone()).await.unwrap();
            assert_eq!(got.len(), want.len(), "{iv} {zone}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{iv} {zone}");
            }
            q.start = Some(lo);
            q.end = Some(hi);
            let got = s.bars(q).await.unwrap();
            assert_eq!(
                got,
                reference_bars(&part, interval.nanos(), *offset),
                "{iv} {zone} range"
            );
        }
    }
}

/// Zones whose clocks change, for [`bars_across_daylight_saving`]: both
/// hemispheres, a change at midnight (Santiago, Havana: local midnight is
/// skipped or repeated), a half-hour change (Lord Howe).
pub const DST_ZONES: &[&str] = &[
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
];

/// The bucket start of a tick at `ts` in `zone` under the local bucket
/// rule of `qb_core::market` (above `BarQuery`), computed with chrono-tz.
pub fn local_bucket(ts: i64, interval: i64, zone: chrono_tz::Tz) -> i64 {
    use chrono::{LocalResult, Offset, TimeZone};
    let micros = |d: chrono::NaiveDateTime| d.and_utc().timestamp_micros();
    let naive = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .unwrap()
            .naive_utc()
    };
    let u = ts / 1000;
    let offset_at = |us: i64| {
        i64::from(
            zone.offset_from_utc_datetime(&naive(us))
                .fix()
                .local_minus_utc(),
        ) * 1_000_000
    };
    let l = u + offset_at(u);
    let w = interval / 1000;
    let b = l - l.rem_euclid(w);
    let c = match zone.from_local_datetime(&naive(b)) {
        LocalResult::Single(d) => d.timestamp_micros(),
        LocalResult::Ambiguous(_, later) => later.timestamp_micros(),
        // Skipped: the offset in force a day before, i.e. before the change.
        LocalResult::None => micros(naive(b)) - offset_at(b - 86_400_000_000),
    };
    (if c <= u { c } else { u - (l - b) }) * 1000
}

/// Bars in zones whose clocks change, of the intervals that meet a change
/// differently (the repeated hour, the shortened day), against bars
/// computed by hand with [`local_bucket`].
pub async fn bars_across_daylight_saving(s: Arc<dyn TickStore>) {
    // Ticks every 7 min 17.3 s over two days around each change of 2024.
    let changes = [
        utc(2024, 3, 10, 7, 0, 0, 0),  // New York spring
        utc(2024, 11, 3, 6, 0, 0, 0),  // New York autumn
        utc(2024, 3, 31, 1, 0, 0, 0),  // London spring
        utc(2024, 10, 27, 1, 0, 0, 0), // London autumn
        utc(2024, 4, 6, 16, 0, 0, 0),  // Sydney autumn
        utc(2024, 10, 5, 16, 0, 0, 0), // Sydney spring
        utc(2024, 4, 7, 3, 0, 0, 0),   // Santiago autumn (midnight repeated)
        utc(2024, 9, 8, 4, 0, 0, 0),   // Santiago spring (midnight skipped)
        utc(2024, 3, 10, 5, 0, 0, 0),  // Havana spring (midnight skipped)
        utc(2024, 11, 3, 5, 0, 0, 0),  // Havana autumn
        utc(2024, 4, 6, 15, 0, 0, 0),  // Lord Howe autumn (30 min)
    ];
    let step = 437_300_000_000;
    let mut ticks = Vec::new();
    for (i, at) in changes.iter().enumerate() {
        let mut ts = at - DAY;
        while ts < at + DAY {
            ticks.push(tick("dst", ts, 100.0 + (i as f64), 1.0));
            ts += step;
        }
    }
    ticks.sort_by_key(|t| t.ts);
    ticks.dedup_by_key(|t| t.ts);
    let n = ticks.len() as u64;
    assert_eq!(s.append(ticks.clone().into()).await.unwrap().stored, n);
    let stored = all_ticks(&s, "dst").await;
    for zone in DST_ZONES {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        for iv in ["15m", "30m", "1h", "2h", "4h", "12h", "1d"] {
            let interval = iv.parse::<Interval>().unwrap().nanos();
            let want = reference_bars_by(&stored, |ts| {
                let b = local_bucket(ts, interval, tz);
                assert!(b <= ts, "a bar never starts after its first tick");
                b
            });
            let mut q = bar_query("dst", iv);
            q.timezone = Some(zone.to_string());
            let got = s.bars(q).await.unwrap();
            assert_eq!(got.len(), want.len(), "{iv} {zone}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{iv} {zone}");
            }
        }
    }
}

/// Imported bars: idempotent, serve intervals they divide where there are
/// no ticks, rejected rows with their line.
pub async fn imported_bars(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    let csv = "symbol,ts,open,high,low,close,volume
IF,2024-01-02T01:30:00Z,3500,3510,3495,3505,100
IF,2024-01-02T01:31:00Z,3505,3520,3500,3515,200
IF,2024-01-02T01:32:00Z,3515,3516,3490,3492,50
IF,2024-01-02T01:35:00Z,3492,3493,3480,3481,10
";
    let path = write(&dir, "bars.csv", csv);
    let mut r = request(&path, ImportFormat::BarsCsv);
    r.interval = Some("1m".into());
    let rep = import(&s, &r).await.unwrap();
    assert_eq!(
        (
            rep.rows_read,
            rep.rows_stored,
            rep.rows_duplicate,
            rep.rows_rejected
        ),
        (4, 4, 0, 0)
    );
    assert_eq!(rep.symbols, vec!["IF"]);
    let again = import(&s, &r).await.unwrap();
    assert_eq!((again.rows_stored, again.rows_duplicate), (0, 4));
    let base = DAY0 + 90 * MINUTE;
    let five = s.bars(bar_query("IF", "5m")).await.unwrap();
    assert_eq!(
        ohlcv(&five),
        vec![
            (base, 3500.0, 3520.0, 3490.0, 3492.0, 350.0),
            (base + 5 * MINUTE, 3492.0, 3493.0, 3480.0, 3481.0, 10.0)
        ]
    );
    assert_eq!((five[0].turnover, five[0].open_interest), (None, None));
    // The stored interval itself, as stored.
    let one = s.bars(bar_query("IF", "1m")).await.unwrap();
    assert_eq!(one.len(), 4);
    assert_eq!(
        ohlcv(&one)[1],
        (base + MINUTE, 3505.0, 3520.0, 3500.0, 3515.0, 200.0)
    );
    // An interval the stored one does not divide: nothing.
    assert!(s.bars(bar_query("IF", "90s")).await.unwrap().is_empty());
    assert!(s.bars(bar_query("IF", "30s")).await.unwrap().is_empty());

    // Turnover and open interest: sums and the last non-null value; within
    // one file the first of two rows for one bar wins; 5m bars are used
    // for 15m rather than 1m bars (the largest interval dividing it).
    let five_csv = "symbol,ts,open,high,low,close,volume,turnover,open_interest
IF,2024-01-02T01:30:00Z,1,2,1,2,10,100,7
IF,2024-01-02T01:35:00Z,2,3,1,1,20,200,
IF,2024-01-02T01:35:00Z,9,9,9,9,99,999,99
IF,2024-01-02T01:40:00Z,1,4,1,4,30,,9
IF,2024-01-02T01:45:00Z,4,5,4,5,40,400,
";
    let path = write(&dir, "five.csv", five_csv);
    let mut r5 = request(&path, ImportFormat::BarsCsv);
    r5.interval = Some("5m".into());
    let rep = import(&s, &r5).await.unwrap();
    assert_eq!(
        (rep.rows_read, rep.rows_stored, rep.rows_duplicate),
        (5, 4, 1)
    );
    let q15 = s.bars(bar_query("IF", "15m")).await.unwrap();
    assert_eq!(
        q15.iter()
            .map(|b| (
                b.ts,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.turnover,
                b.open_interest
            ))
            .collect::<Vec<_>>(),
        vec![
            (base, 1.0, 4.0, 1.0, 4.0, 60.0, Some(300.0), Some(9.0)),
            (
                base + 15 * MINUTE,
                4.0,
                5.0,
                4.0,
                5.0,
                40.0,
                Some(400.0),
                None
            ),
        ]
    );
    // 5m itself is served from the 5m bars (the largest dividing 5m).
    let q5 = s.bars(bar_query("IF", "5m")).await.unwrap();
    assert_eq!(q5.len(), 4);
    assert_eq!(q5[1].volume, 20.0, "the first row of a bar wins");
    let cov = s.coverage().await.unwrap();
    assert_eq!(cov.len(), 1);
    assert_eq!(
        (
            cov[0].symbol.as_str(),
            cov[0].ticks,
            cov[0].first_ts,
            cov[0].last_ts
        ),
        ("IF", 0, None, None)
    );
    assert_eq!(
        cov[0].bars,
        vec![
            BarCoverage {
                interval: "1m".into(),
                count: 4,
                first_ts: base,
                last_ts: base + 5 * MINUTE
            },
            BarCoverage {
                interval: "5m".into(),
                count: 4,
                first_ts: base,
                last_ts: base + 15 * MINUTE
            },
        ]
    );

    // Ticks take precedence over imported bars wherever the range has any.
    let t = vec![tick("IF", DAY0 + DAY + 90 * MINUTE, 3600.0, 1.0)];
    s.append(t.into()).await.unwrap();
    let day1 = s.bars(bar_query("IF", "15m")).await.unwrap();
    assert_eq!(
        ohlcv(&day1),
        vec![(
            DAY0 + DAY + 90 * MINUTE,
            3600.0,
            3600.0,
            3600.0,
            3600.0,
            1.0
        )],
        "the range has ticks: only ticks count"
    );
    let mut before = bar_query("IF", "15m");
    before.end = Some(DAY0 + DAY);
    assert_eq!(
        s.bars(before).await.unwrap(),
        q15,
        "no ticks here: imported bars"
    );
    // Local-midnight alignment applies to imported bars too.
    let mut tz = bar_query("IF", "1d");
    tz.timezone = Some("Asia/Shanghai".into());
    tz.end = Some(DAY0 + DAY);
    let d = s.bars(tz).await.unwrap();
    assert_eq!(
        ohlcv(&d),
        vec![(DAY0 - 8 * HOUR, 1.0, 5.0, 1.0, 5.0, 100.0)]
    );

    // Rejected rows name their line and reason; strict stores nothing.
    let broken = write(
        &dir,
        "broken.csv",
        "symbol,ts,open,high,low,close,volume\nIF,2024-01-02T01:30:00Z,3500,3490,3495,3505,100\nIF,2024-01-02T01:30:30Z,1,1,1,1,1\nIF,2024-01-03T01:30:00Z,1,1,1,1,1\n",
    );
    let mut r = request(&broken, ImportFormat::BarsCsv);
    r.interval = Some("1m".into());
    let rep = import(&s, &r).await.unwrap();
    assert_eq!(
        rep.rejections.iter().map(|x| x.line).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        (rep.rows_read, rep.rows_stored, rep.rows_rejected),
        (3, 0, 2)
    );
    assert!(rep.rejections[0].reason.contains("inconsistent"));
    assert!(rep.rejections[1].reason.contains("aligned"));
    r.mode = ImportMode::Skip;
    let rep = import(&s, &r).await.unwrap();
    assert_eq!(
        (rep.rows_read, rep.rows_stored, rep.rows_rejected),
        (3, 1, 2)
    );
    // bar CSV needs an interval.
    let mut none = request(&broken, ImportFormat::BarsCsv);
    none.interval = None;
    is_invalid(import(&s, &none).await);
}

/// CTP depth-market-data rows: the night session of trading day
/// 2024-01-08 (a Monday) starts on Friday 2024-01-05 at 21:00 and runs past
/// midnight into Saturday; DCE-style ActionDay equals TradingDay. Then the
/// day session on Monday, and the next trading day (Tuesday 2024-01-09)
/// whose cumulative volume restarts.
pub const CTP: &str = "TradingDay,ActionDay,UpdateTime,UpdateMillisec,InstrumentID,LastPrice,Volume,Turnover,OpenInterest,BidPrice1,BidVolume1,AskPrice1,AskVolume1
20240108,20240108,20:59:00,0,m2405,3000,10,300000,1000,2999,5,3001,6
20240108,20240108,21:00:00,500,m2405,3001,15,450050,1001,3000,4,1.7976931348623157e308,0
20240108,20240108,23:59:59,500,m2405,3002,20,600060,1002,3001,3,3003,2
20240108,20240108,00:00:00,0,m2405,3003,26,780078,1003,3002,1,3004,1
20240108,20240108,09:00:00,0,m2405,3004,30,900090,1004,3003,7,3005,8
20240109,20240109,21:00:00,0,m2405,3010,4,120400,1010,3009,1,3011,1
20240109,20240109,21:00:01,0,m2405,3011,9,270455,1011,3010,1,3012,1
";

/// Nanoseconds of a UTC civil time.
pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: i64) -> i64 {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .unwrap()
        .timestamp()
        * S
        + ms * 1_000_000
}

pub async fn ctp(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "ctp.csv", CTP);
    let r = import(&s, &request(&path, ImportFormat::Ctp))
        .await
        .unwrap();
    assert_eq!(
        (r.rows_read, r.rows_stored, r.rows_rejected),
        (7, 7, 0),
        "{r:?}"
    );
    assert_eq!(r.symbols, vec!["m2405"]);
    let t = all_ticks(&s, "m2405").await;
    // Shanghai = UTC+8. Friday 2024-01-05 20:59 local = 12:59 UTC.
    let expect_ts = [
        utc(2024, 1, 5, 12, 59, 0, 0),
        utc(2024, 1, 5, 13, 0, 0, 500),
        utc(2024, 1, 5, 15, 59, 59, 500),
        utc(2024, 1, 5, 16, 0, 0, 0), // Saturday 00:00 local
        utc(2024, 1, 8, 1, 0, 0, 0),  // Monday 09:00 local
        utc(2024, 1, 8, 13, 0, 0, 0), // Monday 21:00 local, trading day Tuesday
        utc(2024, 1, 8, 13, 0, 1, 0),
    ];
    assert_eq!(t.iter().map(|t| t.ts).collect::<Vec<_>>(), expect_ts);
    // Cumulative volume -> per-tick size, restarting with the trading day.
    assert_eq!(
        t.iter().map(|t| t.size).collect::<Vec<_>>(),
        vec![10.0, 5.0, 5.0, 6.0, 4.0, 4.0, 5.0]
    );
    assert_eq!(t[1].turnover, Some(150050.0));
    assert_eq!(t[5].turnover, Some(120400.0));
    assert_eq!(t[1].volume, Some(15.0), "the cumulative figure is kept");
    // The DBL_MAX sentinel means "no value".
    assert_eq!((t[1].ask, t[1].ask_size), (None, Some(0.0)));
    assert_eq!((t[0].bid, t[0].bid_size), (Some(2999.0), Some(5.0)));
    assert_eq!(t[0].open_interest, Some(1000.0));
    // Importing the file again stores nothing.
    let again = import(&s, &request(&path, ImportFormat::Ctp))
        .await
        .unwrap();
    assert_eq!((again.rows_stored, again.rows_duplicate), (0, 7));
    // Daily bars in exchange time: the night session belongs to the
    // calendar day it happened on.
    let mut q = bar_query("m2405", "1d");
    q.timezone = Some("Asia/Shanghai".into());
    let days = s.bars(q).await.unwrap();
    assert_eq!(
        days.iter().map(|b| (b.ts, b.volume)).collect::<Vec<_>>(),
        vec![
            (utc(2024, 1, 4, 16, 0, 0, 0), 20.0),
            (utc(2024, 1, 5, 16, 0, 0, 0), 6.0),
            (utc(2024, 1, 7, 16, 0, 0, 0), 13.0),
        ]
    );
    assert_eq!(days[2].open_interest, Some(1011.0));

    let bad = CTP.replace("20240108,20240108,09:00:00,0", "20240108,20240108,9h00,0");
    let bad_path = write(&dir, "bad.csv", &bad);
    let r = import(&s, &request(&bad_path, ImportFormat::Ctp))
        .await
        .unwrap();
    assert_eq!(r.rows_stored, 0);
    assert_eq!(r.rejections[0].line, 6);
    assert!(
        r.rejections[0].reason.starts_with("UpdateTime"),
        "{:?}",
        r.rejections
    );
    // A missing CTP column is named.
    let nocol = write(
        &dir,
        "nocol.csv",
        "TradingDay,UpdateTime\n20240108,09:00:00\n",
    );
    let e = is_invalid(import(&s, &request(&nocol, ImportFormat::Ctp)).await);
    assert!(e.contains("missing column"), "{e}");
}

const GOOD: &str = "symbol,ts,price,size,bid,ask
rb,2024-01-02T09:00:00Z,3900,1,3899,3901
rb,2024-01-02T09:00:00.5Z,3901.5,2,3901,3902
rb,1704186001000000000,3902,3,,
rb,1704186001000000000,3903,4,,
";

pub async fn csv_imports(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "good.csv", GOOD);
    let r = import(&s, &request(&path, ImportFormat::Csv))
        .await
        .unwrap();
    assert_eq!((r.rows_read, r.rows_stored, r.rows_rejected), (4, 4, 0));
    assert_eq!(r.symbols, vec!["rb"]);
    let r = import(&s, &request(&path, ImportFormat::Csv))
        .await
        .unwrap();
    assert_eq!(
        (r.rows_stored, r.rows_duplicate),
        (0, 4),
        "re-import stores nothing"
    );
    let t = all_ticks(&s, "rb").await;
    assert_eq!(
        t.iter().map(|t| (t.ts, t.seq, t.price)).collect::<Vec<_>>(),
        vec![
            (DAY0 + 9 * HOUR, 0, 3900.0),
            (DAY0 + 9 * HOUR + S / 2, 0, 3901.5),
            (DAY0 + 9 * HOUR + S, 0, 3902.0),
            (DAY0 + 9 * HOUR + S, 1, 3903.0),
        ]
    );
    assert_eq!(
        (t[0].bid, t[0].ask, t[2].bid, t[0].volume),
        (Some(3899.0), Some(3901.0), None, None)
    );
    // A file overlapping what the store has: only the new rows count.
    let more = write(
        &dir,
        "more.csv",
        &format!("{GOOD}rb,2024-01-02T09:00:02Z,3904,5,,\n"),
    );
    let r = import(&s, &request(&more, ImportFormat::Csv))
        .await
        .unwrap();
    assert_eq!((r.rows_read, r.rows_stored, r.rows_duplicate), (5, 1, 4));
    // Appended ticks and imported ones share one identity.
    let r = s
        .append(
            vec![
                tick("rb", DAY0 + 9 * HOUR + S, 1.0, 1.0),
                tick("rb", DAY0 + 9 * HOUR + S, 1.0, 1.0),
                tick("rb", DAY0 + 9 * HOUR + S, 1.0, 1.0),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 2));

    // Bad number, bad time, missing price, too many digits: each with its line.
    let bad = "symbol,ts,price,size
cu,2024-01-02T09:00:00Z,70000,1
cu,2024-01-02T09:00:01Z,7OOOO,1
cu,yesterday,70010,1
cu,2024-01-02T09:00:03Z,,1
cu,2024-01-02T09:00:04Z,70010.123456789012345,1
cu,2024-01-02T09:00:05Z,70020,2
cu,2024-01-02T09:00:06Z,70030,-1
bad symbol,2024-01-02T09:00:07Z,70030,1
";
    let bad_path = write(&dir, "bad.csv", bad);
    let r = import(&s, &request(&bad_path, ImportFormat::Csv))
        .await
        .unwrap();
    assert_eq!((r.rows_read, r.rows_stored, r.rows_rejected), (8, 0, 6));
    let lines: Vec<u64> = r.rejections.iter().map(|x| x.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 8, 9]);
    assert!(
        r.rejections[0].reason.starts_with("price: \"7OOOO\""),
        "{:?}",
        r.rejections[0]
    );
    assert!(
        r.rejections[1].reason.starts_with("ts: \"yesterday\""),
        "{:?}",
        r.rejections[1]
    );
    assert_eq!(r.rejections[2].reason, "price: missing");
    assert!(
        r.rejections[3].reason.contains("would lose precision"),
        "{:?}",
        r.rejections[3]
    );
    assert_eq!(r.rejections[4].reason, "size: negative");
    assert!(
        r.rejections[5].reason.starts_with("symbol:"),
        "{:?}",
        r.rejections[5]
    );
    assert!(r.symbols.is_empty());
    let cov = s.coverage().await.unwrap();
    assert!(
        cov.iter().all(|c| c.symbol != "cu"),
        "strict mode stored nothing"
    );

    let mut skip = request(&bad_path, ImportFormat::Csv);
    skip.mode = ImportMode::Skip;
    let r = import(&s, &skip).await.unwrap();
    assert_eq!(
        (
            r.rows_read,
            r.rows_stored,
            r.rows_rejected,
            r.rejections.len()
        ),
        (8, 2, 6, 6)
    );
    assert_eq!(r.symbols, vec!["cu"]);
    let r = import(&s, &skip).await.unwrap();
    assert_eq!(
        (r.rows_stored, r.rows_duplicate, r.rows_rejected),
        (0, 2, 6)
    );
    assert_eq!(
        all_ticks(&s, "cu")
            .await
            .iter()
            .map(|t| t.price)
            .collect::<Vec<_>>(),
        vec![70000.0, 70020.0]
    );
    // A strict import reports at most 20 rejections, but counts them all.
    let mut many = String::from("symbol,ts,price\n");
    for i in 0..30 {
        many.push_str(&format!("zz,{i},x\n"));
    }
    let many = write(&dir, "many.csv", &many);
    let r = import(&s, &request(&many, ImportFormat::Csv))
        .await
        .unwrap();
    assert_eq!((r.rows_rejected, r.rejections.len()), (30, 20));
    assert_eq!(r.rejections[19].line, 21);

    // Missing column: named, with the columns the file has.
    let nocol = write(&dir, "nocol.csv", "symbol,time,last\nrb,1,2\n");
    let e = is_invalid(import(&s, &request(&nocol, ImportFormat::Csv)).await);
    assert!(e.contains("missing column \"ts\""), "{e}");
    // A file that is not there, or not CSV.
    let e = is_invalid(
        import(
            &s,
            &request(&dir.path().join("absent.csv"), ImportFormat::Csv),
        )
        .await,
    );
    assert!(e.contains("not a readable file"), "{e}");
    let ragged = write(
        &dir,
        "ragged.csv",
        "symbol,ts,price\nrb,1,2,3,4\n\"open quote\n",
    );
    is_invalid(import(&s, &request(&ragged, ImportFormat::Csv)).await);
    let mut unit = request(&path, ImportFormat::Csv);
    unit.ts_unit = Some("minutes".into());
    is_invalid(import(&s, &unit).await);

    // ... which a mapping fixes; a time zone applies to local times.
    let mapped = write(
        &dir,
        "mapped.csv",
        "time,last,qty\n2024-01-02 17:00:00,1.5,4\n2024-01-02 17:00:00.25,1.5,4\n2024-01-02T09:00:01Z,2,1\n",
    );
    let mut r2 = request(&mapped, ImportFormat::Csv);
    r2.mapping = [("ts", "time"), ("price", "last"), ("size", "qty")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    r2.symbol = Some("IF".into());
    r2.timezone = Some("Asia/Shanghai".into());
    let r = import(&s, &r2).await.unwrap();
    assert_eq!(r.rows_stored, 3);
    let t = all_ticks(&s, "IF").await;
    assert_eq!(
        t.iter().map(|t| t.ts).collect::<Vec<_>>(),
        vec![
            DAY0 + 9 * HOUR,
            DAY0 + 9 * HOUR + S / 4,
            DAY0 + 9 * HOUR + S
        ],
        "17:00 in Shanghai is 09:00 UTC; an explicit offset wins"
    );
    assert_eq!(t[0].size, 4.0);
    // Integer timestamps in another unit.
    let ms = write(&dir, "ms.csv", "symbol,ts,price\nms,1704186000250,1\n");
    let mut rm = request(&ms, ImportFormat::Csv);
    rm.ts_unit = Some("ms".into());
    import(&s, &rm).await.unwrap();
    assert_eq!(all_ticks(&s, "ms").await[0].ts, DAY0 + 9 * HOUR + S / 4);
    assert_eq!(all_ticks(&s, "ms").await[0].size, 0.0, "no size column: 0");
}

/// Parquet: the store's own export imported again gives the same ticks.
pub async fn parquet_round_trip(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    let mut ticks = generated("pq", DAY0, 500, 5);
    ticks[3].volume = None;
    ticks[4].bid_size = Some(1.25);
    s.append(ticks.into()).await.unwrap();
    let pq = dir.path().join("pq.parquet");
    assert_eq!(
        s.export(tick_export("pq"), ExportFormat::Parquet, &pq)
            .await
            .unwrap(),
        500
    );
    let mut pr = request(&pq, ImportFormat::Parquet);
    pr.mapping = [("ts".to_string(), "time".to_string())]
        .into_iter()
        .collect();
    pr.symbol = Some("pq2".into());
    let r = import(&s, &pr).await.unwrap();
    assert_eq!((r.rows_read, r.rows_stored, r.rows_rejected), (500, 500, 0));
    assert_eq!(r.symbols, vec!["pq2"]);
    let a = all_ticks(&s, "pq").await;
    let b: Vec<Tick> = all_ticks(&s, "pq2")
        .await
        .into_iter()
        .map(|t| Tick {
            symbol: "pq".into(),
            ..t
        })
        .collect();
    assert_eq!(a, b);
    let r = import(&s, &pr).await.unwrap();
    assert_eq!((r.rows_stored, r.rows_duplicate), (0, 500));
    // The nanosecond column works as well as the timestamp one.
    let mut ns = request(&pq, ImportFormat::Parquet);
    ns.mapping = [("ts".to_string(), "ts_ns".to_string())]
        .into_iter()
        .collect();
    let r = import(&s, &ns).await.unwrap();
    assert_eq!(
        (r.rows_stored, r.rows_duplicate),
        (0, 500),
        "same ticks, same identity"
    );
    let e = is_invalid(import(&s, &request(&pq, ImportFormat::Parquet)).await);
    assert!(e.contains("missing column \"ts\""), "{e}");
    let not_pq = write(&dir, "x.parquet", "not parquet");
    is_invalid(import(&s, &request(&not_pq, ImportFormat::Parquet)).await);
}

/// Parquet files from another writer: integer times in a unit, row
/// numbers of rejected rows, strict and skip.
pub async fn parquet_foreign(s: Arc<dyn TickStore>, fx: &ParquetFixtures) {
    let dir = tempfile::tempdir().unwrap();
    let ms = 1_000_000;
    let mut rows = vec![
        tick("fp", (DAY0 + HOUR) / ms, 10.0, 1.0),
        tick("fp", (DAY0 + HOUR) / ms, 11.0, 2.0),
        tick("fp", (DAY0 + 2 * HOUR) / ms, 12.0, -3.0),
        tick("fp", (DAY0 + 3 * HOUR) / ms, f64::NAN, 1.0),
        tick("fp", (DAY0 + 4 * HOUR) / ms, 13.0, 4.0),
    ];
    rows[0].open_interest = Some(5.0);
    rows[4].ask = Some(13.5);
    let path = dir.path().join("fp.parquet");
    (fx.write)(&path, &rows).unwrap();
    let mut r = request(&path, ImportFormat::Parquet);
    r.ts_unit = Some("ms".into());
    let rep = import(&s, &r).await.unwrap();
    assert_eq!(
        (rep.rows_read, rep.rows_stored, rep.rows_rejected),
        (5, 0, 2)
    );
    assert_eq!(
        rep.rejections
            .iter()
            .map(|x| (x.line, x.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(3, "size: negative"), (4, "price: not finite")]
    );
    r.mode = ImportMode::Skip;
    let rep = import(&s, &r).await.unwrap();
    assert_eq!(
        (rep.rows_read, rep.rows_stored, rep.rows_rejected),
        (5, 3, 2)
    );
    let t = all_ticks(&s, "fp").await;
    assert_eq!(
        t.iter()
            .map(|t| (t.ts, t.seq, t.price, t.open_interest, t.ask))
            .collect::<Vec<_>>(),
        vec![
            (DAY0 + HOUR, 0, 10.0, Some(5.0), None),
            (DAY0 + HOUR, 1, 11.0, None, None),
            (DAY0 + 4 * HOUR, 0, 13.0, None, Some(13.5)),
        ]
    );
    assert_eq!(import(&s, &r).await.unwrap().rows_duplicate, 3);
}

/// The CSV export of [`export_fixture`]'s ticks, byte for byte.
pub const TICKS_CSV: &str = "\
symbol,time,ts_ns,seq,price,size,volume,turnover,open_interest,bid,bid_size,ask,ask_size
ex,2024-01-02 09:00:00,1704186000000000000,0,3900.0,1.0,1.0,3900.0,100.0,3899.5,2.0,3900.5,3.0
ex,2024-01-02 09:00:00,1704186000000000000,1,3900.5,2.0,3.0,7801.0,,,,,
ex,2024-01-02 09:00:00.000000001,1704186000000000001,0,0.30000000000000004,1e-09,,,,,,,
ex,2024-01-02 09:00:30.5,1704186030500000000,0,3901.25,0.5,,,101.0,,,,
ex,2024-01-02 09:01:00,1704186060000000000,0,123456789.123456,1000000.0,,,,,,,
";

/// The CSV export of the 1m bars of [`export_fixture`], byte for byte.
pub const BARS_CSV: &str = "\
symbol,time,ts_ns,open,high,low,close,volume,turnover,open_interest
ex,2024-01-02 09:00:00,1704186000000000000,3900.0,3901.25,0.30000000000000004,3901.25,3.500000001,11701.0,101.0
ex,2024-01-02 09:01:00,1704186060000000000,123456789.123456,123456789.123456,123456789.123456,123456789.123456,1000000.0,,
";

/// The ticks behind [`TICKS_CSV`] and [`BARS_CSV`].
pub fn export_fixture() -> Vec<Tick> {
    let mut a = tick("ex", DAY0 + 9 * HOUR, 3900.0, 1.0);
    a.volume = Some(1.0);
    a.turnover = Some(3900.0);
    a.open_interest = Some(100.0);
    a.bid = Some(3899.5);
    a.bid_size = Some(2.0);
    a.ask = Some(3900.5);
    a.ask_size = Some(3.0);
    let mut b = tick("ex", DAY0 + 9 * HOUR, 3900.5, 2.0);
    b.volume = Some(3.0);
    b.turnover = Some(7801.0);
    let c = tick("ex", DAY0 + 9 * HOUR + 1, 0.1 + 0.2, 1e-9);
    let mut d = tick("ex", DAY0 + 9 * HOUR + 30 * S + S / 2, 3901.25, 0.5);
    d.open_interest = Some(101.0);
    let e = tick("ex", DAY0 + 9 * HOUR + MINUTE, 123456789.123456, 1e6);
    vec![a, b, c, d, e]
}

/// Exports: CSV text pinned, Parquet with the same content (with
/// fixtures) or the same ticks re-imported; ranges, empty selections,
/// invalid requests. Returns what it left out.
pub async fn exports(s: Arc<dyn TickStore>, fx: Option<&ParquetFixtures>) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    s.append(export_fixture().into()).await.unwrap();
    let csv = dir.path().join("ticks.csv");
    assert_eq!(
        s.export(tick_export("ex"), ExportFormat::Csv, &csv)
            .await
            .unwrap(),
        5
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), TICKS_CSV);
    let bars = dir.path().join("bars.csv");
    let bq = bar_query("ex", "1m");
    assert_eq!(
        s.export(ExportQuery::Bars(bq.clone()), ExportFormat::Csv, &bars)
            .await
            .unwrap(),
        2
    );
    assert_eq!(std::fs::read_to_string(&bars).unwrap(), BARS_CSV);
    // Daily bars aligned to Shanghai midnight.
    let mut tz = bar_query("ex", "1d");
    tz.timezone = Some("Asia/Shanghai".into());
    let tz_csv = dir.path().join("tz.csv");
    s.export(ExportQuery::Bars(tz), ExportFormat::Csv, &tz_csv)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&tz_csv).unwrap(),
        "symbol,time,ts_ns,open,high,low,close,volume,turnover,open_interest
ex,2024-01-01 16:00:00,1704124800000000000,3900.0,123456789.123456,0.30000000000000004,123456789.123456,1000003.500000001,11701.0,101.0
"
    );
    // Ranges are [start, end).
    let ranged = dir.path().join("ranged.csv");
    let n = s
        .export(
            ExportQuery::Ticks {
                symbol: "ex".into(),
                start: Some(DAY0 + 9 * HOUR + 1),
                end: Some(DAY0 + 9 * HOUR + MINUTE),
            },
            ExportFormat::Csv,
            &ranged,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Nothing selected: a header and no rows.
    let empty = dir.path().join("empty.csv");
    assert_eq!(
        s.export(tick_export("none"), ExportFormat::Csv, &empty)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        TICKS_CSV.lines().next().unwrap().to_string() + "\n"
    );
    let empty_bars = dir.path().join("empty_bars.csv");
    assert_eq!(
        s.export(
            ExportQuery::Bars(bar_query("none", "1m")),
            ExportFormat::Csv,
            &empty_bars
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(&empty_bars).unwrap(),
        BARS_CSV.lines().next().unwrap().to_string() + "\n"
    );
    is_invalid(
        s.export(tick_export("bad symbol"), ExportFormat::Csv, &empty)
            .await,
    );
    let mut bad_tz = bar_query("ex", "1m");
    bad_tz.timezone = Some("Mars/Olympus".into());
    is_invalid(
        s.export(ExportQuery::Bars(bad_tz), ExportFormat::Csv, &empty)
            .await,
    );

    // Parquet.
    let tpq = dir.path().join("ticks.parquet");
    let bpq = dir.path().join("bars.parquet");
    assert_eq!(
        s.export(tick_export("ex"), ExportFormat::Parquet, &tpq)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        s.export(ExportQuery::Bars(bq), ExportFormat::Parquet, &bpq)
            .await
            .unwrap(),
        2
    );
    let epq = dir.path().join("empty.parquet");
    assert_eq!(
        s.export(tick_export("none"), ExportFormat::Parquet, &epq)
            .await
            .unwrap(),
        0
    );
    match fx {
        Some(fx) => {
            assert_eq!((fx.to_csv)(&tpq).unwrap(), TICKS_CSV);
            assert_eq!((fx.to_csv)(&bpq).unwrap(), BARS_CSV);
            assert_eq!(
                (fx.to_csv)(&epq).unwrap(),
                TICKS_CSV.lines().next().unwrap().to_string() + "\n"
            );
            None
        }
        None => Some(
            "Parquet export content compared with the CSV export: no Parquet fixtures given".into(),
        ),
    }
}

/// Retention: everything older than the cut goes, ticks and imported bars,
/// and the count says how many rows; what is newer stays; data older than
/// the cut can be stored again afterwards.
pub async fn retention(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    let ticks = vec![
        tick("ret", DAY0 - 40 * DAY + HOUR, 1.0, 1.0),
        tick("ret", DAY0 - 2 * DAY + HOUR, 2.0, 1.0),
        tick("ret", DAY0 - DAY + HOUR, 3.0, 1.0),
        tick("ret", DAY0 + HOUR, 4.0, 1.0),
        tick("ret", DAY0 + 5 * HOUR, 4.5, 1.0),
        tick("ret", DAY0 + 12 * HOUR, 5.0, 1.0),
        tick("ret", DAY0 + DAY + HOUR, 6.0, 1.0),
        tick("other", DAY0 - 3 * DAY, 7.0, 1.0),
        tick("other", DAY0 + 7 * HOUR, 8.0, 1.0),
    ];
    s.append(ticks.into()).await.unwrap();
    // Daily bars from late November to early January.
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    for d in 0..45 {
        let ts = DAY0 - 40 * DAY + d * DAY;
        csv.push_str(&format!("retb,{ts},1,1,1,1,1\n"));
    }
    let path = write(&dir, "daily.csv", &csv);
    let mut daily = request(&path, ImportFormat::BarsCsv);
    daily.interval = Some("1d".into());
    assert_eq!(import(&s, &daily).await.unwrap().rows_stored, 45);

    let cut = DAY0 + 6 * HOUR;
    // Ticks: 5 of `ret`, 1 of `other`; bars: the 41 days up to DAY0.
    assert_eq!(s.retain(cut).await.unwrap(), 5 + 1 + 41);
    assert_eq!(s.retain(cut).await.unwrap(), 0, "nothing left to drop");
    let ret = all_ticks(&s, "ret").await;
    assert_eq!(
        ret.iter().map(|t| t.price).collect::<Vec<_>>(),
        vec![5.0, 6.0]
    );
    let cov = s.coverage().await.unwrap();
    assert_eq!(
        cov.iter()
            .map(|c| (
                c.symbol.as_str(),
                c.ticks,
                c.first_ts,
                c.bars.first().map(|b| (b.count, b.first_ts))
            ))
            .collect::<Vec<_>>(),
        vec![
            ("other", 1, Some(DAY0 + 7 * HOUR), None),
            ("ret", 2, Some(DAY0 + 12 * HOUR), None),
            ("retb", 0, None, Some((4, DAY0 + DAY))),
        ]
    );
    assert_eq!(s.bars(bar_query("retb", "1d")).await.unwrap().len(), 4);
    // Old data can be stored again (a backfill) and is then retained again.
    let r = s
        .append(vec![tick("ret", DAY0 - 2 * DAY + HOUR, 2.0, 1.0)].into())
        .await
        .unwrap();
    assert_eq!(r.stored, 1);
    assert_eq!(all_ticks(&s, "ret").await.len(), 3);
    assert_eq!(import(&s, &daily).await.unwrap().rows_stored, 41);
    assert_eq!(s.retain(cut).await.unwrap(), 1 + 41);
    // A cut far in the past removes nothing; one in the future, everything.
    assert_eq!(s.retain(-100 * DAY).await.unwrap(), 0);
    assert_eq!(s.retain(DAY0 + 100 * DAY).await.unwrap(), 2 + 1 + 4);
    assert!(s.coverage().await.unwrap().is_empty());
    s.checkpoint().await.unwrap();
}

/// Coverage: one entry per symbol in symbol order, ticks and imported
/// bars per interval in interval order.
pub async fn coverage(s: Arc<dyn TickStore>) {
    let dir = tempfile::tempdir().unwrap();
    assert!(s.coverage().await.unwrap().is_empty());
    s.append(
        vec![
            tick("b", DAY0 + 5, 1.0, 1.0),
            tick("b", DAY0 - 3 * DAY, 1.0, 1.0),
            tick("a", DAY0, 1.0, 1.0),
            tick("b", DAY0 + 2 * DAY, 1.0, 1.0),
        ]
        .into(),
    )
    .await
    .unwrap();
    for (iv, n) in [("1h", 3), ("1m", 2)] {
        let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
        for i in 0..n {
            let step: Interval = iv.parse().unwrap();
            csv.push_str(&format!("b,{},1,1,1,1,1\n", DAY0 + i * step.nanos()));
            csv.push_str(&format!("c,{},1,1,1,1,1\n", DAY0 + i * step.nanos()));
        }
        let path = write(&dir, &format!("{iv}.csv"), &csv);
        let mut r = request(&path, ImportFormat::BarsCsv);
        r.interval = Some(iv.into());
        import(&s, &r).await.unwrap();
    }
    let bars = |count, last_ts| {
        vec![
            BarCoverage {
                interval: "1m".into(),
                count,
                first_ts: DAY0,
                last_ts,
            },
            BarCoverage {
                interval: "1h".into(),
                count: 3,
                first_ts: DAY0,
                last_ts: DAY0 + 2 * HOUR,
            },
        ]
    };
    assert_eq!(
        s.coverage().await.unwrap(),
        vec![
            Coverage {
                symbol: "a".into(),
                ticks: 1,
                first_ts: Some(DAY0),
                last_ts: Some(DAY0),
                bars: Vec::new(),
            },
            Coverage {
                symbol: "b".into(),
                ticks: 3,
                first_ts: Some(DAY0 - 3 * DAY),
                last_ts: Some(DAY0 + 2 * DAY),
                bars: bars(2, DAY0 + MINUTE),
            },
            Coverage {
                symbol: "c".into(),
                ticks: 0,
                first_ts: None,
                last_ts: None,
                bars: bars(2, DAY0 + MINUTE),
            },
        ]
    );
    // Duplicates do not count twice.
    s.append(vec![tick("a", DAY0, 1.0, 1.0)].into())
        .await
        .unwrap();
    assert_eq!(s.coverage().await.unwrap()[0].ticks, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference itself, independent of any store.
    #[test]
    fn local_bucket_follows_the_wall_clock() {
        // Spot checks of the rule itself: New York's day after spring forward
        // starts at 05:00 UTC (EST midnight), the one after at 04:00 (EDT);
        // the repeated hour 01:00-02:00 on 3 November gives two hourly bars.
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let d = Interval::from_secs(86_400).unwrap().nanos();
        let h = HOUR;
        assert_eq!(
            local_bucket(utc(2024, 3, 10, 12, 0, 0, 0), d, ny),
            utc(2024, 3, 10, 5, 0, 0, 0)
        );
        assert_eq!(
            local_bucket(utc(2024, 3, 11, 12, 0, 0, 0), d, ny),
            utc(2024, 3, 11, 4, 0, 0, 0)
        );
        assert_eq!(
            local_bucket(utc(2024, 11, 3, 5, 30, 0, 0), h, ny),
            utc(2024, 11, 3, 5, 0, 0, 0)
        );
        assert_eq!(
            local_bucket(utc(2024, 11, 3, 6, 30, 0, 0), h, ny),
            utc(2024, 11, 3, 6, 0, 0, 0)
        );
    }
}
