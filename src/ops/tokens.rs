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
/// It names whom it signs in: a cardholder's `user_id`, a till's `merchant_id` and
/// `terminal_id`, or an `operator`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignInLink {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
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
    let u = user.clone();
    let version = ops
        .db(move |c| {
            Ok(admin::cardholder_token_version(c, &u)?.ok_or_else(|| Refusal::NoCard(u.clone())))
        })
        .await?;
    let link = make_link(
        ops,
        who,
        SessionRole::Cardholder,
        user.as_str(),
        version,
        ttl,
    )
    .await?;
    Ok(SignInLink {
        user_id: Some(user.to_string()),
        ..link
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
    let (mm, tt) = (m.clone(), t.clone());
    let version = ops
        .db(move |c| {
            Ok(admin::terminal_token_version(c, &mm, &tt)?
                .ok_or_else(|| Refusal::UnknownTerminal(mm.clone(), tt.clone())))
        })
        .await?;
    let subject = terminal_subject(m, t);
    let link = make_link(ops, who, SessionRole::Terminal, &subject, version, ttl).await?;
    Ok(SignInLink {
        merchant_id: Some(m.to_string()),
        terminal_id: Some(t.to_string()),
        ..link
    })
}

/// A till's session subject: `<merchant>/<terminal>` (ids never hold a `/`; `db::sessions`).
pub fn terminal_subject(m: &MerchantId, t: &TerminalId) -> String {
    format!("{m}/{t}")
}

/// A sign-in link for the operator console (`/console`) as operator `name`, valid for
/// `ttl_secs` (default 15 min, 60 s to a day) and once. The session it starts acts as
/// `admin:NAME`, as an admin token for that name does, and lasts a working day at most.
pub async fn operator_link(
    ops: &Ops,
    who: &Operator,
    name: &str,
    ttl_secs: Option<i64>,
) -> Result<SignInLink, OpsError> {
    let ttl = link_ttl(ttl_secs)?;
    if !valid_operator_name(name) {
        return Err(Refusal::InvalidName("an operator").into());
    }
    // Operators have no stored token version (`db::sessions::subject_version`).
    let link = make_link(ops, who, SessionRole::Admin, name, 0, ttl).await?;
    Ok(SignInLink {
        operator: Some(name.to_owned()),
        ..link
    })
}

/// An operator's name as a session subject: 1 to 100 characters, none of them a control
/// character (it is shown on pages and written on the operators' trail).
pub fn valid_operator_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=100).contains(&n) && !name.chars().any(char::is_control) && name.trim() == name
}

/// Stores a new link's keyed hash and returns its URL (the secret is in the URL only); the
/// caller fills in whom it names.
async fn make_link(
    ops: &Ops,
    who: &Operator,
    role: SessionRole,
    subject: &str,
    token_version: i32,
    ttl: i64,
) -> Result<SignInLink, OpsError> {
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = auth::session_hash(ops.config.keys.sessions.expose(), &secret);
    // Microseconds, as the database keeps it: the time printed is the time stored.
    let expires_at = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(ttl);
    let (s, creator) = (subject.to_owned(), who.as_str().to_owned());
    ops.db(move |c| {
        sessions::create_link(
            c,
            sessions::NewLink {
                secret_hash: &hash,
                role,
                subject: &s,
                token_version,
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
        subject.to_owned(),
        serde_json::json!({ "role": role.as_str(), "expires_at": expires_at }),
    )
    .await;
    // The caller names whom it signs in.
    Ok(SignInLink {
        role: role.as_str(),
        url: format!("{}/signin/{}", ops.config.public_url, secret.expose()),
        expires_at,
        ..SignInLink::default()
    })
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
