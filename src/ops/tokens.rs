//! Tokens the back office hands out: a cardholder's for the phone API, an operator's for
//! `/admin/v1` and the console.

use super::{Operator, Ops, OpsError};
use crate::auth::JwtKeys;
use crate::domain::UserId;

/// Shortest and longest validity an issued token may have.
pub const MIN_TTL_SECS: i64 = 60;
pub const MAX_TTL_SECS: i64 = 30 * 86_400;

/// A cardholder's token; the cardholder must have a card.
pub async fn cardholder(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    ttl_secs: i64,
) -> Result<String, OpsError> {
    super::cards::show(ops, user).await?;
    let token = JwtKeys::new(ops.config.jwt_secret.expose())
        .issue_cardholder(user, ttl_secs.clamp(MIN_TTL_SECS, MAX_TTL_SECS))?;
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
    let token = JwtKeys::new(ops.config.jwt_secret.expose())
        .issue_admin(name, ttl_secs.clamp(MIN_TTL_SECS, MAX_TTL_SECS))?;
    ops.record(who, "token.admin", name.to_owned(), serde_json::json!({}))
        .await;
    Ok(token)
}
