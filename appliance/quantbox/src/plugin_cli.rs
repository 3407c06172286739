//! `quantbox plugin ...`: scaffold, build and check strategy plugins, and
//! the hidden compile step the server runs in a child process.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use clap::Subcommand;
use qb_plugin_host::{
    Inert, Limits, Plugin, PluginEngine, check_claim, claimed_name, componentize,
};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a strategy project NAME (Rust) with a copy of the SDK this
    /// quantbox speaks; build it with `quantbox plugin build NAME`.
    New {
        name: String,
        /// Parent directory (default: the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a strategy project into an uploadable component and check it
    /// as the server would.
    Build {
        /// Project directory (default: the current one).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output file (default: DIR/<crate>.wasm).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check a component as an upload would be: size, format, imports,
    /// instantiation and `describe`.
    Check { file: PathBuf },
    /// Compile one component (run by the server in a child process).
    #[command(hide = true)]
    CompileChild { job: String },
}

/// The SDK crate, embedded so every scaffold matches this binary's interface.
#[derive(rust_embed::Embed)]
#[folder = "../../plugin-sdk/"]
#[include = "Cargo.toml"]
#[include = "README.md"]
#[include = "src/**/*.rs"]
#[include = "wit/*.wit"]
struct SdkFiles;

const CARGO_TEMPLATE: &str = include_str!("plugin_template/Cargo.toml.tmpl");
const LIB_TEMPLATE: &str = include_str!("plugin_template/lib.rs.tmpl");

pub fn run(cmd: PluginCommand, limits: Limits) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New { name, dir } => {
            let parent = dir.unwrap_or_else(|| PathBuf::from("."));
            scaffold(&name, &parent.join(&name))?;
            println!(
                "created {}; build it with: quantbox plugin build {}",
                parent.join(&name).display(),
                parent.join(&name).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { dir, output } => {
            let core = cargo_build(&dir)?;
            let bytes = std::fs::read(&core).with_context(|| core.display().to_string())?;
            let component = componentize(&bytes)?;
            let stem = core
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("plugin");
            let out = output.unwrap_or_else(|| dir.join(format!("{stem}.wasm")));
            std::fs::write(&out, &component).with_context(|| out.display().to_string())?;
            check(&component, limits)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Check { file } => {
            let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
            match check(&bytes, limits) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("{}: {e:#}", file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        PluginCommand::CompileChild { job } => {
            let job: qb_plugin_host::compile::ChildJob =
                serde_json::from_str(&job).context("reading the compile job")?;
            match qb_plugin_host::compile::run_child(&job) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err((code, msg)) => {
                    eprintln!("{msg}");
                    Ok(ExitCode::from(code as u8))
                }
            }
        }
    }
}

/// A crate name: what cargo accepts and the registry keeps.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

fn scaffold(name: &str, dir: &Path) -> anyhow::Result<()> {
    if !valid_name(name) {
        bail!(
            "{name:?} is not a valid strategy name: lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
    };
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO_TEMPLATE))?;
    std::fs::write(dir.join("src/lib.rs"), fill(LIB_TEMPLATE))?;
    std::fs::write(dir.join(".gitignore"), "/target\n*.wasm\n")?;
    for file in SdkFiles::iter() {
        let path = dir.join("quantbox-sdk").join(file.as_ref());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let content = SdkFiles::get(&file).context("embedded SDK file")?;
        std::fs::write(&path, content.data.as_ref())?;
    }
    Ok(())
}

/// `cargo build` for wasm32-unknown-unknown; the core module it produced.
fn cargo_build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} has no Cargo.toml", dir.display());
    }
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo (is the Rust toolchain installed, with `rustup target add wasm32-unknown-unknown`?)")?;
    if !out.status.success() {
        bail!("cargo build failed");
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_cdylib = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        let manifest_matches = msg["manifest_path"]
            .as_str()
            .is_some_and(|m| Path::new(m).canonicalize().ok() == manifest.canonicalize().ok());
        if msg["reason"] == "compiler-artifact" && is_cdylib && manifest_matches {
            found = msg["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from);
        }
    }
    found.context("cargo built no .wasm library: is `crate-type` [\"cdylib\"] set?")
}

/// Compiles, checks imports, instantiates and describes, like an upload.
fn check(bytes: &[u8], limits: Limits) -> anyhow::Result<()> {
    let engine = PluginEngine::new(limits)?;
    let plugin = Plugin::compile(&engine, bytes)?;
    let inst = plugin.instantiate(Inert, 0)?;
    let info = inst.info();
    check_claim(claimed_name(bytes).as_ref(), info)?;
    println!("{} {}: {}", info.name, info.version, info.description);
    for p in &info.params {
        println!(
            "  {} ({:?}) default {} range [{}, {}]: {}",
            p.name,
            p.type_,
            p.default,
            p.min.map_or("-inf".into(), |v| v.to_string()),
            p.max.map_or("inf".into(), |v| v.to_string()),
            p.description
        );
    }
    println!("sha256 {}  {} bytes", plugin.sha256(), plugin.size());
    Ok(())
}
