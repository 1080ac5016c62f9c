//! Tokens the back office hands out: a cardholder's for the phone API, an operator's for
//! `/admin/v1` and the console.

use super::{Operator, Ops, OpsError};
use crate::auth::{JwtKeys, Role};
use crate::db::admin;
use crate::domain::{Refusal, UserId};

/// Shortest validity an issued token may have (the longest is the role's, `auth::Role`).
pub const MIN_TTL_SECS: i64 = 60;

/// A cardholder's token; the cardholder must have a card.
pub async fn cardholder(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    ttl_secs: i64,
) -> Result<String, OpsError> {
    super::cards::show(ops, user).await?;
    let u = user.clone();
    let version = ops
        .db(move |c| {
            Ok(admin::cardholder_token_version(c, &u)?.ok_or_else(|| Refusal::NoCard(u.clone())))
        })
        .await?;
    let token = JwtKeys::new(&ops.config.keys).issue_cardholder(
        user,
        ttl_secs.clamp(MIN_TTL_SECS, Role::Cardholder.max_lifetime_secs()),
        version,
    )?;
    ops.record(
        who,
        "token.cardholder",
        user.to_string(),
        serde_json::json!({}),
    )
    .await;
    Ok(token)
}

/// An operator's token for `/admin/v1`.
pub async fn operator(
    ops: &Ops,
    who: &Operator,
    name: &str,
    ttl_secs: i64,
) -> Result<String, OpsError> {
    let token = JwtKeys::new(&ops.config.keys).issue_admin(
        name,
        ttl_secs.clamp(MIN_TTL_SECS, Role::Admin.max_lifetime_secs()),
    )?;
    ops.record(who, "token.admin", name.to_owned(), serde_json::json!({}))
        .await;
    Ok(token)
}

/// Revokes every token a cardholder holds (a lost or stolen phone): they must sign in again.
pub async fn revoke_cardholder(ops: &Ops, who: &Operator, user: &UserId) -> Result<i32, OpsError> {
    let u = user.clone();
    let version = ops
        .db(move |c| admin::revoke_cardholder_tokens(c, &u))
        .await?;
    ops.record(
        who,
        "token.revoke",
        user.to_string(),
        serde_json::json!({ "token_version": version }),
    )
    .await;
    Ok(version)
}

/// A token for a live terminal at its current version (for the tools that act as a till with
/// the pipeline's own broker user; a real terminal gets its token from `add_terminal` or
/// `rotate_terminal`).
pub async fn terminal(
    ops: &Ops,
    m: &crate::domain::MerchantId,
    t: &crate::domain::TerminalId,
) -> Result<String, OpsError> {
    let (mm, tt) = (m.clone(), t.clone());
    let version = ops
        .db(move |c| {
            Ok(admin::terminal_token_version(c, &mm, &tt)?
                .ok_or_else(|| Refusal::UnknownTerminal(mm.clone(), tt.clone())))
        })
        .await?;
    Ok(JwtKeys::new(&ops.config.keys).issue_terminal(m, t, version)?)
}
