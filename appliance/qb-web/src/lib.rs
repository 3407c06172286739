//! The dashboard's files, built from `web/` by `build.rs` and embedded in
//! the binary (release and debug builds alike, so tests serve what ships).
//! Serving them over HTTP is `qb-api`'s business (`routes::dashboard`).

/// Every built file, by path relative to the dashboard root
/// (`index.html`, `assets/index-<hash>.js`, ...).
#[derive(rust_embed::Embed)]
#[folder = "$OUT_DIR/web"]
pub struct Assets;

/// The entry page every client-side route falls back to.
pub const INDEX: &str = "index.html";

/// Whether a file's name carries a content hash (Vite puts every bundled
/// file under `assets/` with one), so it may be cached for good.
pub fn is_immutable(path: &str) -> bool {
    path.starts_with("assets/")
}
