//! `campuspay admin token`: a cardholder's token for the phone API, or an operator's for
//! `/admin/v1`.

use super::{print, CliError};
use campuspay::domain::UserId;
use campuspay::ops::{self, Operator, Ops};
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    user: Option<UserId>,
    #[arg(long)]
    admin: Option<String>,
    /// With --user: revoke every token the cardholder holds (a lost phone) instead of issuing
    /// one.
    #[arg(long, requires = "user")]
    revoke: bool,
    /// Validity in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: i64,
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: TokenArgs, ops: &Ops, me: &Operator) -> Result<ExitCode, CliError> {
    let TokenArgs {
        user,
        admin: operator,
        revoke,
        ttl,
        json,
    } = args;
    if let (true, Some(user)) = (revoke, &user) {
        let version = ops::tokens::revoke_cardholder(ops, me, user).await?;
        print(
            json,
            &serde_json::json!({"user_id": user, "token_version": version}),
            |_| format!("every earlier token of {user} is revoked"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (token, who) = match (user, operator) {
        (Some(user), _) => (
            ops::tokens::cardholder(ops, me, &user, ttl).await?,
            serde_json::json!({"user_id": user}),
        ),
        (None, Some(name)) => (
            ops::tokens::operator(ops, me, &name, ttl).await?,
            serde_json::json!({"admin": name}),
        ),
        // clap requires one of the two: a usage error.
        (None, None) => return Ok(ExitCode::from(2)),
    };
    print(
        json,
        &serde_json::json!({"for": who, "token": token}),
        |_| token.clone(),
    );
    Ok(ExitCode::SUCCESS)
}
