use qb_core::TickStore;
use qb_core::market::*;

use crate::*;

#[tokio::test]
async fn appends_are_idempotent_and_keep_same_time_ticks_apart() {
    let (dir, s) = store();
    let batch = vec![
        tick("rb", DAY0, 3900.0, 1.0),
        tick("rb", DAY0, 3901.0, 2.0), // same ns: a second tick, seq 1
        tick("rb", DAY0 + S, 3902.0, 3.0),
        tick("cu", DAY0, 70000.0, 1.0),
    ];
    let r = s.append(batch.clone()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (4, 0));
    // Sending the same batch again (a retry) stores nothing.
    let r = s.append(batch).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 4));
    let got = all_ticks(&s, "rb").await;
    let seen: Vec<(i64, i32, f64)> = got.iter().map(|t| (t.ts, t.seq, t.price)).collect();
    assert_eq!(
        seen,
        vec![(DAY0, 0, 3900.0), (DAY0, 1, 3901.0), (DAY0 + S, 0, 3902.0)]
    );
    // Keyset paging.
    let next = s
        .ticks(TickQuery {
            symbol: "rb".into(),
            start: None,
            end: None,
            after: Some((DAY0, 0)),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!((next[0].ts, next[0].seq), (DAY0, 1));
    let cov = s.coverage().await.unwrap();
    assert_eq!(cov.len(), 2);
    assert_eq!(
        (
            cov[1].symbol.as_str(),
            cov[1].ticks,
            cov[1].first_ts,
            cov[1].last_ts
        ),
        ("rb", 3, Some(DAY0), Some(DAY0 + S))
    );

    // Committed data survives reopening the file.
    let path = s.path().to_path_buf();
    drop(s);
    let s = qb_market::DuckStore::open(&path).unwrap();
    assert_eq!(s.coverage().await.unwrap()[1].ticks, 3);
    // Doubles come back bit for bit.
    let exact = vec![
        tick("x", DAY0, 0.1 + 0.2, 1e-9),
        tick("x", DAY0 + 1, 123456789.123456, 3.0),
    ];
    s.append(exact.clone()).await.unwrap();
    let back = all_ticks(&s, "x").await;
    assert_eq!(back[0].price.to_bits(), exact[0].price.to_bits());
    assert_eq!(back[0].size.to_bits(), exact[0].size.to_bits());
    assert_eq!(back[1].price.to_bits(), exact[1].price.to_bits());

    // Retention drops old rows only.
    assert_eq!(s.retain(DAY0 + 1).await.unwrap(), 4);
    assert_eq!(
        s.coverage()
            .await
            .unwrap()
            .iter()
            .map(|c| c.ticks)
            .sum::<u64>(),
        2
    );
    drop(dir);
}
