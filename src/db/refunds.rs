//! Refunds (退款) of approved payments, full or partial. The 搭伙费 is refunded in proportion
//! (the last refund takes whatever fee is left, so the fee is refunded exactly); the total never
//! exceeds what was paid; the caller's id makes a refund idempotent.

use super::schema::*;
use super::DbError;
use crate::domain::{Amount, Money};
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
    pub transaction_state: String,
    pub balance_after: Money,
    pub created_at: DateTime<Utc>,
}

fn money(d: Decimal) -> Money {
    Money::from_decimal(d).unwrap_or_else(|| Money::round_half_up(d))
}

/// Refunds `amount` (default: all that remains) of transaction `tx`.
pub fn refund(
    conn: &mut PgConnection,
    tx: Uuid,
    amount: Option<Amount>,
    refund_id: Uuid,
    reason: &str,
) -> Result<RefundOutcome, DbError> {
    conn.transaction(|conn| {
        // Lock the payment first: refunds of one payment are serialised.
        let (state, paid, fee_paid, card_id, merchant): (String, Option<Decimal>, Option<Decimal>, Option<i64>, String) =
            transactions::table
                .find(tx)
                .select((
                    transactions::state,
                    transactions::amount,
                    transactions::fee,
                    transactions::card_id,
                    transactions::merchant_id,
                ))
                .for_update()
                .first(conn)
                .optional()?
                .ok_or_else(|| DbError::NotFound(format!("transaction {tx}")))?;
        let already: Vec<(Uuid, Decimal, Decimal, DateTime<Utc>)> = refunds::table
            .filter(refunds::transaction_id.eq(tx))
            .select((refunds::id, refunds::amount, refunds::fee, refunds::created_at))
            .load(conn)?;
        let refunded: Decimal = already.iter().map(|r| r.1).sum();
        let fee_refunded: Decimal = already.iter().map(|r| r.2).sum();
        let (Some(paid), Some(card_id)) = (paid, card_id) else {
            return Err(DbError::Rejected(format!("transaction {tx} moved no money")));
        };
        let fee_paid = fee_paid.unwrap_or(Decimal::ZERO);
        let card_account: i64 = cards::table.find(card_id).select(cards::account_id).first(conn)?;
        // A repeated request: report the refund it made the first time.
        if let Some((_, a, f, at)) = already.iter().find(|r| r.0 == refund_id) {
            let balance: Decimal = accounts::table.find(card_account).select(accounts::balance).first(conn)?;
            return Ok(RefundOutcome {
                refund_id,
                transaction_id: tx,
                amount: money(*a),
                fee: money(*f),
                remaining: money(paid - refunded),
                transaction_state: state,
                balance_after: money(balance),
                created_at: *at,
            });
        }
        if state != "approved" {
            return Err(DbError::Rejected(format!(
                "transaction {tx} is {state}: only an approved payment can be refunded"
            )));
        }
        let remaining = paid - refunded;
        let amount = amount.map(|a| a.value()).unwrap_or(remaining);
        if amount <= Decimal::ZERO || amount > remaining {
            return Err(DbError::Rejected(format!(
                "refund of {amount:.2} is more than the {remaining:.2} that remains of the {paid:.2} paid"
            )));
        }
        let fee = if amount == remaining {
            fee_paid - fee_refunded
        } else {
            Money::round_half_up(fee_paid * amount / paid).value().min(fee_paid - fee_refunded)
        };
        let merchant_account: i64 = merchants::table.find(&merchant).select(merchants::account_id).first(conn)?;
        let at = crate::messages::now_micros();
        diesel::insert_into(refunds::table)
            .values((
                refunds::id.eq(refund_id),
                refunds::transaction_id.eq(tx),
                refunds::amount.eq(amount),
                refunds::fee.eq(fee),
                refunds::reason.eq(reason),
                refunds::created_at.eq(at),
            ))
            .execute(conn)?;
        let balance = super::requests::post_compensation(
            conn,
            super::requests::Compensation {
                entry: refund_id,
                kind: "refund",
                transaction: tx,
                memo: reason,
                card_account,
                merchant_account,
                amount,
                fee,
            },
        )?;
        let left = remaining - amount;
        let new_state = if left.is_zero() {
            diesel::update(transactions::table.find(tx))
                .set((transactions::state.eq("reversed"), transactions::reversed_at.eq(at)))
                .execute(conn)?;
            "reversed"
        } else {
            "approved"
        };
        Ok(RefundOutcome {
            refund_id,
            transaction_id: tx,
            amount: money(amount),
            fee: money(fee),
            remaining: money(left),
            transaction_state: new_state.into(),
            balance_after: money(balance),
            created_at: at,
        })
    })
}
