//! The binary finds libduckdb.so next to itself when installed
//! (`/usr/lib/quantbox` beside `/usr/bin`), or where it was linked from
//! during development.
//! Package builds (`QB_PACKAGE_BUILD=1`) get only the installed path.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=QB_PACKAGE_BUILD");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/quantbox");
    let package = std::env::var("QB_PACKAGE_BUILD").is_ok_and(|v| v == "1");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR")
        && !package
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
