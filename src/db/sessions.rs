//! Sign-in links and browser sessions (`domain::session`). Rows hold only keyed hashes of the
//! secrets (`auth::session_hash`); every "is it still good" question is answered against the
//! database's clock and the subject's current token version, so revoking a cardholder's tokens
//! (a lost phone) ends their sessions and their unused links at once.

use super::schema::{cardholders, sessions, sign_in_links, terminals};
use super::DbError;
use crate::domain::session::MAX_LIVE_SESSIONS;
use crate::domain::SessionRole;
use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::pg::PgConnection;
use diesel::prelude::*;

/// The subject's current token version; `None`: the subject does not exist (any more). A
/// cardholder's subject is the user id, a till's `<merchant>/<terminal>` (ids never hold a
/// `/`), an operator's the name. Operators have no stored version (their tokens expire within a week): always 0.
pub fn subject_version(
    conn: &mut PgConnection,
    role: SessionRole,
    subject: &str,
) -> Result<Option<i32>, DbError> {
    match role {
        SessionRole::Cardholder => Ok(cardholders::table
            .find(subject)
            .select(cardholders::token_version)
            .first(conn)
            .optional()?),
        SessionRole::Terminal => {
            let Some((m, t)) = subject.split_once('/') else {
                return Ok(None);
            };
            Ok(terminals::table
                .find((m, t))
                .filter(terminals::removed_at.is_null())
                .select(terminals::token_version)
                .first(conn)
                .optional()?)
        }
        SessionRole::Admin => Ok(Some(0)),
    }
}

pub struct NewLink<'a> {
    pub secret_hash: &'a [u8],
    pub role: SessionRole,
    pub subject: &'a str,
    pub token_version: i32,
    pub created_by: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new link, and deletes the links that expired (the table holds only live and
/// recently made links).
pub fn create_link(conn: &mut PgConnection, link: NewLink) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::delete(sign_in_links::table.filter(sign_in_links::expires_at.lt(now)))
            .execute(conn)?;
        diesel::insert_into(sign_in_links::table)
            .values((
                sign_in_links::secret_hash.eq(link.secret_hash),
                sign_in_links::role.eq(link.role),
                sign_in_links::subject.eq(link.subject),
                sign_in_links::token_version.eq(link.token_version),
                sign_in_links::created_by.eq(link.created_by),
                sign_in_links::expires_at.eq(link.expires_at),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Why a link does not sign anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("this sign-in link is not valid")]
    Unknown,
    #[error("this sign-in link was already used")]
    Used,
    #[error("this sign-in link has expired")]
    Expired,
    #[error("this sign-in link was withdrawn")]
    Revoked,
}

/// A link that still signs its subject in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLink {
    pub role: SessionRole,
    pub subject: String,
    pub expires_at: DateTime<Utc>,
}

type LinkRow = (
    SessionRole,
    String,
    i32,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bool,
);

/// What a link would do, without using it (the page a `GET` of the link shows; link previewers
/// fetch it too).
pub fn peek_link(
    conn: &mut PgConnection,
    secret_hash: &[u8],
) -> Result<Result<LiveLink, LinkProblem>, DbError> {
    let row: Option<LinkRow> = sign_in_links::table
        .find(secret_hash)
        .select((
            sign_in_links::role,
            sign_in_links::subject,
            sign_in_links::token_version,
            sign_in_links::expires_at,
            sign_in_links::used_at,
            sign_in_links::expires_at.gt(now),
        ))
        .first(conn)
        .optional()?;
    let Some((role, subject, version, expires_at, used_at, live)) = row else {
        return Ok(Err(LinkProblem::Unknown));
    };
    if used_at.is_some() {
        return Ok(Err(LinkProblem::Used));
    }
    if !live {
        return Ok(Err(LinkProblem::Expired));
    }
    if subject_version(conn, role, &subject)? != Some(version) {
        return Ok(Err(LinkProblem::Revoked));
    }
    Ok(Ok(LiveLink {
        role,
        subject,
        expires_at,
    }))
}

/// A session as the pages see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub role: SessionRole,
    pub subject: String,
    /// The subject's token version, current when the session was found (a till's page acts
    /// with a token of this version).
    pub token_version: i32,
    pub expires_at: DateTime<Utc>,
}

/// Uses a link (once: the first redemption marks it used, in one conditional update) and starts
/// a session stored under `session_hash`. Ends the subject's oldest live sessions beyond
/// `MAX_LIVE_SESSIONS`, and deletes sessions that are over.
pub fn redeem_link(
    conn: &mut PgConnection,
    link_hash: &[u8],
    session_hash: &[u8],
) -> Result<Result<LiveSession, LinkProblem>, DbError> {
    conn.transaction(|conn| {
        let claimed: Option<(SessionRole, String, i32)> = diesel::update(
            sign_in_links::table
                .find(link_hash)
                .filter(sign_in_links::used_at.is_null())
                .filter(sign_in_links::expires_at.gt(now)),
        )
        .set(sign_in_links::used_at.eq(now))
        .returning((
            sign_in_links::role,
            sign_in_links::subject,
            sign_in_links::token_version,
        ))
        .get_result(conn)
        .optional()?;
        let Some((role, subject, version)) = claimed else {
            // Why not: the same answers the page gave (the row is unchanged).
            return Ok(Err(peek_link(conn, link_hash)?
                .err()
                .unwrap_or(LinkProblem::Used)));
        };
        // The link stays used: a withdrawn link must not work later either.
        if subject_version(conn, role, &subject)? != Some(version) {
            return Ok(Err(LinkProblem::Revoked));
        }
        let expires_at = Utc::now() + chrono::Duration::seconds(role.lifetime_secs());
        diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(session_hash),
                sessions::role.eq(role),
                sessions::subject.eq(&subject),
                sessions::token_version.eq(version),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
        let live: Vec<Vec<u8>> = sessions::table
            .filter(sessions::role.eq(role))
            .filter(sessions::subject.eq(&subject))
            .filter(sessions::revoked_at.is_null())
            .order((sessions::created_at.desc(), sessions::id_hash))
            .select(sessions::id_hash)
            .load(conn)?;
        let extra: Vec<&Vec<u8>> = live.iter().skip(MAX_LIVE_SESSIONS).collect();
        if !extra.is_empty() {
            diesel::update(sessions::table.filter(sessions::id_hash.eq_any(extra)))
                .set(sessions::revoked_at.eq(now))
                .execute(conn)?;
        }
        diesel::delete(sessions::table.filter(sessions::expires_at.lt(now))).execute(conn)?;
        Ok(Ok(LiveSession {
            role,
            subject,
            token_version: version,
            expires_at,
        }))
    })
}

/// The live session stored under `session_hash`: not signed out or revoked, not expired, and
/// of its subject's current token version.
pub fn find_session(
    conn: &mut PgConnection,
    session_hash: &[u8],
) -> Result<Option<LiveSession>, DbError> {
    let row: Option<(SessionRole, String, i32, DateTime<Utc>)> = sessions::table
        .find(session_hash)
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .select((
            sessions::role,
            sessions::subject,
            sessions::token_version,
            sessions::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((role, subject, version, expires_at)) = row else {
        return Ok(None);
    };
    if subject_version(conn, role, &subject)? != Some(version) {
        return Ok(None);
    }
    Ok(Some(LiveSession {
        role,
        subject,
        token_version: version,
        expires_at,
    }))
}

/// Sign-out: the session is over at once. Whether it was live.
pub fn end_session(conn: &mut PgConnection, session_hash: &[u8]) -> Result<bool, DbError> {
    let n = diesel::update(
        sessions::table
            .find(session_hash)
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

/// Ends every live session of a subject (the token version bump already makes them dead; this
/// records when). How many there were.
pub fn end_sessions_of(
    conn: &mut PgConnection,
    role: SessionRole,
    subject: &str,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::role.eq(role))
            .filter(sessions::subject.eq(subject))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .execute(conn)?)
}
