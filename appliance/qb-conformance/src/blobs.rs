//! The blob store: whole files in and out, replaced whole, listed and
//! deleted by prefix, keys checked.

use std::path::Path;
use std::sync::Arc;

use qb_core::{BlobStore, StoreError};

/// A file of `len` bytes with a pattern that differs per position.
fn file(dir: &Path, name: &str, len: usize, seed: u8) -> std::path::PathBuf {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub async fn suite(blobs: Arc<dyn BlobStore>) {
    let dir = tempfile::tempdir().unwrap();
    // Bigger than one chunk of any chunked adapter, not a multiple of it.
    let big = file(dir.path(), "big", (5 << 20) / 2 + 7, 1);
    let small = file(dir.path(), "small", 10, 2);
    let empty = file(dir.path(), "empty", 0, 3);

    assert_eq!(blobs.get("runs/1/out.csv").await.unwrap(), None);
    assert!(
        !blobs
            .get_file("runs/1/out.csv", &dir.path().join("x"))
            .await
            .unwrap()
    );
    assert_eq!(
        blobs.put_file("runs/1/out.csv", &big).await.unwrap(),
        std::fs::metadata(&big).unwrap().len()
    );
    blobs.put_file("runs/1/report.html", &small).await.unwrap();
    blobs.put_file("runs/2/empty", &empty).await.unwrap();
    blobs.put_file("runs-b/1", &small).await.unwrap();
    assert_eq!(
        blobs.get("runs/1/out.csv").await.unwrap().unwrap(),
        std::fs::read(&big).unwrap()
    );
    assert_eq!(blobs.get("runs/2/empty").await.unwrap(), Some(Vec::new()));
    let copy = dir.path().join("copy");
    assert!(blobs.get_file("runs/1/out.csv", &copy).await.unwrap());
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&big).unwrap());

    // Replaced whole.
    blobs.put_file("runs/1/out.csv", &small).await.unwrap();
    assert_eq!(
        blobs.get("runs/1/out.csv").await.unwrap().unwrap(),
        std::fs::read(&small).unwrap()
    );

    // Listed by prefix, in key order, with sizes.
    let listed: Vec<(String, u64)> = blobs
        .list("runs/")
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.key, b.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("runs/1/out.csv".to_string(), 10),
            ("runs/1/report.html".to_string(), 10),
            ("runs/2/empty".to_string(), 0),
        ]
    );
    assert!(blobs.list("runs/1/").await.unwrap()[0].created_ms > 0);

    // Deleted by prefix; others stay.
    assert_eq!(blobs.delete_prefix("runs/1/").await.unwrap(), 2);
    assert_eq!(blobs.get("runs/1/report.html").await.unwrap(), None);
    assert!(blobs.get("runs/2/empty").await.unwrap().is_some());
    assert!(blobs.get("runs-b/1").await.unwrap().is_some());
    assert!(matches!(
        blobs.delete_prefix("").await,
        Err(StoreError::Invalid(_))
    ));

    // Keys that could escape a directory or hide are refused.
    for bad in [
        "", "/abs", "a//b", "../up", "a/../b", "a/./b", "sp ace", "a\\b",
    ] {
        assert!(
            matches!(
                blobs.put_file(bad, &small).await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(blobs.get(bad).await, Err(StoreError::Invalid(_))),
            "{bad:?}"
        );
    }
}
