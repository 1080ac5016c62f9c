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
