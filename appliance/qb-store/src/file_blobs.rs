//! [`BlobStore`] as files under a root directory (the data directory on
//! one box): the blob `backtests/<id>/fills.csv` is the file
//! `<root>/backtests/<id>/fills.csv`, where it always was. A blob is
//! written to a temporary name beside its place, synced, and renamed over
//! it, so readers see the old file or the new one.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use qb_core::seams::check_blob_key;
use qb_core::{BlobInfo, BlobStore, StoreError, StoreResult};

#[derive(Clone)]
pub struct FileBlobs {
    root: PathBuf,
}

fn io(what: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {e}", what.display()))
}

impl FileBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        check_blob_key(key)?;
        Ok(self.root.join(key))
    }

    fn put_blocking(&self, key: &str, from: &Path) -> StoreResult<u64> {
        let to = self.path(key)?;
        if same_file(from, &to) {
            return std::fs::metadata(&to)
                .map(|m| m.len())
                .map_err(|e| io(&to, e));
        }
        let dir = to.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(".{}.partial", uuid::Uuid::now_v7()));
        let size = std::fs::copy(from, &tmp).map_err(|e| io(from, e))?;
        let done = std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &to));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&to, e));
        }
        Ok(size)
    }

    fn list_blocking(&self, prefix: &str) -> StoreResult<Vec<BlobInfo>> {
        // Walk only the directory the prefix names (`backtests/` or
        // `backtests/<id>/…`), never the whole data directory.
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) => {
                check_blob_key(dir)?;
                self.root.join(dir)
            }
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        walk(&self.root, &dir, &mut out)?;
        out.retain(|b| b.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Every file under `dir` whose relative path is a blob key (the stores'
/// own files, such as `quantbox.sqlite`, are blobs too by that rule, so
/// callers list under a prefix).
fn walk(root: &Path, dir: &Path, out: &mut Vec<BlobInfo>) -> StoreResult<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let Some(key) = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue;
        };
        if check_blob_key(&key).is_err() || key.ends_with(".partial") {
            continue;
        }
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        out.push(BlobInfo {
            key,
            size: meta.len(),
            created_ms,
        });
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FileBlobs {
    async fn put_file(&self, key: &str, path: &Path) -> StoreResult<u64> {
        let (me, key, path) = (self.clone(), key.to_string(), path.to_path_buf());
        tokio::task::spawn_blocking(move || me.put_blocking(&key, &path))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn get_file(&self, key: &str, to: &Path) -> StoreResult<bool> {
        let from = self.path(key)?;
        if same_file(&from, to) {
            return Ok(true);
        }
        match tokio::fs::copy(&from, to).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&from, e)),
        }
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<BlobInfo>> {
        let (me, prefix) = (self.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || me.list_blocking(&prefix))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn delete_prefix(&self, prefix: &str) -> StoreResult<u64> {
        if prefix.is_empty() {
            return Err(StoreError::Invalid(
                "deleting every blob at once is refused: name a prefix".into(),
            ));
        }
        let gone = self.list(prefix).await?;
        let mut n = 0;
        for b in &gone {
            let path = self.root.join(&b.key);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
            // Empty directories left behind go too, down to the top-level
            // folder (`backtests/<id>/` goes, `backtests/` stays).
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d.parent() == Some(self.root.as_path())
                    || d == self.root
                    || tokio::fs::remove_dir(&d).await.is_err()
                {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
        }
        Ok(n)
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
}
