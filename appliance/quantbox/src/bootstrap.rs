//! First-start work that the seed's entrypoint script did: the data
//! directory, the signing secret, migrations, the first admin, and the
//! default maintenance schedules.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use qb_core::config::{Config, Environment};
use qb_core::model::{JobSpec, NewSchedule, Role};
use qb_core::{JobQueue, MetaStore, StoreError};
use rand::RngCore;
use tracing::{info, warn};

pub const SECRET_FILE: &str = "secret_key";
pub const ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// The plugin registry: the sandbox engine sized by `[plugins]`, compiled
/// artifacts cached under the data directory, uploads compiled in a child
/// process of this binary.
pub fn plugin_registry(
    c: &Config,
    meta: std::sync::Arc<dyn MetaStore>,
    metrics: &qb_core::metrics::Metrics,
) -> anyhow::Result<qb_plugin_host::registry::PluginRegistry> {
    use qb_plugin_host::{ArtifactCache, Compiler, Limits, PluginEngine};
    let engine = PluginEngine::new(Limits::from(&c.plugins))
        .map_err(anyhow::Error::msg)?
        .with_trap_counter(metrics.plugin_traps.clone());
    let cache = ArtifactCache::open(c.data_dir.join("cache").join("plugins"))
        .map_err(anyhow::Error::msg)?;
    let compiler = Compiler::Child {
        exe: std::env::current_exe().context("locating the quantbox binary")?,
        timeout: std::time::Duration::from_secs(c.plugins.compile_timeout_secs),
        memory_bytes: c.plugins.compile_memory_mib << 20,
    };
    Ok(
        qb_plugin_host::registry::PluginRegistry::new(meta, engine, cache, compiler)
            .with_max_compiles(c.plugins.max_compiles),
    )
}

pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    owner_only(dir).with_context(|| format!("restricting {} to its owner", dir.display()))
}

/// The data directory and everything in it readable by its owner only
/// (0700 directories, 0600 files), whoever created them and with whatever
/// umask: a directory made by an installer or an older version is
/// tightened at every start. Symbolic links are left alone.
fn owner_only(dir: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            owner_only(&path)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    Ok(())
}

/// Writes a file readable by its owner only, replacing any old one.
pub fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)?;
    Ok(())
}

pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The access-token signing secret: configured, or (outside production)
/// generated once and kept in the data directory with mode 0600.
pub fn signing_secret(c: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &c.secret_key {
        if c.env != Environment::Production
            && let Err(reason) = qb_core::config::check_secret_strength(s.expose())
        {
            warn!(%reason, "the configured secret_key would be refused in production");
        }
        return Ok(s.expose().as_bytes().to_vec());
    }
    if c.env == Environment::Production {
        bail!("secret_key is required in production");
    }
    let path = c.data_dir.join(SECRET_FILE);
    if let Ok(existing) = fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    write_private(&path, &random_secret(32))?;
    warn!(path = %path.display(), "no secret_key configured: generated one and stored it (mode 0600); set SECRET_KEY for production");
    Ok(fs::read_to_string(&path)?.trim().as_bytes().to_vec())
}

/// Creates user `admin` when no admin exists yet. Several nodes starting
/// at once on an empty cluster database race here: the unique user name
/// lets exactly one create it; the others find it taken and carry on.
pub async fn first_admin(c: &Config, meta: &dyn MetaStore) -> anyhow::Result<()> {
    if meta.count_admins().await? > 0 {
        return Ok(());
    }
    if c.cluster_mode() && c.admin_password.is_none() {
        bail!(
            "cluster mode with an empty database needs QUANTBOX_ADMIN_PASSWORD (or admin_password_file) for the first admin: a generated one would only be written to this node's disk"
        );
    }
    let (password, generated) = match &c.admin_password {
        Some(p) => (p.expose().to_string(), false),
        None => (random_secret(12), true),
    };
    if let Err(e) = qb_api::auth::password::check_policy("admin", &password) {
        bail!("admin_password {e}");
    }
    let hash = qb_api::auth::password::hash(&password).map_err(anyhow::Error::msg)?;
    match meta.create_user("admin", &hash, Role::Admin).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            info!("the first admin was created by another node");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    if generated {
        let path = c.data_dir.join(ADMIN_PASSWORD_FILE);
        write_private(&path, &format!("{password}\n"))?;
        // Shown once, on the first start only, so the operator can log in.
        warn!(
            username = "admin",
            password = %password,
            file = %path.display(),
            "created the first admin with a generated password (also written to the file, mode 0600); change it after logging in"
        );
    } else {
        info!(
            username = "admin",
            "created the first admin with the configured password"
        );
    }
    Ok(())
}

/// The maintenance schedules every box starts with.
pub async fn default_schedules(jobs: &dyn JobQueue) -> anyhow::Result<()> {
    let defaults = [
        ("store-checkpoint", "0 17 * * * *", "maintenance.checkpoint"),
        ("retention", "0 30 3 * * *", "maintenance.retention"),
        ("market-retention", "0 0 4 * * *", "market.retention"),
        ("trading-retention", "0 15 4 * * *", "trading.retention"),
    ];
    let existing = jobs.all_schedules().await?;
    for (name, cron, kind) in defaults {
        if existing.iter().any(|s| s.name == name) {
            continue;
        }
        // Another node starting at the same time may create it first.
        let created = jobs
            .create_schedule(NewSchedule {
                name: name.into(),
                cron: cron.into(),
                job: JobSpec {
                    kind: kind.into(),
                    queue: None,
                    params: serde_json::json!({}),
                },
                enabled: true,
            })
            .await;
        match created {
            Ok(_) => info!(schedule = name, cron, "created default schedule"),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
