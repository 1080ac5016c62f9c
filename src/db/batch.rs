//! Set-based statements for the pipeline's repository: each applies one change to many rows in
//! one round trip, with the rows passed as arrays and joined through `unnest`. One statement per
//! batch instead of one per payment is what lets a stage keep up (docs/PERFORMANCE.md).
//!
//! Every statement here runs inside the caller's transaction. Where it takes row locks, the
//! caller passes ids in a fixed order (or locks them first with `lock_accounts`), so that two
//! batches touching the same rows wait for each other instead of deadlocking.

use super::DbError;
use crate::domain::{CardStatus, CodeState, DeclineReason, Money, TxState};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Binary, Nullable, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;
use std::collections::HashSet;
use uuid::Uuid;

/// Rows per statement. PostgreSQL takes at most 65,535 bind parameters per statement, and a
/// multi-row INSERT binds one per column per row; arrays count as one, but a bounded chunk also
/// bounds how long one statement holds its locks.
pub const ROWS_PER_STATEMENT: usize = 1_000;

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// One payment code a new order wants to consume.
pub struct CodeClaim<'a> {
    pub hash: &'a [u8],
    pub card_id: i64,
    pub transaction_id: Uuid,
}

/// Marks the claimed codes used by their transactions, if each is still unused, unexpired and
/// the card's, and the card is active; returns the transactions that got their code. The row
/// lock this takes is what makes two scans of one code resolve to exactly one winner: the
/// loser's UPDATE waits, then finds the code used. Two claims of one code in the same batch
/// also yield one winner. The card's status is read in the same statement (not locked, as the
/// separate read it replaces did not lock it either); a claim that lost says why in
/// `lost_claims`.
pub fn consume_codes(
    conn: &mut PgConnection,
    claims: &[CodeClaim<'_>],
    at: DateTime<Utc>,
) -> Result<HashSet<Uuid>, DbError> {
    let mut won = HashSet::with_capacity(claims.len());
    for chunk in claims.chunks(ROWS_PER_STATEMENT) {
        let hashes: Vec<&[u8]> = chunk.iter().map(|c| c.hash).collect();
        let cards: Vec<i64> = chunk.iter().map(|c| c.card_id).collect();
        let txs: Vec<Uuid> = chunk.iter().map(|c| c.transaction_id).collect();
        let rows: Vec<IdRow> = diesel::sql_query(
            "UPDATE payment_codes p \
             SET state = $5, used_at = $4, transaction_id = v.tx \
             FROM unnest($1::bytea[], $2::int8[], $3::uuid[]) AS v(hash, card, tx) \
             WHERE p.code_hash = v.hash AND p.card_id = v.card \
               AND p.state = $6 AND p.expires_at > $4 \
               AND EXISTS (SELECT 1 FROM cards c WHERE c.id = v.card AND c.status = $7) \
             RETURNING p.transaction_id AS id",
        )
        .bind::<Array<Binary>, _>(hashes)
        .bind::<Array<BigInt>, _>(cards)
        .bind::<Array<diesel::sql_types::Uuid>, _>(txs)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(CodeState::Used)
        .bind::<Text, _>(CodeState::Unused)
        .bind::<Text, _>(CardStatus::Active)
        .load(conn)?;
        won.extend(rows.into_iter().map(|r| r.id));
    }
    Ok(won)
}

/// Declines the transactions that are still `created`, each with its reason.
pub fn decline_rows(
    conn: &mut PgConnection,
    declines: &[(Uuid, DeclineReason)],
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    for chunk in declines.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<Uuid> = chunk.iter().map(|d| d.0).collect();
        let reasons: Vec<DeclineReason> = chunk.iter().map(|d| d.1).collect();
        diesel::sql_query(
            "UPDATE transactions t \
             SET state = $4, reason = v.reason, processed_at = $3 \
             FROM unnest($1::uuid[], $2::text[]) AS v(id, reason) \
             WHERE t.id = v.id AND t.state = $5",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Text>, _>(reasons)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(TxState::Declined)
        .bind::<Text, _>(TxState::Created)
        .execute(conn)?;
    }
    Ok(())
}

/// Finishes transactions awaiting confirmation (locked by the caller, who saw them so): declined
/// with the reason each was given (`user_declined`, `confirmation_timeout`).
pub fn finish_awaiting_rows(
    conn: &mut PgConnection,
    declines: &[(Uuid, DeclineReason)],
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    for chunk in declines.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<Uuid> = chunk.iter().map(|d| d.0).collect();
        let reasons: Vec<DeclineReason> = chunk.iter().map(|d| d.1).collect();
        let updated = diesel::sql_query(
            "UPDATE transactions t \
             SET state = $4, reason = v.reason, processed_at = $3 \
             FROM unnest($1::uuid[], $2::text[]) AS v(id, reason) \
             WHERE t.id = v.id AND t.state = $5",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Text>, _>(reasons)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(TxState::Declined)
        .bind::<Text, _>(TxState::AwaitingConfirmation)
        .execute(conn)?;
        if updated != chunk.len() {
            return Err(DbError::Invariant(format!(
                "finished {updated} of {} confirmations",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Parks transactions (locked by the caller and still `created`) until their cardholder
/// confirms them: `awaiting_confirmation`, reason `user_confirming`, each with its deadline.
/// `processed_at` is when the pending answer was given, so a re-sent one is the same.
pub fn await_rows(
    conn: &mut PgConnection,
    parked: &[(Uuid, DateTime<Utc>)],
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    for chunk in parked.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<Uuid> = chunk.iter().map(|a| a.0).collect();
        let deadlines: Vec<DateTime<Utc>> = chunk.iter().map(|a| a.1).collect();
        let updated = diesel::sql_query(
            "UPDATE transactions t \
             SET state = $4, reason = $5, processed_at = $3, confirm_deadline = v.deadline \
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, deadline) \
             WHERE t.id = v.id AND t.state = $6",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Timestamptz>, _>(deadlines)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(TxState::AwaitingConfirmation)
        .bind::<Text, _>(DeclineReason::UserConfirming)
        .bind::<Text, _>(TxState::Created)
        .execute(conn)?;
        if updated != chunk.len() {
            return Err(DbError::Invariant(format!(
                "parked {updated} of {} transactions for confirmation",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Approves transactions (locked by the caller and still `created`) with the card balance each
/// left behind.
pub fn approve_rows(
    conn: &mut PgConnection,
    approvals: &[(Uuid, Money)],
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    for chunk in approvals.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<Uuid> = chunk.iter().map(|a| a.0).collect();
        let balances: Vec<Decimal> = chunk.iter().map(|a| a.1.value()).collect();
        let updated = diesel::sql_query(
            "UPDATE transactions t \
             SET state = $4, balance_after = v.balance, processed_at = $3 \
             FROM unnest($1::uuid[], $2::numeric[]) AS v(id, balance) \
             WHERE t.id = v.id AND t.state = $5",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Numeric>, _>(balances)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(TxState::Approved)
        .bind::<Text, _>(TxState::Created)
        .execute(conn)?;
        // The caller holds these rows locked and saw them `created`: anything else is a bug,
        // and committing postings for a transaction that is not approved would be worse.
        if updated != chunk.len() {
            return Err(DbError::Invariant(format!(
                "approved {updated} of {} transactions",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Stores each transaction's fee and rule unless it has one already; returns the transactions
/// it stored a fee for. A transaction listed twice (a request sent twice within one batch) is
/// written once.
pub fn set_fees(
    conn: &mut PgConnection,
    fees: &[(Uuid, Decimal, Option<i64>)],
) -> Result<HashSet<Uuid>, DbError> {
    let mut stored = HashSet::with_capacity(fees.len());
    for chunk in fees.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<Uuid> = chunk.iter().map(|f| f.0).collect();
        let amounts: Vec<Decimal> = chunk.iter().map(|f| f.1).collect();
        let rules: Vec<Option<i64>> = chunk.iter().map(|f| f.2).collect();
        let rows: Vec<IdRow> = diesel::sql_query(
            "UPDATE transactions t SET fee = v.fee, fee_rule_id = v.rule \
             FROM unnest($1::uuid[], $2::numeric[], $3::int8[]) AS v(id, fee, rule) \
             WHERE t.id = v.id AND t.fee IS NULL \
             RETURNING t.id",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Numeric>, _>(amounts)
        .bind::<Array<Nullable<BigInt>>, _>(rules)
        .load(conn)?;
        stored.extend(rows.into_iter().map(|r| r.id));
    }
    Ok(stored)
}
