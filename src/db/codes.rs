//! Payment-code storage for the TSM: only keyed hashes, never the codes.

use super::schema::*;
use super::DbError;
use crate::domain::UserId;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

/// Stores a new batch for the user's card and supersedes its unused codes, atomically.
pub fn store_batch(
    conn: &mut PgConnection,
    user: &UserId,
    hashes: &[Vec<u8>],
    batch_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<i64, DbError> {
    conn.transaction(|conn| {
        let (card_id, status): (i64, String) = cards::table
            .filter(cards::user_id.eq(user.as_str()))
            .select((cards::id, cards::status))
            .for_update()
            .first(conn)
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("card of {user}")))?;
        if status != "active" {
            return Err(DbError::Rejected(format!("the card of {user} is {status}")));
        }
        diesel::update(
            payment_codes::table
                .filter(payment_codes::card_id.eq(card_id))
                .filter(payment_codes::state.eq("unused")),
        )
        .set(payment_codes::state.eq("superseded"))
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
        Ok(card_id)
    })
}
