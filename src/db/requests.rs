//! Follow-ups of a POS that heard nothing: `query.v1` (what became of my request?) and
//! `reversal.v1` (cancel it). Both end in exactly one final state per request:
//! - unknown request → a `voided` tombstone, so the request is voided if it ever arrives;
//! - `created` (not yet settled) → `voided`, and settlement then declines it;
//! - `approved` → `reversed` by a compensating journal entry (fee included);
//! - any other final state → unchanged, its result is re-sent.

use super::admin::account_of;
use super::models::{NewEntry, NewPosting, TransactionRow};
use super::payments::load_card_ref;
use super::schema::*;
use super::DbError;
use crate::domain::{MerchantId, TerminalId};
use crate::messages::internal::CardRef;
use crate::messages::now_micros;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
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

/// Reverses (or voids) a request; returns its row afterwards.
pub fn reverse(
    conn: &mut PgConnection,
    scope: &str,
    request_id: Uuid,
    merchant: &MerchantId,
    terminal: &TerminalId,
) -> Result<(TransactionRow, Option<CardRef>), DbError> {
    conn.transaction(|conn| {
        let at = now_micros();
        let row = match find(conn, scope, request_id, true)? {
            Some(row) => row,
            None => {
                diesel::insert_into(transactions::table)
                    .values((
                        transactions::id.eq(Uuid::new_v4()),
                        transactions::mode.eq("reverse_scan"),
                        transactions::request_scope.eq(scope),
                        transactions::request_id.eq(request_id),
                        transactions::merchant_id.eq(merchant.as_str()),
                        transactions::terminal_id.eq(terminal.as_str()),
                        transactions::state.eq("voided"),
                        transactions::reason.eq("voided"),
                        transactions::processed_at.eq(at),
                    ))
                    .on_conflict((transactions::request_scope, transactions::request_id))
                    .do_nothing()
                    .execute(conn)?;
                // Either our tombstone or the request that won the race to be recorded.
                find(conn, scope, request_id, true)?
                    .ok_or_else(|| DbError::NotFound(format!("request {request_id}")))?
            }
        };
        match row.state.as_str() {
            "created" => {
                diesel::update(
                    transactions::table
                        .find(row.id)
                        .filter(transactions::state.eq("created")),
                )
                .set((
                    transactions::state.eq("voided"),
                    transactions::reason.eq("voided"),
                    transactions::processed_at.eq(at),
                ))
                .execute(conn)?;
            }
            "approved" => compensate(conn, &row, at)?,
            _ => {}
        }
        let row = find(conn, scope, request_id, false)?
            .ok_or_else(|| DbError::NotFound(format!("request {request_id}")))?;
        let card = card_of(conn, &row)?;
        Ok((row, card))
    })
}

/// The compensating entry of an approved payment: the card gets amount + fee back, the
/// merchant gives the amount back, the school gives the fee back.
fn compensate(
    conn: &mut PgConnection,
    row: &TransactionRow,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    let (Some(amount), Some(card_id)) = (row.amount, row.card_id) else {
        return Err(DbError::Rejected(format!(
            "approved transaction {} lacks amount or card",
            row.id
        )));
    };
    // Whatever partial refunds already gave back is not given back twice.
    let done: Vec<(Decimal, Decimal)> = refunds::table
        .filter(refunds::transaction_id.eq(row.id))
        .select((refunds::amount, refunds::fee))
        .load(conn)?;
    let amount = amount - done.iter().map(|r| r.0).sum::<Decimal>();
    let fee = row.fee.unwrap_or(Decimal::ZERO) - done.iter().map(|r| r.1).sum::<Decimal>();
    let card_account: i64 = cards::table
        .find(card_id)
        .select(cards::account_id)
        .first(conn)?;
    let merchant_account: i64 = merchants::table
        .find(&row.merchant_id)
        .select(merchants::account_id)
        .first(conn)?;
    let balance = post_compensation(
        conn,
        Compensation {
            entry: reversal_entry_id(row.id),
            kind: "reversal",
            transaction: row.id,
            memo: "POS reversal",
            card_account,
            merchant_account,
            amount,
            fee,
        },
    )?;
    diesel::update(transactions::table.find(row.id))
        .set((
            transactions::state.eq("reversed"),
            transactions::reversed_at.eq(at),
            transactions::processed_at.eq(at),
            transactions::balance_after.eq(balance),
        ))
        .execute(conn)?;
    Ok(())
}

/// Money going back to a card: `amount` from the merchant and `fee` from the school's fee
/// income, as one journal entry.
pub(super) struct Compensation<'a> {
    pub entry: Uuid,
    pub kind: &'a str,
    pub transaction: Uuid,
    pub memo: &'a str,
    pub card_account: i64,
    pub merchant_account: i64,
    pub amount: Decimal,
    pub fee: Decimal,
}

/// Posts a compensation (reversal or refund) and returns the card's balance after. Accounts are
/// locked in settlement's order: the card, then the merchant, then the school.
pub(super) fn post_compensation(
    conn: &mut PgConnection,
    c: Compensation,
) -> Result<Decimal, DbError> {
    let fee_account = account_of(conn, "fee_income", "school")?;
    let total = c.amount + c.fee;
    diesel::insert_into(journal_entries::table)
        .values(&NewEntry {
            id: c.entry,
            kind: c.kind,
            transaction_id: Some(c.transaction),
            memo: c.memo,
        })
        .execute(conn)?;
    let mut legs = vec![NewPosting {
        entry_id: c.entry,
        leg: "card",
        account_id: c.card_account,
        amount: total,
    }];
    if !c.amount.is_zero() {
        legs.push(NewPosting {
            entry_id: c.entry,
            leg: "merchant",
            account_id: c.merchant_account,
            amount: -c.amount,
        });
    }
    if !c.fee.is_zero() {
        legs.push(NewPosting {
            entry_id: c.entry,
            leg: "fee",
            account_id: fee_account,
            amount: -c.fee,
        });
    }
    diesel::insert_into(postings::table)
        .values(&legs)
        .execute(conn)?;
    let balance: Decimal = diesel::update(accounts::table.find(c.card_account))
        .set(accounts::balance.eq(accounts::balance + total))
        .returning(accounts::balance)
        .get_result(conn)?;
    if !c.amount.is_zero() {
        diesel::update(accounts::table.find(c.merchant_account))
            .set(accounts::balance.eq(accounts::balance - c.amount))
            .execute(conn)?;
    }
    if !c.fee.is_zero() {
        diesel::update(accounts::table.find(fee_account))
            .set(accounts::balance.eq(accounts::balance - c.fee))
            .execute(conn)?;
    }
    Ok(balance)
}
