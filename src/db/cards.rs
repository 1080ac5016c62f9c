//! Card lifecycle: freeze (挂失) and unfreeze (解挂), limits, the payment PIN.

use super::schema::*;
use super::{money, DbError};
use crate::domain::pin::{self, PinAttempt, PinState};
use crate::domain::{Amount, CardId, CardLimits, CardStatus, CodeState, Refusal, UserId};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct FreezeOutcome {
    pub user_id: String,
    pub status: CardStatus,
    /// Unused payment codes revoked by this freeze.
    pub codes_revoked: usize,
}

/// Freezes a card and revokes its unused payment codes, atomically. Idempotent.
pub fn freeze(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<FreezeOutcome, Refusal>, DbError> {
    conn.transaction(|conn| {
        let card_id: Option<i64> =
            diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
                .set(cards::status.eq(CardStatus::Frozen))
                .returning(cards::id)
                .get_result(conn)
                .optional()?;
        let Some(card_id) = card_id else {
            return Ok(Err(Refusal::NoCard(user.clone())));
        };
        let revoked = diesel::update(
            payment_codes::table
                .filter(payment_codes::card_id.eq(card_id))
                .filter(payment_codes::state.eq(CodeState::Unused)),
        )
        .set(payment_codes::state.eq(CodeState::Revoked))
        .execute(conn)?;
        Ok(Ok(FreezeOutcome {
            user_id: user.to_string(),
            status: CardStatus::Frozen,
            codes_revoked: revoked,
        }))
    })
}

/// Unfreezes a card. Revoked codes stay revoked: the phone asks for a new batch.
pub fn unfreeze(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<FreezeOutcome, Refusal>, DbError> {
    let n = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
        .set(cards::status.eq(CardStatus::Active))
        .execute(conn)?;
    if n == 0 {
        return Ok(Err(Refusal::NoCard(user.clone())));
    }
    Ok(Ok(FreezeOutcome {
        user_id: user.to_string(),
        status: CardStatus::Active,
        codes_revoked: 0,
    }))
}

/// A card's limits as stored: its own where set, else its identity's defaults; with what
/// settlement needs to find the card's account.
#[derive(Debug, Clone, QueryableByName)]
pub struct LimitsRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub card_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub account_id: i64,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub per_txn_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub daily_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub password_free_limit: Decimal,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub has_pin: bool,
}

impl LimitsRow {
    pub fn limits(&self) -> CardLimits {
        CardLimits {
            per_txn: money(self.per_txn_limit),
            daily: money(self.daily_limit),
            password_free: money(self.password_free_limit),
        }
    }
}

/// What `admin card limits` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub card_id: i64,
    pub per_txn_limit: Money,
    pub daily_limit: Money,
    pub password_free_limit: Money,
    pub has_pin: bool,
}

use crate::domain::Money;

impl From<&LimitsRow> for Limits {
    fn from(r: &LimitsRow) -> Limits {
        Limits {
            card_id: r.card_id,
            per_txn_limit: money(r.per_txn_limit),
            daily_limit: money(r.daily_limit),
            password_free_limit: money(r.password_free_limit),
            has_pin: r.has_pin,
        }
    }
}

/// The columns of a `LimitsRow`: a card's own limits, else its identity's. Used with
/// `LIMITS_FROM`, here and by settlement (which reads the day's spending beside them).
pub(super) const LIMITS_COLUMNS: &str = "c.id AS card_id, c.account_id, \
    COALESCE(c.per_txn_limit, l.per_txn_limit) AS per_txn_limit, \
    COALESCE(c.daily_limit, l.daily_limit) AS daily_limit, \
    COALESCE(c.password_free_limit, l.password_free_limit) AS password_free_limit, \
    c.pin_hash IS NOT NULL AS has_pin";
/// Cards (`c`) with their cardholder's identity limits (`l`).
pub(super) const LIMITS_FROM: &str = "cards c JOIN cardholders h ON h.user_id = c.user_id \
    JOIN identity_limits l ON l.identity = h.identity";

pub fn limits_of_cards(
    conn: &mut PgConnection,
    card_ids: &[CardId],
) -> Result<Vec<LimitsRow>, DbError> {
    let ids: Vec<i64> = card_ids.iter().map(|c| c.0).collect();
    Ok(diesel::sql_query(format!(
        "SELECT {LIMITS_COLUMNS} FROM {LIMITS_FROM} WHERE c.id = ANY($1)"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(ids)
    .load(conn)?)
}

pub fn card_of(conn: &mut PgConnection, user: &UserId) -> Result<Option<CardId>, DbError> {
    Ok(cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select(cards::id)
        .first::<i64>(conn)
        .optional()?
        .map(CardId))
}

pub fn limits_of_user(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<Limits, Refusal>, DbError> {
    let Some(card) = card_of(conn, user)? else {
        return Ok(Err(Refusal::NoCard(user.clone())));
    };
    Ok(limits_of_cards(conn, &[card])?
        .first()
        .map(Limits::from)
        .ok_or_else(|| Refusal::NoCard(user.clone())))
}

/// Overrides a card's limits (`None` leaves a limit as it is).
pub fn set_limits(
    conn: &mut PgConnection,
    user: &UserId,
    per_txn: Option<Amount>,
    daily: Option<Amount>,
    password_free: Option<Amount>,
) -> Result<Result<Limits, Refusal>, DbError> {
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

/// Sets a new PIN (stored as its keyed hash); a lock and the count of wrong PINs go with the
/// old one.
pub fn set_pin_hash(
    conn: &mut PgConnection,
    user: &UserId,
    hash: &[u8],
) -> Result<Result<(), Refusal>, DbError> {
    let n = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
        .set((
            cards::pin_hash.eq(hash),
            cards::pin_failures.eq(0),
            cards::pin_locks.eq(0),
            cards::pin_locked_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)?;
    if n == 0 {
        return Ok(Err(Refusal::NoCard(user.clone())));
    }
    Ok(Ok(()))
}

pub fn pin_hash_of(conn: &mut PgConnection, user: &UserId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select(cards::pin_hash)
        .first::<Option<Vec<u8>>>(conn)
        .optional()?
        .flatten())
}

/// What a PIN attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    Checked(PinAttempt),
    /// The card has no PIN: nothing to check, nothing counted.
    NotSet,
}

/// Checks `given` (the keyed hash of the PIN typed) against the card's PIN and counts the
/// attempt (`domain::pin`), with the card row locked so that concurrent attempts count one by
/// one. Must run inside the caller's transaction, which must commit for the count to stick
/// (even when the attempt failed). `None`: no card.
pub fn attempt_pin(
    conn: &mut PgConnection,
    user: &UserId,
    given: &[u8],
) -> Result<Option<PinOutcome>, DbError> {
    type Row = (i64, Option<Vec<u8>>, i32, i32, Option<DateTime<Utc>>);
    let row: Option<Row> = cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select((
            cards::id,
            cards::pin_hash,
            cards::pin_failures,
            cards::pin_locks,
            cards::pin_locked_until,
        ))
        .for_update()
        .first(conn)
        .optional()?;
    let Some((card_id, stored, failures, locks, locked_until)) = row else {
        return Ok(None);
    };
    let Some(stored) = stored else {
        return Ok(Some(PinOutcome::NotSet));
    };
    let state = PinState {
        failures,
        locks,
        locked_until,
    };
    // Keyed hashes of equal length: a constant-time comparison costs nothing here.
    let correct = stored.len() == given.len()
        && stored
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    let (verdict, next) = pin::attempt(state, correct, crate::messages::now_micros());
    if next != state {
        diesel::update(cards::table.find(card_id))
            .set((
                cards::pin_failures.eq(next.failures),
                cards::pin_locks.eq(next.locks),
                cards::pin_locked_until.eq(next.locked_until),
            ))
            .execute(conn)?;
    }
    Ok(Some(PinOutcome::Checked(verdict)))
}

/// Lifts a PIN lock and clears the count of wrong PINs (an operator, after checking who asks).
pub fn unlock_pin(conn: &mut PgConnection, user: &UserId) -> Result<Result<(), Refusal>, DbError> {
    let n = diesel::update(cards::table.filter(cards::user_id.eq(user.as_str())))
        .set((
            cards::pin_failures.eq(0),
            cards::pin_locks.eq(0),
            cards::pin_locked_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)?;
    if n == 0 {
        return Ok(Err(Refusal::NoCard(user.clone())));
    }
    Ok(Ok(()))
}
