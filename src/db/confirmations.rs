//! Confirming a reverse-scan payment on the phone: the cardholder's side of a transaction that
//! settlement parked `awaiting_confirmation` (see `db::settle`), and the sweeper that hands
//! the unfinished ones back to settlement.
//!
//! Settlement alone moves a parked payment to a final state. The platform only records what
//! the cardholder did, on the locked row: a confirmation with the right PIN moves it back to
//! `created` with `confirmed_at` (settlement then counts the PIN as given), a decline sets
//! `confirm_declined_at`. Either way the platform hands the payment to settlement at once and
//! stamps `confirm_sent_at`. Should that publish be lost (a crash between the commit and the
//! publish, the broker away), the sweeper hands it back later, and it hands back every parked
//! payment whose deadline passed. So nothing here can leave a payment unanswered, and nothing
//! is decided twice: settlement decides on the locked row, whatever message brought it.

use super::cards::{attempt_pin, PinOutcome};
use super::models::TransactionRow;
use super::payments::{item_from_row, load_card_ref, pending_item};
use super::schema::*;
use super::DbError;
use crate::domain::pin::PinAttempt;
use crate::domain::{DeclineReason, TxState, UserId};
use crate::messages::internal::PaymentItem;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use uuid::Uuid;

/// Where a payment stands when it is no longer waiting for its cardholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAwaiting {
    /// In the pipeline: confirmed and being settled, or not parked at all.
    Processing,
    /// Final, or decided and about to be (declined by the cardholder, past its deadline).
    /// `status` is what `result.v1` says: approved, declined (`voided` included) or reversed.
    Final {
        status: TxState,
        reason: Option<DeclineReason>,
    },
}

/// Why a confirmation or a decline is refused: the request's fault, not the database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmProblem {
    #[error("no such payment awaiting this cardholder's confirmation")]
    NotFound,
    #[error("wrong PIN{}", tries_left.map(|n| format!("; {n} more wrong and the PIN locks")).unwrap_or_default())]
    PinInvalid { tries_left: Option<i32> },
    #[error("the PIN is locked after too many wrong tries; it unlocks at {until} (or ask the card office)")]
    PinLocked { until: DateTime<Utc> },
    #[error("the payment is no longer awaiting confirmation")]
    NotAwaiting(NotAwaiting),
}

/// Where a payment of this cardholder stands, as far as confirming it goes.
enum Standing {
    /// Waiting, before its deadline, neither confirmed nor declined.
    Open,
    /// Confirmed and not settled yet.
    Confirmed,
    /// Declined by the cardholder; `settled` once settlement wrote it.
    DeclinedByUser {
        settled: bool,
    },
    Not(NotAwaiting),
}

fn standing(row: &TransactionRow, now: DateTime<Utc>) -> Standing {
    let final_ = |status, reason| Standing::Not(NotAwaiting::Final { status, reason });
    match row.state {
        TxState::AwaitingConfirmation if row.confirm_declined_at.is_some() => {
            Standing::DeclinedByUser { settled: false }
        }
        // Past its deadline it is as good as declined: settlement decides so on the database's
        // clock, which `now` is.
        TxState::AwaitingConfirmation if row.confirm_deadline.is_none_or(|d| d <= now) => {
            final_(TxState::Declined, Some(DeclineReason::ConfirmationTimeout))
        }
        TxState::AwaitingConfirmation => Standing::Open,
        TxState::Created if row.confirmed_at.is_some() => Standing::Confirmed,
        TxState::Created => Standing::Not(NotAwaiting::Processing),
        TxState::Declined if row.reason == Some(DeclineReason::UserDeclined) => {
            Standing::DeclinedByUser { settled: true }
        }
        TxState::Approved | TxState::Declined | TxState::Reversed => final_(row.state, row.reason),
        // `voided` is a decline to the outside world.
        TxState::Voided => final_(
            TxState::Declined,
            Some(row.reason.unwrap_or(DeclineReason::Voided)),
        ),
    }
}

/// The transaction `id` of cardholder `user`, locked, with the database's clock.
fn lock_own(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Option<(TransactionRow, DateTime<Utc>)>, DbError> {
    let row: Option<TransactionRow> = transactions::table
        .find(id)
        .filter(transactions::user_id.eq(user.as_str()))
        .select(TransactionRow::as_select())
        .for_update()
        .first(conn)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let now: DateTime<Utc> = diesel::select(sql::<Timestamptz>("now()")).get_result(conn)?;
    Ok(Some((row, now)))
}

/// The item that hands `row` back to settlement, stamping when it was handed.
fn hand_back(
    conn: &mut PgConnection,
    row: &TransactionRow,
    pin_verified: bool,
) -> Result<PaymentItem, DbError> {
    diesel::update(transactions::table.find(row.id))
        .set(transactions::confirm_sent_at.eq(diesel::dsl::now))
        .execute(conn)?;
    let card_id = row
        .card_id
        .ok_or_else(|| DbError::Invariant(format!("parked transaction {} has no card", row.id)))?;
    pending_item(row, load_card_ref(conn, card_id)?, pin_verified)
}

/// The cardholder confirms payment `id` with the PIN whose keyed hash is `pin_hash`. The PIN
/// is checked (and a wrong one counted) with the card's lockout, on the same path as a
/// forward-scan PIN. Returns the item to hand to settlement. Idempotent: confirming a payment
/// that is confirmed and not settled yet returns it again without asking the PIN again (it was
/// checked), so a lost hand-over is simply retried.
pub fn confirm(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
    pin_hash: &[u8],
) -> Result<Result<PaymentItem, ConfirmProblem>, DbError> {
    // Committed even when refused: a wrong PIN must count.
    conn.transaction(|conn| {
        let Some((row, now)) = lock_own(conn, user, id)? else {
            return Ok(Err(ConfirmProblem::NotFound));
        };
        match standing(&row, now) {
            Standing::Open => {}
            Standing::Confirmed => return Ok(Ok(hand_back(conn, &row, true)?)),
            Standing::DeclinedByUser { .. } => {
                return Ok(Err(ConfirmProblem::NotAwaiting(NotAwaiting::Final {
                    status: TxState::Declined,
                    reason: Some(DeclineReason::UserDeclined),
                })))
            }
            Standing::Not(n) => return Ok(Err(ConfirmProblem::NotAwaiting(n))),
        }
        match attempt_pin(conn, user, pin_hash)? {
            // The card went away while its payment waited: nothing to confirm with.
            None => return Ok(Err(ConfirmProblem::NotFound)),
            Some(PinOutcome::NotSet) => {
                return Ok(Err(ConfirmProblem::PinInvalid { tries_left: None }))
            }
            Some(PinOutcome::Checked(PinAttempt::Accepted)) => {}
            Some(PinOutcome::Checked(PinAttempt::Wrong {
                locked_until: Some(until),
                ..
            }))
            | Some(PinOutcome::Checked(PinAttempt::Locked { until })) => {
                return Ok(Err(ConfirmProblem::PinLocked { until }))
            }
            Some(PinOutcome::Checked(PinAttempt::Wrong {
                tries_left,
                locked_until: None,
            })) => {
                return Ok(Err(ConfirmProblem::PinInvalid {
                    tries_left: Some(tries_left),
                }))
            }
        }
        row.state
            .transition(TxState::Created)
            .map_err(|e| DbError::Invariant(format!("transaction {}: {e}", row.id)))?;
        let row: TransactionRow = diesel::update(
            transactions::table
                .find(row.id)
                .filter(transactions::state.eq(TxState::AwaitingConfirmation)),
        )
        .set((
            transactions::state.eq(TxState::Created),
            transactions::reason.eq(None::<DeclineReason>),
            transactions::processed_at.eq(None::<DateTime<Utc>>),
            transactions::confirmed_at.eq(diesel::dsl::now),
        ))
        .returning(TransactionRow::as_returning())
        .get_result(conn)?;
        Ok(Ok(hand_back(conn, &row, true)?))
    })
}

/// The cardholder declines payment `id`. Returns the item to hand to settlement, which declines
/// it `user_declined`; `None` when that is done already. Idempotent.
pub fn decline(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Result<Option<PaymentItem>, ConfirmProblem>, DbError> {
    conn.transaction(|conn| {
        let Some((row, now)) = lock_own(conn, user, id)? else {
            return Ok(Err(ConfirmProblem::NotFound));
        };
        match standing(&row, now) {
            Standing::Open => {
                diesel::update(transactions::table.find(row.id))
                    .set(transactions::confirm_declined_at.eq(diesel::dsl::now))
                    .execute(conn)?;
                Ok(Ok(Some(hand_back(conn, &row, false)?)))
            }
            Standing::DeclinedByUser { settled: false } => {
                Ok(Ok(Some(hand_back(conn, &row, false)?)))
            }
            Standing::DeclinedByUser { settled: true } => Ok(Ok(None)),
            Standing::Confirmed => Ok(Err(ConfirmProblem::NotAwaiting(NotAwaiting::Processing))),
            Standing::Not(n) => Ok(Err(ConfirmProblem::NotAwaiting(n))),
        }
    })
}

/// The cardholder's payments waiting for a confirmation now (neither confirmed nor declined,
/// deadline ahead), newest first, at most `limit`: each as the item fan-out asked about.
pub fn open_for(
    conn: &mut PgConnection,
    user: &UserId,
    limit: i64,
) -> Result<Vec<PaymentItem>, DbError> {
    let rows: Vec<TransactionRow> = transactions::table
        .filter(transactions::user_id.eq(user.as_str()))
        .filter(transactions::state.eq(TxState::AwaitingConfirmation))
        .filter(transactions::confirm_declined_at.is_null())
        .filter(transactions::confirm_deadline.gt(diesel::dsl::now))
        .order((transactions::processed_at.desc(), transactions::id))
        .limit(limit)
        .select(TransactionRow::as_select())
        .load(conn)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(item) = item_from_row(conn, &row, None)? {
            items.push(item);
        }
    }
    Ok(items)
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// The sweeper's pass: at most `limit` parked payments that settlement must see again — past
/// their deadline, declined by their cardholder, or confirmed and not settled — and not handed
/// to it in the last `resend_after` seconds. Each is stamped as handed now and returned as the
/// item to hand. `SKIP LOCKED`: a payment that settlement, the platform or another process's
/// sweeper holds right now is left for the next pass, so sweepers in many processes never wait
/// for each other or take the same row twice.
pub fn due(
    conn: &mut PgConnection,
    resend_after: i64,
    limit: i64,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        let ids: Vec<Uuid> = diesel::sql_query(
            "SELECT id FROM transactions \
             WHERE state IN ($1, $2) AND confirm_deadline IS NOT NULL \
               AND (confirm_sent_at IS NULL \
                    OR confirm_sent_at <= now() - make_interval(secs => $3::float8)) \
               AND ((state = $1 AND (confirm_deadline <= now() OR confirm_declined_at IS NOT NULL)) \
                    OR (state = $2 AND confirmed_at IS NOT NULL)) \
             ORDER BY confirm_deadline \
             LIMIT $4 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind::<Text, _>(TxState::AwaitingConfirmation)
        .bind::<Text, _>(TxState::Created)
        .bind::<BigInt, _>(resend_after)
        .bind::<BigInt, _>(limit)
        .load::<IdRow>(conn)?
        .into_iter()
        .map(|r| r.id)
        .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<TransactionRow> = diesel::update(transactions::table)
            .filter(transactions::id.eq_any(&ids))
            .set(transactions::confirm_sent_at.eq(diesel::dsl::now))
            .returning(TransactionRow::as_returning())
            .get_results(conn)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(card_id) = row.card_id else {
                log::error!(
                    transaction_id:% = row.id;
                    "parked transaction {} has no card; cannot settle it",
                    row.id
                );
                continue;
            };
            let card = load_card_ref(conn, card_id)?;
            items.push(pending_item(&row, card, row.confirmed_at.is_some())?);
        }
        Ok(items)
    })
}
