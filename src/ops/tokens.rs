//! Credentials the back office hands out: a cardholder's token for the phone API or a
//! one-time sign-in link for the wallet page, an operator's token for `/admin/v1` and the
//! console.

use super::{Operator, Ops, OpsError};
use crate::auth::{self, JwtKeys, Role};
use crate::db::{admin, sessions};
use crate::domain::session::link_ttl;
use crate::domain::{MerchantId, Refusal, SessionRole, SessionSecret, TerminalId, UserId};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

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

/// A one-time sign-in link: opening it in a browser and pressing the button starts a session.
/// Its secret is in the URL only; the database keeps a keyed hash.
/// A cardholder's link names `user_id`; a till's `merchant_id` and `terminal_id`.
#[derive(Debug, Clone, Serialize)]
pub struct SignInLink {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    pub role: &'static str,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A sign-in link for a cardholder's wallet (`/app`), valid for `ttl_secs` (default 15 min,
/// 60 s to a day) and once. Revoking the cardholder's tokens withdraws it too.
pub async fn cardholder_link(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    ttl_secs: Option<i64>,
) -> Result<SignInLink, OpsError> {
    let ttl = link_ttl(ttl_secs)?;
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = auth::session_hash(ops.config.keys.sessions.expose(), &secret);
    // Microseconds, as the database keeps it: the time printed is the time stored.
    let expires_at = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(ttl);
    let (u, creator) = (user.clone(), who.as_str().to_owned());
    ops.db(move |c| {
        let Some(version) = admin::cardholder_token_version(c, &u)? else {
            return Ok(Err(Refusal::NoCard(u.clone())));
        };
        sessions::create_link(
            c,
            sessions::NewLink {
                secret_hash: &hash,
                role: SessionRole::Cardholder,
                subject: u.as_str(),
                token_version: version,
                created_by: &creator,
                expires_at,
            },
        )?;
        Ok(Ok(()))
    })
    .await?;
    ops.record(
        who,
        "token.link",
        user.to_string(),
        serde_json::json!({ "role": SessionRole::Cardholder.as_str(), "expires_at": expires_at }),
    )
    .await;
    Ok(SignInLink {
        user_id: Some(user.to_string()),
        merchant_id: None,
        terminal_id: None,
        role: SessionRole::Cardholder.as_str(),
        url: format!("{}/signin/{}", ops.config.public_url, secret.expose()),
        expires_at,
    })
}

/// A sign-in link for a till's browser page (`/pos`): the session it starts is that terminal
/// and nothing else, for a shift (12 h). Valid once, for `ttl_secs` (default 15 min, 60 s to a
/// day). Rotating or removing the terminal withdraws it, and ends the sessions it started.
pub async fn terminal_link(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: &TerminalId,
    ttl_secs: Option<i64>,
) -> Result<SignInLink, OpsError> {
    let ttl = link_ttl(ttl_secs)?;
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = auth::session_hash(ops.config.keys.sessions.expose(), &secret);
    let expires_at = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(ttl);
    let subject = terminal_subject(m, t);
    let (mm, tt, s, creator) = (
        m.clone(),
        t.clone(),
        subject.clone(),
        who.as_str().to_owned(),
    );
    ops.db(move |c| {
        let Some(version) = admin::terminal_token_version(c, &mm, &tt)? else {
            return Ok(Err(Refusal::UnknownTerminal(mm.clone(), tt.clone())));
        };
        sessions::create_link(
            c,
            sessions::NewLink {
                secret_hash: &hash,
                role: SessionRole::Terminal,
                subject: &s,
                token_version: version,
                created_by: &creator,
                expires_at,
            },
        )?;
        Ok(Ok(()))
    })
    .await?;
    ops.record(
        who,
        "token.link",
        subject,
        serde_json::json!({ "role": SessionRole::Terminal.as_str(), "expires_at": expires_at }),
    )
    .await;
    Ok(SignInLink {
        user_id: None,
        merchant_id: Some(m.to_string()),
        terminal_id: Some(t.to_string()),
        role: SessionRole::Terminal.as_str(),
        url: format!("{}/signin/{}", ops.config.public_url, secret.expose()),
        expires_at,
    })
}

/// A till's session subject: `<merchant>/<terminal>` (ids never hold a `/`; `db::sessions`).
pub fn terminal_subject(m: &MerchantId, t: &TerminalId) -> String {
    format!("{m}/{t}")
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
