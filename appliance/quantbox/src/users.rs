//! `quantbox user ...`: user management from the shell, on the same store
//! the server uses (safe while it runs: SQLite WAL).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::bail;
use qb_core::config::Config;
use qb_core::model::{PageRequest, Role, UserUpdate};

use crate::cli::UserCommand;

fn read_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        return Ok((pw, false));
    }
    Ok((crate::bootstrap::random_secret(12), true))
}

pub fn run(config: &Config, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    crate::bootstrap::ensure_data_dir(&config.data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let db = qb_stores::open_meta(config).await?;
        match cmd {
            UserCommand::Add {
                username,
                role,
                password_stdin,
            } => {
                qb_api::routes::users::check_username(&username)
                    .map_err(|e| anyhow::anyhow!("username {e}"))?;
                let role: Role = role.parse().map_err(anyhow::Error::msg)?;
                let (password, generated) = read_password(password_stdin)?;
                if let Err(e) = qb_api::auth::password::check_policy(&username, &password) {
                    bail!("password {e}");
                }
                let hash = qb_api::auth::password::hash(&password).map_err(anyhow::Error::msg)?;
                let user = db.create_user(&username, &hash, role).await?;
                println!("created user {} ({})", user.username, user.role);
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::Passwd {
                username,
                password_stdin,
            } => {
                let (password, generated) = read_password(password_stdin)?;
                if let Err(e) = qb_api::auth::password::check_policy(&username, &password) {
                    bail!("password {e}");
                }
                let hash = qb_api::auth::password::hash(&password).map_err(anyhow::Error::msg)?;
                let user = db
                    .update_user(
                        &username,
                        UserUpdate {
                            password_hash: Some(hash),
                            ..Default::default()
                        },
                    )
                    .await?;
                db.revoke_user_refresh_tokens(user.id).await?;
                println!(
                    "password of {} changed; their sessions were revoked",
                    user.username
                );
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::List => {
                let mut page = 1;
                println!(
                    "{:<6} {:<24} {:<8} {:<9} created",
                    "id", "username", "role", "status"
                );
                loop {
                    let p = db
                        .list_users(PageRequest {
                            page,
                            page_size: 100,
                        })
                        .await?;
                    for u in &p.items {
                        println!(
                            "{:<6} {:<24} {:<8} {:<9} {}",
                            u.id,
                            u.username,
                            u.role,
                            if u.disabled { "disabled" } else { "active" },
                            u.created_at.to_rfc3339()
                        );
                    }
                    if u64::from(page) * 100 >= p.total {
                        break;
                    }
                    page += 1;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
