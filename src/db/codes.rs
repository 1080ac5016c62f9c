//! Payment-code storage for the TSM: only keyed hashes, never the codes.

use super::schema::*;
use super::DbError;
use crate::domain::{CardId, CardStatus, CodeState, Refusal, UserId};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

/// Stores a new batch for the user's card and supersedes its unused codes, atomically. A frozen
/// card gets no codes.
pub fn store_batch(
    conn: &mut PgConnection,
    user: &UserId,
    hashes: &[Vec<u8>],
    batch_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<Result<CardId, Refusal>, DbError> {
    conn.transaction(|conn| {
        let card: Option<(i64, CardStatus)> = cards::table
            .filter(cards::user_id.eq(user.as_str()))
            .select((cards::id, cards::status))
            .for_update()
            .first(conn)
            .optional()?;
        let card_id = match card {
            None => return Ok(Err(Refusal::NoCard(user.clone()))),
            Some((_, CardStatus::Frozen)) => return Ok(Err(Refusal::CardFrozen(user.clone()))),
            Some((id, CardStatus::Active)) => id,
        };
        diesel::update(
            payment_codes::table
                .filter(payment_codes::card_id.eq(card_id))
                .filter(payment_codes::state.eq(CodeState::Unused)),
        )
        .set(payment_codes::state.eq(CodeState::Superseded))
        .execute(conn)?;
        let rows: Vec<_> = hashes
            .iter()
            .map(|h| {
                (
                    payment_codes::code_hash.eq(h.as_slice()),
                    payment_codes::card_id.eq(card_id),
                    payment_codes::batch_id.eq(batch_id),
                    payment_codes::expires_at.eq(expires_at),
                )
            })
            .collect();
        diesel::insert_into(payment_codes::table)
            .values(&rows)
            .execute(conn)?;
        Ok(Ok(CardId(card_id)))
    })
}

/// The card's newest batch of payment codes as the phone may check it against the codes it
/// holds: which batch is current (a newer one supersedes the phone's), how many of its codes are
/// still usable, and until when. Never a code or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchSummary {
    pub batch_id: Uuid,
    pub unused: i64,
    pub expires_at: DateTime<Utc>,
}

/// The newest batch issued to `card` (`None`: never any).
pub fn newest_batch(
    conn: &mut PgConnection,
    card: CardId,
) -> Result<Option<BatchSummary>, DbError> {
    let newest: Option<(Uuid, DateTime<Utc>)> = payment_codes::table
        .filter(payment_codes::card_id.eq(card.0))
        .order(payment_codes::issued_at.desc())
        .select((payment_codes::batch_id, payment_codes::expires_at))
        .first(conn)
        .optional()?;
    let Some((batch_id, expires_at)) = newest else {
        return Ok(None);
    };
    let unused: i64 = payment_codes::table
        .filter(payment_codes::batch_id.eq(batch_id))
        .filter(payment_codes::state.eq(CodeState::Unused))
        .filter(payment_codes::expires_at.gt(diesel::dsl::now))
        .count()
        .get_result(conn)?;
    Ok(Some(BatchSummary {
        batch_id,
        unused,
        expires_at,
    }))
}
