//! The binary finds libduckdb.so next to itself when installed
//! (`/usr/lib/quantbox` beside `/usr/bin`), or where it was linked from
//! during development.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/quantbox");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
