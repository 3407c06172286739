//! What only the file-backed DuckDB store has.

use qb_conformance::ticks::{DAY0, S, all_ticks, tick};
use qb_core::TickStore;
use std::sync::Arc;

use crate::store;

#[tokio::test]
async fn committed_data_survives_reopening_the_file() {
    let (dir, s) = store();
    let r = s
        .append(
            vec![
                tick("rb", DAY0, 3900.0, 1.0),
                tick("rb", DAY0, 3901.0, 2.0),
                tick("rb", DAY0 + S, 3902.0, 3.0),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(r.stored, 3);
    s.checkpoint().await.unwrap();
    let path = s.path().to_path_buf();
    drop(s);
    let s: Arc<dyn TickStore> = Arc::new(qb_market::DuckStore::open(&path).unwrap());
    assert_eq!(s.coverage().await.unwrap()[0].ticks, 3);
    assert_eq!(all_ticks(&s, "rb").await.len(), 3);
    // Identity holds across the reopen.
    let r = s
        .append(vec![tick("rb", DAY0, 0.0, 0.0)].into())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 1));
    drop(dir);
}
