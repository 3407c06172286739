use qb_core::TickStore;
use qb_core::market::*;

use crate::*;

fn q(symbol: &str, interval: &str) -> BarQuery {
    BarQuery {
        symbol: symbol.into(),
        interval: interval.parse().unwrap(),
        start: None,
        end: None,
        timezone: None,
    }
}

#[tokio::test]
async fn bars_from_ticks_match_hand_computed_bars() {
    let (_dir, s) = store();
    let m = 60 * S;
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
    s.append(t).await.unwrap();

    let bars = s.bars(q("a", "1m")).await.unwrap();
    let got: Vec<(i64, f64, f64, f64, f64, f64)> = bars
        .iter()
        .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
        .collect();
    let base = DAY0 + 9 * 60 * m;
    assert_eq!(
        got,
        vec![
            (base, 10.0, 12.0, 9.0, 11.0, 6.0),
            (base + m, 20.0, 21.0, 19.0, 19.0, 7.0),
            (base + 5 * m, 30.0, 30.0, 30.0, 30.0, 3.0),
        ]
    );
    assert_eq!(bars[0].open_interest, Some(104.0));
    assert_eq!(bars[0].turnover, Some(34.0));
    assert_eq!(bars[1].turnover, None);

    let five = s.bars(q("a", "5m")).await.unwrap();
    assert_eq!(
        five.iter()
            .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
            .collect::<Vec<_>>(),
        vec![
            (base, 10.0, 21.0, 9.0, 19.0, 13.0),
            (base + 5 * m, 30.0, 30.0, 30.0, 30.0, 3.0)
        ]
    );
    let day = s.bars(q("a", "1d")).await.unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!((day[0].ts, day[0].volume), (DAY0, 16.0));

    // A session time zone moves the day boundary: 09:00 UTC is 17:00 in
    // Shanghai, inside the local day that began at 16:00 UTC the day before.
    let mut tz = q("a", "1d");
    tz.timezone = Some("Asia/Shanghai".into());
    let local = s.bars(tz).await.unwrap();
    assert_eq!(local[0].ts, DAY0 - 8 * 3600 * S);
    let mut bad = q("a", "1d");
    bad.timezone = Some("Mars/Olympus".into());
    assert!(s.bars(bad).await.is_err());

    // Ranges are [start, end).
    let mut r = q("a", "1m");
    r.start = Some(base + m);
    r.end = Some(base + 5 * m);
    assert_eq!(s.bars(r).await.unwrap().len(), 1);
}

#[tokio::test]
async fn imported_bars_serve_coarser_intervals() {
    let (dir, s) = store();
    let csv = "symbol,ts,open,high,low,close,volume
IF,2024-01-02T01:30:00Z,3500,3510,3495,3505,100
IF,2024-01-02T01:31:00Z,3505,3520,3500,3515,200
IF,2024-01-02T01:32:00Z,3515,3516,3490,3492,50
IF,2024-01-02T01:35:00Z,3492,3493,3480,3481,10
";
    let path = write(&dir, "bars.csv", csv);
    let mut r = req(&path, ImportFormat::BarsCsv);
    r.interval = Some("1m".into());
    let rep = s.import(&r, &no_progress).unwrap();
    assert_eq!(rep.rows_stored, 4);
    assert_eq!(s.import(&r, &no_progress).unwrap().rows_duplicate, 4);
    let five = s.bars(q("IF", "5m")).await.unwrap();
    let base = DAY0 + 90 * 60 * S;
    assert_eq!(
        five.iter()
            .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
            .collect::<Vec<_>>(),
        vec![
            (base, 3500.0, 3520.0, 3490.0, 3492.0, 350.0),
            (base + 300 * S, 3492.0, 3493.0, 3480.0, 3481.0, 10.0)
        ]
    );
    let cov = s.coverage().await.unwrap();
    assert_eq!(cov[0].bars[0].interval, "1m");
    assert_eq!(cov[0].bars[0].count, 4);

    let broken = write(
        &dir,
        "broken.csv",
        "symbol,ts,open,high,low,close,volume\nIF,2024-01-02T01:30:00Z,3500,3490,3495,3505,100\nIF,2024-01-02T01:30:30Z,1,1,1,1,1\n",
    );
    let mut r = req(&broken, ImportFormat::BarsCsv);
    r.interval = Some("1m".into());
    let rep = s.import(&r, &no_progress).unwrap();
    assert_eq!(
        rep.rejections.iter().map(|x| x.line).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(rep.rejections[0].reason.contains("inconsistent"));
    assert!(rep.rejections[1].reason.contains("aligned"));
}
