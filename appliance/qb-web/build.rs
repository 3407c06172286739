//! Builds the dashboard (`web/`) into `$OUT_DIR/web`, which `Assets`
//! embeds. `npm ci` runs once when `web/node_modules` is missing (the npm
//! registry is reachable at build time; nothing is fetched at run time).
//! `QB_WEB_DIST=<dir>` embeds an already built dashboard instead (the
//! container build has a stage for it).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("web");
    println!("cargo:rerun-if-env-changed=QB_WEB_DIST");
    if let Ok(dist) = std::env::var("QB_WEB_DIST") {
        copy_dir(Path::new(&dist), &out);
        println!("cargo:rerun-if-changed={dist}");
        return;
    }
    // The manifest directory of this build, read when the script runs: a
    // script compiled for another checkout sharing the target directory
    // (CI reuses one across clones) must not build that checkout's web/.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("../../web");
    let web = web.canonicalize().expect("web/ next to appliance/");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
        "public",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    if !web.join("node_modules/.package-lock.json").exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web));
    }
    run(Command::new("npm")
        .args(["run", "build", "--silent"])
        .env("QB_WEB_OUT", &out)
        .current_dir(&web));
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (the dashboard build needs Node.js 20 and npm)")
    });
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
