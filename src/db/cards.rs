//! Card lifecycle: freeze (挂失) and unfreeze (解挂), limits, the payment PIN.

use super::schema::*;
use super::DbError;
use crate::domain::{Amount, UserId};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct FreezeOutcome {
    pub user_id: String,
    pub status: String,
    /// Unused payment codes revoked by this freeze.
    pub codes_revoked: usize,
}

/// Freezes a card and revokes its unused payment codes, atomically. Idempotent.
pub fn freeze(conn: &mut PgConnection, user: &UserId) -> Result<FreezeOutcome, DbError> {
    conn.transaction(|conn| {
        let card_id: i64 = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
            .set(cards::status.eq("frozen"))
            .returning(cards::id)
            .get_result(conn)
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("card of {user}")))?;
        let revoked = diesel::update(
            payment_codes::table
                .filter(payment_codes::card_id.eq(card_id))
                .filter(payment_codes::state.eq("unused")),
        )
        .set(payment_codes::state.eq("revoked"))
        .execute(conn)?;
        Ok(FreezeOutcome {
            user_id: user.to_string(),
            status: "frozen".into(),
            codes_revoked: revoked,
        })
    })
}

/// Unfreezes a card. Revoked codes stay revoked: the phone asks for a new batch.
pub fn unfreeze(conn: &mut PgConnection, user: &UserId) -> Result<FreezeOutcome, DbError> {
    let n = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
        .set(cards::status.eq("active"))
        .execute(conn)?;
    if n == 0 {
        return Err(DbError::NotFound(format!("card of {user}")));
    }
    Ok(FreezeOutcome {
        user_id: user.to_string(),
        status: "active".into(),
        codes_revoked: 0,
    })
}

/// The limits in force for a card: its own where set, else its identity's defaults.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct Limits {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub card_id: i64,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub per_txn_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub daily_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub password_free_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub has_pin: bool,
}

pub fn limits_of_cards(conn: &mut PgConnection, card_ids: &[i64]) -> Result<Vec<Limits>, DbError> {
    Ok(diesel::sql_query(
        "SELECT c.id AS card_id, \
                COALESCE(c.per_txn_limit, l.per_txn_limit) AS per_txn_limit, \
                COALESCE(c.daily_limit, l.daily_limit) AS daily_limit, \
                COALESCE(c.password_free_limit, l.password_free_limit) AS password_free_limit, \
                c.pin_hash IS NOT NULL AS has_pin \
         FROM cards c JOIN cardholders h ON h.user_id = c.user_id \
         JOIN identity_limits l ON l.identity = h.identity WHERE c.id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(card_ids)
    .load(conn)?)
}

pub fn limits_of_user(conn: &mut PgConnection, user: &UserId) -> Result<Limits, DbError> {
    let card_id: i64 = cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select(cards::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| DbError::NotFound(format!("card of {user}")))?;
    limits_of_cards(conn, &[card_id])?
        .pop()
        .ok_or_else(|| DbError::NotFound(format!("limits of {user}")))
}

/// Overrides a card's limits (`None` leaves a limit as it is).
pub fn set_limits(
    conn: &mut PgConnection,
    user: &UserId,
    per_txn: Option<Amount>,
    daily: Option<Amount>,
    password_free: Option<Amount>,
) -> Result<Limits, DbError> {
    conn.transaction(|conn| {
        let target = cards::table.filter(cards::user_id.eq(user.as_str()));
        if let Some(a) = per_txn {
            diesel::update(target)
                .set(cards::per_txn_limit.eq(a.value()))
                .execute(conn)?;
        }
        if let Some(a) = daily {
            diesel::update(target)
                .set(cards::daily_limit.eq(a.value()))
                .execute(conn)?;
        }
        if let Some(a) = password_free {
            diesel::update(target)
                .set(cards::password_free_limit.eq(a.value()))
                .execute(conn)?;
        }
        limits_of_user(conn, user)
    })
}

pub fn set_pin_hash(conn: &mut PgConnection, user: &UserId, hash: &[u8]) -> Result<(), DbError> {
    let n = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
        .set(cards::pin_hash.eq(hash))
        .execute(conn)?;
    if n == 0 {
        return Err(DbError::NotFound(format!("card of {user}")));
    }
    Ok(())
}

pub fn pin_hash_of(conn: &mut PgConnection, user: &UserId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select(cards::pin_hash)
        .first::<Option<Vec<u8>>>(conn)
        .optional()?
        .flatten())
}
