//! Refunds (退款) of approved payments, full or partial, as decided by `domain::refund`; the
//! caller's id makes a refund idempotent. Reversals (`db::requests`) share the accounting.

use super::journal;
use super::models::TransactionRow;
use super::schema::*;
use super::{money, DbError};
use crate::domain::ledger::MAX_MEMO_CHARS;
use crate::domain::refund::{plan_refund, Paid, Refunded};
use crate::domain::{
    AccountId, Amount, EntryKind, JournalEntry, Money, Refusal, TransactionId, TxState,
};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct RefundOutcome {
    pub refund_id: Uuid,
    pub transaction_id: Uuid,
    pub amount: Money,
    pub fee: Money,
    /// Amount (without fee) still refundable after this refund.
    pub remaining: Money,
    /// `approved` while something remains, `reversed` once fully refunded.
    pub transaction_state: TxState,
    pub balance_after: Money,
    pub created_at: DateTime<Utc>,
}

/// The accounts a payment moved money between, read from the card and merchant rows.
pub(super) struct PaymentAccounts {
    pub card: AccountId,
    pub merchant: AccountId,
    pub fee_income: AccountId,
}

pub(super) fn accounts_of(
    conn: &mut PgConnection,
    row: &TransactionRow,
) -> Result<PaymentAccounts, DbError> {
    let card_id = row.card_id.ok_or_else(|| {
        DbError::Invariant(format!("payment {} moved money but has no card", row.id))
    })?;
    let card: i64 = cards::table
        .find(card_id)
        .select(cards::account_id)
        .first(conn)?;
    let merchant: i64 = merchants::table
        .find(&row.merchant_id)
        .select(merchants::account_id)
        .first(conn)?;
    Ok(PaymentAccounts {
        card: AccountId(card),
        merchant: AccountId(merchant),
        fee_income: journal::fee_income(conn)?,
    })
}

/// What a transaction took from the card, if it got as far as having an amount.
pub(super) fn paid_of(row: &TransactionRow) -> Option<Paid> {
    let amount = Amount::try_from_decimal(row.amount?).ok()?;
    row.card_id?;
    Some(Paid {
        amount,
        fee: row.fee.map(money).unwrap_or(Money::ZERO),
    })
}

/// An earlier refund: id, amount, fee, when.
pub(super) type RefundRow = (Uuid, Decimal, Decimal, DateTime<Utc>);

/// What earlier refunds of `tx` gave back, and each of them.
pub(super) fn refunded_so_far(
    conn: &mut PgConnection,
    tx: Uuid,
) -> Result<(Refunded, Vec<RefundRow>), DbError> {
    let rows: Vec<RefundRow> = refunds::table
        .filter(refunds::transaction_id.eq(tx))
        .select((
            refunds::id,
            refunds::amount,
            refunds::fee,
            refunds::created_at,
        ))
        .load(conn)?;
    let done = Refunded {
        amount: rows.iter().map(|r| money(r.1)).sum(),
        fee: rows.iter().map(|r| money(r.2)).sum(),
    };
    Ok((done, rows))
}

/// Refunds `amount` (default: all that remains) of transaction `tx`.
pub fn refund(
    conn: &mut PgConnection,
    tx: TransactionId,
    amount: Option<Amount>,
    refund_id: Uuid,
    reason: &str,
) -> Result<Result<RefundOutcome, Refusal>, DbError> {
    if reason.chars().count() > MAX_MEMO_CHARS {
        return Ok(Err(Refusal::ReasonTooLong {
            max: MAX_MEMO_CHARS,
        }));
    }
    conn.transaction(|conn| {
        // Lock the payment first: refunds of one payment are serialised.
        let row: Option<TransactionRow> = transactions::table
            .find(tx.0)
            .select(TransactionRow::as_select())
            .for_update()
            .first(conn)
            .optional()?;
        let Some(row) = row else {
            return Ok(Err(Refusal::UnknownTransaction(tx)));
        };
        let (done, earlier) = refunded_so_far(conn, tx.0)?;
        let paid = paid_of(&row);
        // A repeated request: report the refund it made the first time.
        if let Some((_, a, f, at)) = earlier.iter().find(|r| r.0 == refund_id) {
            let accounts = accounts_of(conn, &row)?;
            let remaining = paid.map(|p| p.amount.money()).unwrap_or(Money::ZERO) - done.amount;
            return Ok(Ok(RefundOutcome {
                refund_id,
                transaction_id: tx.0,
                amount: money(*a),
                fee: money(*f),
                remaining,
                transaction_state: row.state,
                balance_after: super::admin::balance_of(conn, accounts.card)?,
                created_at: *at,
            }));
        }
        let plan = match plan_refund(row.state, paid, done, amount) {
            Ok(p) => p,
            Err(r) => return Ok(Err(Refusal::Refund(r))),
        };
        let accounts = accounts_of(conn, &row)?;
        let at = crate::messages::now_micros();
        diesel::insert_into(refunds::table)
            .values((
                refunds::id.eq(refund_id),
                refunds::transaction_id.eq(tx.0),
                refunds::amount.eq(plan.amount.value()),
                refunds::fee.eq(plan.fee.value()),
                refunds::reason.eq(reason),
                refunds::created_at.eq(at),
            ))
            .execute(conn)?;
        let entry = JournalEntry::compensation(
            refund_id,
            EntryKind::Refund,
            tx,
            reason,
            accounts.card,
            accounts.merchant,
            accounts.fee_income,
            plan.amount,
            plan.fee,
        )
        .map_err(|e| DbError::Invariant(format!("refund entry: {e}")))?;
        let mut locks = journal::lock_cards(conn, &[accounts.card])?;
        journal::post(conn, &mut locks, &[entry])?;
        let state = if plan.completes() {
            diesel::update(transactions::table.find(tx.0))
                .set((
                    transactions::state.eq(TxState::Reversed),
                    transactions::reversed_at.eq(at),
                ))
                .execute(conn)?;
            TxState::Reversed
        } else {
            TxState::Approved
        };
        Ok(Ok(RefundOutcome {
            refund_id,
            transaction_id: tx.0,
            amount: plan.amount,
            fee: plan.fee,
            remaining: plan.remaining,
            transaction_state: state,
            balance_after: super::admin::locked_balance(&locks, accounts.card)?,
            created_at: at,
        }))
    })
}

/// A refund as the cardholder sees it in their history.
#[derive(Debug, Clone, Serialize)]
pub struct RefundSummary {
    pub refund_id: Uuid,
    pub transaction_id: Uuid,
    pub merchant_id: String,
    pub merchant_name: Option<String>,
    pub amount: Money,
    pub fee: Money,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// The card's newest refunds, newest first, at most `limit`.
pub fn recent_of_card(
    conn: &mut PgConnection,
    card: i64,
    limit: i64,
) -> Result<Vec<RefundSummary>, DbError> {
    type Row = (
        Uuid,
        Uuid,
        String,
        Option<String>,
        Decimal,
        Decimal,
        String,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = refunds::table
        .inner_join(transactions::table.on(transactions::id.eq(refunds::transaction_id)))
        .left_join(merchants::table.on(merchants::id.eq(transactions::merchant_id)))
        .filter(transactions::card_id.eq(card))
        .order((refunds::created_at.desc(), refunds::id))
        .limit(limit)
        .select((
            refunds::id,
            refunds::transaction_id,
            transactions::merchant_id,
            merchants::name.nullable(),
            refunds::amount,
            refunds::fee,
            refunds::reason,
            refunds::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                refund_id,
                transaction_id,
                merchant_id,
                merchant_name,
                amount,
                fee,
                reason,
                created_at,
            )| {
                RefundSummary {
                    refund_id,
                    transaction_id,
                    merchant_id,
                    merchant_name,
                    amount: money(amount),
                    fee: money(fee),
                    reason,
                    created_at,
                }
            },
        )
        .collect())
}
