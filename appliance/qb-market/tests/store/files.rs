use qb_core::TickStore;
use qb_core::market::*;

use crate::*;

const GOOD: &str = "symbol,ts,price,size,bid,ask
rb,2024-01-02T09:00:00Z,3900,1,3899,3901
rb,2024-01-02T09:00:00.5Z,3901.5,2,3901,3902
rb,1704186001000000000,3902,3,,
";

#[tokio::test]
async fn csv_strict_skip_and_reimport() {
    let (dir, s) = store();
    let path = write(&dir, "good.csv", GOOD);
    let r = s
        .import(&req(&path, ImportFormat::Csv), &no_progress)
        .unwrap();
    assert_eq!((r.rows_read, r.rows_stored, r.rows_rejected), (3, 3, 0));
    assert_eq!(r.symbols, vec!["rb"]);
    let r = s
        .import(&req(&path, ImportFormat::Csv), &no_progress)
        .unwrap();
    assert_eq!(
        (r.rows_stored, r.rows_duplicate),
        (0, 3),
        "re-import stores nothing"
    );
    let t = all_ticks(&s, "rb").await;
    assert_eq!(t[0].ts, DAY0 + 9 * 3600 * S);
    assert_eq!(t[1].ts, DAY0 + 9 * 3600 * S + S / 2);
    assert_eq!(t[2].ts, DAY0 + 9 * 3600 * S + S);
    assert_eq!(
        (t[0].bid, t[0].ask, t[2].bid),
        (Some(3899.0), Some(3901.0), None)
    );

    // Bad number, bad time, missing price, too many digits: each with its line.
    let bad = "symbol,ts,price,size
cu,2024-01-02T09:00:00Z,70000,1
cu,2024-01-02T09:00:01Z,7OOOO,1
cu,yesterday,70010,1
cu,2024-01-02T09:00:03Z,,1
cu,2024-01-02T09:00:04Z,70010.123456789012345,1
cu,2024-01-02T09:00:05Z,70020,2
";
    let bad_path = write(&dir, "bad.csv", bad);
    let r = s
        .import(&req(&bad_path, ImportFormat::Csv), &no_progress)
        .unwrap();
    assert_eq!((r.rows_stored, r.rows_rejected), (0, 4));
    let lines: Vec<u64> = r.rejections.iter().map(|x| x.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6]);
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
    let cov = s.coverage().await.unwrap();
    assert!(
        cov.iter().all(|c| c.symbol != "cu"),
        "strict mode stored nothing"
    );

    let mut skip = req(&bad_path, ImportFormat::Csv);
    skip.mode = ImportMode::Skip;
    let r = s.import(&skip, &no_progress).unwrap();
    assert_eq!(
        (
            r.rows_read,
            r.rows_stored,
            r.rows_rejected,
            r.rejections.len()
        ),
        (6, 2, 4, 4)
    );

    // Missing column: named, with the columns the file has.
    let nocol = write(&dir, "nocol.csv", "symbol,time,last\nrb,1,2\n");
    let e = s
        .import(&req(&nocol, ImportFormat::Csv), &no_progress)
        .unwrap_err();
    assert!(e.to_string().contains("missing column \"ts\""), "{e}");
    // ... which a mapping fixes; a time zone applies to local times.
    let mapped = write(
        &dir,
        "mapped.csv",
        "time,last,qty\n2024-01-02 17:00:00,1.5,4\n",
    );
    let mut r2 = req(&mapped, ImportFormat::Csv);
    r2.mapping = [("ts", "time"), ("price", "last"), ("size", "qty")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    r2.symbol = Some("IF".into());
    r2.timezone = Some("Asia/Shanghai".into());
    let r = s.import(&r2, &no_progress).unwrap();
    assert_eq!(r.rows_stored, 1);
    let t = all_ticks(&s, "IF").await;
    assert_eq!(
        t[0].ts,
        DAY0 + 9 * 3600 * S,
        "17:00 in Shanghai is 09:00 UTC"
    );
    assert_eq!(t[0].size, 4.0);

    // Parquet: export the ticks, import them into a fresh store, same rows.
    let pq = dir.path().join("rb.parquet");
    let n = s
        .export(
            ExportQuery::Ticks {
                symbol: "rb".into(),
                start: None,
                end: None,
            },
            ExportFormat::Parquet,
            &pq,
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let csv = dir.path().join("rb.csv");
    s.export(
        ExportQuery::Ticks {
            symbol: "rb".into(),
            start: None,
            end: None,
        },
        ExportFormat::Csv,
        &csv,
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("symbol,time,ts_ns,seq,price"), "{text}");
    assert!(text.contains("2024-01-02 09:00:00.5"), "{text}");
    let (_d2, s2) = store();
    let mut pr = req(pq.to_str().unwrap(), ImportFormat::Parquet);
    pr.mapping = [("ts".to_string(), "time".to_string())]
        .into_iter()
        .collect();
    let r = s2.import(&pr, &no_progress).unwrap();
    assert_eq!((r.rows_read, r.rows_stored), (3, 3));
    let a = all_ticks(&s, "rb").await;
    let b = all_ticks(&s2, "rb").await;
    assert_eq!(a, b);
    let r = s2.import(&pr, &no_progress).unwrap();
    assert_eq!(r.rows_duplicate, 3);
}
