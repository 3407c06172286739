//! [`BlobStore`] on PostgreSQL, so no node needs another node's disk: a
//! header row in `blobs` and the bytes in `blob_chunks` (1 MiB each). A
//! blob is replaced in one transaction (delete, header, chunks), so
//! readers see the old blob or the new one. Reads go to the primary: a
//! blob is read right after the job that wrote it finished.

use std::path::Path;

use async_trait::async_trait;
use qb_core::seams::check_blob_key;
use qb_core::time::now_ms;
use qb_core::{BlobInfo, BlobStore, StoreError, StoreResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kv::prefix_end;
use crate::sql::{col, exec, opt_row, rows};
use crate::{PgStore, map_pg};

const CHUNK: usize = 1 << 20;

fn io(what: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {e}", what.display()))
}

/// The key range of `prefix`: `key >= $1 AND key < $2`, the same bounds the
/// key-value scans use (`kv::prefix_end`; no upper bound: `U+10FFFF`).
fn range(prefix: &str) -> (String, String) {
    (
        prefix.to_string(),
        prefix_end(prefix).unwrap_or_else(|| char::MAX.to_string()),
    )
}

#[async_trait]
impl BlobStore for PgStore {
    async fn put_file(&self, key: &str, path: &Path) -> StoreResult<u64> {
        check_blob_key(key)?;
        let mut file = tokio::fs::File::open(path).await.map_err(|e| io(path, e))?;
        let size = file.metadata().await.map_err(|e| io(path, e))?.len();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        exec(&tx, "DELETE FROM blobs WHERE key = $1", &[&key]).await?;
        exec(
            &tx,
            "INSERT INTO blobs (key, size, created_ms) VALUES ($1, $2, $3)",
            &[&key, &(size as i64), &now_ms()],
        )
        .await?;
        let mut buf = vec![0u8; CHUNK];
        let mut n: i32 = 0;
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                let got = file
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|e| io(path, e))?;
                if got == 0 {
                    break;
                }
                filled += got;
            }
            if filled == 0 {
                break;
            }
            exec(
                &tx,
                "INSERT INTO blob_chunks (key, n, data) VALUES ($1, $2, $3)",
                &[&key, &n, &&buf[..filled]],
            )
            .await?;
            n += 1;
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        check_blob_key(key)?;
        let c = self.conn().await?;
        let Some(head) = opt_row(&c, "SELECT size FROM blobs WHERE key = $1", &[&key]).await?
        else {
            return Ok(None);
        };
        let size: i64 = col(&head, 0)?;
        let mut out = Vec::with_capacity(size.max(0) as usize);
        for r in rows(
            &c,
            "SELECT data FROM blob_chunks WHERE key = $1 ORDER BY n",
            &[&key],
        )
        .await?
        {
            out.extend_from_slice(col::<&[u8]>(&r, 0)?);
        }
        Ok(Some(out))
    }

    async fn get_file(&self, key: &str, path: &Path) -> StoreResult<bool> {
        check_blob_key(key)?;
        let mut c = self.conn().await?;
        // One snapshot for the header and every chunk.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(map_pg)?;
        let Some(head) = opt_row(&tx, "SELECT size FROM blobs WHERE key = $1", &[&key]).await?
        else {
            return Ok(false);
        };
        let size: i64 = col(&head, 0)?;
        let chunks = (size as usize).div_ceil(CHUNK) as i32;
        let mut out = tokio::fs::File::create(path)
            .await
            .map_err(|e| io(path, e))?;
        for n in 0..chunks {
            let row = opt_row(
                &tx,
                "SELECT data FROM blob_chunks WHERE key = $1 AND n = $2",
                &[&key, &n],
            )
            .await?
            .ok_or_else(|| StoreError::Backend(format!("blob {key}: chunk {n} missing")))?;
            out.write_all(col::<&[u8]>(&row, 0)?)
                .await
                .map_err(|e| io(path, e))?;
        }
        out.sync_all().await.map_err(|e| io(path, e))?;
        tx.commit().await.map_err(map_pg)?;
        Ok(true)
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<BlobInfo>> {
        let (from, to) = range(prefix);
        let c = self.conn().await?;
        rows(
            &c,
            "SELECT key, size, created_ms FROM blobs WHERE key >= $1 AND key < $2 ORDER BY key",
            &[&from, &to],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BlobInfo {
                key: col(r, 0)?,
                size: col::<i64>(r, 1)?.max(0) as u64,
                created_ms: col(r, 2)?,
            })
        })
        .collect()
    }

    async fn delete_prefix(&self, prefix: &str) -> StoreResult<u64> {
        if prefix.is_empty() {
            return Err(StoreError::Invalid(
                "deleting every blob at once is refused: name a prefix".into(),
            ));
        }
        let (from, to) = range(prefix);
        let c = self.conn().await?;
        exec(
            &c,
            "DELETE FROM blobs WHERE key >= $1 AND key < $2",
            &[&from, &to],
        )
        .await
    }
}
