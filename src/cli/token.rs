//! `campuspay admin token`: a cardholder's token for the phone API, or an operator's for
//! `/admin/v1`.

use super::{print, CliError};
use campuspay::auth::JwtKeys;
use campuspay::config::Config;
use campuspay::db::{self, admin};
use campuspay::domain::UserId;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    user: Option<UserId>,
    #[arg(long)]
    admin: Option<String>,
    /// Validity in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: i64,
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(
    args: TokenArgs,
    pool: db::Pool,
    config: Config,
) -> Result<ExitCode, CliError> {
    let TokenArgs {
        user,
        admin: operator,
        ttl,
        json,
    } = args;
    let keys = JwtKeys::new(config.jwt_secret.expose());
    let ttl = ttl.clamp(60, 30 * 86_400);
    let (token, who) = match (user, operator) {
        (Some(user), _) => {
            let u = user.clone();
            db::run(&pool, move |c| admin::card_show(c, &u)).await?;
            (
                keys.issue_cardholder(&user, ttl)?,
                serde_json::json!({"user_id": user}),
            )
        }
        (None, Some(name)) => (
            keys.issue_admin(&name, ttl)?,
            serde_json::json!({"admin": name}),
        ),
        (None, None) => return Err(CliError::Failed("give --user or --admin".into())),
    };
    print(
        json,
        &serde_json::json!({"for": who, "token": token}),
        |_| token.clone(),
    );
    Ok(ExitCode::SUCCESS)
}
