//! Follow-ups of a POS that heard nothing: `query.v1` (what became of my request?) and
//! `reversal.v1` (cancel it). Both end in exactly one final state per request:
//! - unknown request → a `voided` tombstone, so the request is voided if it ever arrives;
//! - `created` (not yet settled) → `voided`, and settlement then declines it;
//! - `awaiting_confirmation` → `declined`, reason `voided`: the payment is cancelled before its
//!   cardholder confirmed it, and the reversal's answer (through fan-out) tells both;
//! - `approved` → `reversed` by a compensating journal entry (fee included, less what earlier
//!   refunds gave back);
//! - any other final state → unchanged, its result is re-sent.

use super::journal;
use super::models::TransactionRow;
use super::payments::load_card_ref;
use super::refunds::{accounts_of, paid_of, refunded_so_far};
use super::schema::*;
use super::DbError;
use crate::domain::refund::plan_reversal;
use crate::domain::{
    DeclineReason, EntryKind, JournalEntry, MerchantId, PaymentMode, TerminalId, TransactionId,
    TxState,
};
use crate::messages::internal::CardRef;
use crate::messages::now_micros;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

/// Namespace for the deterministic id of a reversal's journal entry: one per transaction.
const REVERSAL_NS: Uuid = Uuid::from_u128(0x6a1c_3b7e_52d4_4f0e_9b1a_0c2d_7e5f_8a31);

pub fn reversal_entry_id(transaction: Uuid) -> Uuid {
    Uuid::new_v5(&REVERSAL_NS, transaction.as_bytes())
}

fn find(
    conn: &mut PgConnection,
    scope: &str,
    request_id: Uuid,
    lock: bool,
) -> Result<Option<TransactionRow>, DbError> {
    let q = transactions::table
        .filter(transactions::request_scope.eq(scope))
        .filter(transactions::request_id.eq(request_id))
        .select(TransactionRow::as_select());
    Ok(if lock {
        q.for_update().first(conn).optional()?
    } else {
        q.first(conn).optional()?
    })
}

fn card_of(conn: &mut PgConnection, row: &TransactionRow) -> Result<Option<CardRef>, DbError> {
    row.card_id.map(|c| load_card_ref(conn, c)).transpose()
}

/// A state change the state machine does not allow is a bug, not the request's fault.
fn check_transition(row: &TransactionRow, to: TxState) -> Result<(), DbError> {
    row.state
        .transition(to)
        .map(|_| ())
        .map_err(|e| DbError::Invariant(format!("transaction {}: {e}", row.id)))
}

/// The stored state of a request, with its card when known.
pub fn query(
    conn: &mut PgConnection,
    scope: &str,
    request_id: Uuid,
) -> Result<Option<(TransactionRow, Option<CardRef>)>, DbError> {
    match find(conn, scope, request_id, false)? {
        None => Ok(None),
        Some(row) => {
            let card = card_of(conn, &row)?;
            Ok(Some((row, card)))
        }
    }
}

/// What a reversal found and did.
pub struct Reversal {
    /// The request's row afterwards.
    pub row: TransactionRow,
    pub card: Option<CardRef>,
    /// An approved payment processed before the window opened: nothing changed; an operator
    /// refunds it if it must be.
    pub window_closed: bool,
}

/// Reverses (or voids) a request. An approved payment is reversed only if it was processed
/// at or after `window_opens`.
pub fn reverse(
    conn: &mut PgConnection,
    scope: &str,
    request_id: Uuid,
    merchant: &MerchantId,
    terminal: &TerminalId,
    window_opens: chrono::DateTime<chrono::Utc>,
) -> Result<Reversal, DbError> {
    conn.transaction(|conn| {
        let at = now_micros();
        let row = match find(conn, scope, request_id, true)? {
            Some(row) => row,
            None => {
                diesel::insert_into(transactions::table)
                    .values((
                        transactions::id.eq(Uuid::new_v4()),
                        transactions::mode.eq(PaymentMode::ReverseScan),
                        transactions::request_scope.eq(scope),
                        transactions::request_id.eq(request_id),
                        transactions::merchant_id.eq(merchant.as_str()),
                        transactions::terminal_id.eq(terminal.as_str()),
                        transactions::state.eq(TxState::Voided),
                        transactions::reason.eq(DeclineReason::Voided),
                        transactions::processed_at.eq(at),
                    ))
                    .on_conflict((transactions::request_scope, transactions::request_id))
                    .do_nothing()
                    .execute(conn)?;
                // Either our tombstone or the request that won the race to be recorded.
                find(conn, scope, request_id, true)?.ok_or_else(|| {
                    DbError::Invariant(format!("request {request_id} vanished while locked"))
                })?
            }
        };
        let mut window_closed = false;
        match row.state {
            TxState::Created => {
                check_transition(&row, TxState::Voided)?;
                diesel::update(
                    transactions::table
                        .find(row.id)
                        .filter(transactions::state.eq(TxState::Created)),
                )
                .set((
                    transactions::state.eq(TxState::Voided),
                    transactions::reason.eq(DeclineReason::Voided),
                    transactions::processed_at.eq(at),
                ))
                .execute(conn)?;
            }
            TxState::AwaitingConfirmation => {
                // The state machine goes from here to `created` or `declined` only (see
                // domain::transaction): cancelled, it is declined, with the reason a void has.
                check_transition(&row, TxState::Declined)?;
                diesel::update(
                    transactions::table
                        .find(row.id)
                        .filter(transactions::state.eq(TxState::AwaitingConfirmation)),
                )
                .set((
                    transactions::state.eq(TxState::Declined),
                    transactions::reason.eq(DeclineReason::Voided),
                    transactions::processed_at.eq(at),
                ))
                .execute(conn)?;
            }
            TxState::Approved if row.processed_at.is_some_and(|p| p < window_opens) => {
                window_closed = true;
            }
            TxState::Approved => compensate(conn, &row, at)?,
            TxState::Declined | TxState::Reversed | TxState::Voided => {}
        }
        let row = find(conn, scope, request_id, false)?.ok_or_else(|| {
            DbError::Invariant(format!("request {request_id} vanished while locked"))
        })?;
        let card = card_of(conn, &row)?;
        Ok(Reversal {
            row,
            card,
            window_closed,
        })
    })
}

/// The compensating entry of an approved payment: the card gets back what remains of amount +
/// fee, the merchant and the school give it back.
fn compensate(
    conn: &mut PgConnection,
    row: &TransactionRow,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    check_transition(row, TxState::Reversed)?;
    let paid = paid_of(row).ok_or_else(|| {
        DbError::Invariant(format!(
            "approved transaction {} lacks amount or card",
            row.id
        ))
    })?;
    let (done, _) = refunded_so_far(conn, row.id)?;
    let plan = plan_reversal(paid, done);
    let accounts = accounts_of(conn, row)?;
    let entry = JournalEntry::compensation(
        reversal_entry_id(row.id),
        EntryKind::Reversal,
        TransactionId(row.id),
        "POS reversal",
        accounts.card,
        accounts.merchant,
        accounts.fee_income,
        plan.amount,
        plan.fee,
    )
    .map_err(|e| DbError::Invariant(format!("reversal entry: {e}")))?;
    let mut locks = journal::lock_cards(conn, &[accounts.card])?;
    journal::post(conn, &mut locks, &[entry])?;
    let balance = super::admin::locked_balance(&locks, accounts.card)?;
    diesel::update(transactions::table.find(row.id))
        .set((
            transactions::state.eq(TxState::Reversed),
            transactions::reversed_at.eq(at),
            transactions::processed_at.eq(at),
            transactions::balance_after.eq(balance.value()),
        ))
        .execute(conn)?;
    Ok(())
}
