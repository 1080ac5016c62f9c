//! What the pipeline's repositories share: the card behind a payment, and how a stored
//! transaction turns back into a decided item (for a retried request, a query, a reversal).
//! The stage repositories are `validation`, `orders`, `fees` and `settle`.

use super::models::TransactionRow;
use super::schema::*;
use super::{money, DbError};
use crate::domain::{Amount, Identity, MerchantId, TerminalId, TransactionId, TxState, UserId};
use crate::messages::internal::{AwaitingConfirmation, CardRef, FinalResult, Outcome, PaymentItem};
use diesel::pg::PgConnection;
use diesel::prelude::*;

pub(super) fn card_ref(
    card_id: i64,
    account_id: i64,
    user: &str,
    identity: Identity,
) -> Result<CardRef, DbError> {
    Ok(CardRef {
        card_id,
        account_id,
        user_id: UserId::parse(user)
            .map_err(|e| DbError::Invariant(format!("card {card_id}: stored user id: {e}")))?,
        identity,
    })
}

pub fn load_card_ref(conn: &mut PgConnection, card_id: i64) -> Result<CardRef, DbError> {
    let (account_id, user, identity): (i64, String, Identity) = cards::table
        .inner_join(cardholders::table)
        .filter(cards::id.eq(card_id))
        .select((cards::account_id, cards::user_id, cardholders::identity))
        .first(conn)?;
    card_ref(card_id, account_id, &user, identity)
}

/// The outcome a stored transaction stands for.
pub(super) fn outcome_of(
    conn: &mut PgConnection,
    row: &TransactionRow,
) -> Result<Outcome, DbError> {
    Ok(match row.state {
        TxState::Created => Outcome::Pending,
        TxState::AwaitingConfirmation => {
            let name: Option<String> = merchants::table
                .find(&row.merchant_id)
                .select(merchants::name)
                .first(conn)
                .optional()?;
            Outcome::AwaitingConfirmation(awaiting_of(row, name)?)
        }
        status @ (TxState::Approved | TxState::Declined | TxState::Reversed | TxState::Voided) => {
            Outcome::Done(FinalResult {
                status,
                reason: row.reason,
                processed_at: row.processed_at.unwrap_or(row.created_at),
                balance_after: row.balance_after.map(money),
            })
        }
    })
}

/// The pending answer of a transaction awaiting its cardholder's confirmation, the same each
/// time it is re-sent: parked at `processed_at`, until `confirm_deadline`.
pub(super) fn awaiting_of(
    row: &TransactionRow,
    merchant_name: Option<String>,
) -> Result<AwaitingConfirmation, DbError> {
    let broken = |what: &str| DbError::Invariant(format!("transaction {} {what}", row.id));
    Ok(AwaitingConfirmation {
        requested_at: row.processed_at.unwrap_or(row.created_at),
        expires_at: row
            .confirm_deadline
            .ok_or_else(|| broken("awaits confirmation without a deadline"))?,
        merchant_name: merchant_name.ok_or_else(|| broken("has no merchant"))?,
    })
}

/// Replaces what a retried request carries with what was stored the first time.
pub(super) fn fill_from_row(
    conn: &mut PgConnection,
    item: &mut PaymentItem,
    row: &TransactionRow,
) -> Result<(), DbError> {
    item.transaction_id = Some(TransactionId(row.id));
    item.amount = row.amount.and_then(|a| Amount::try_from_decimal(a).ok());
    item.fee = row.fee.map(money);
    item.fee_rule_id = row.fee_rule_id;
    match row.card_id {
        // A tombstone (reversal before the request) has no card: neither has its result.
        None => item.card = None,
        Some(card_id) if item.card.as_ref().map(|c| c.card_id) != Some(card_id) => {
            item.card = Some(load_card_ref(conn, card_id)?);
        }
        Some(_) => {}
    }
    item.outcome = outcome_of(conn, row)?;
    Ok(())
}

/// The answered item a stored transaction stands for (for re-sending its result, or its
/// pending answer while it awaits confirmation), or `None` while it is still `created`.
pub fn item_from_row(
    conn: &mut PgConnection,
    row: &TransactionRow,
    card: Option<CardRef>,
) -> Result<Option<PaymentItem>, DbError> {
    let outcome = outcome_of(conn, row)?;
    if matches!(outcome, Outcome::Pending) {
        return Ok(None);
    }
    let (Ok(merchant_id), Ok(terminal_id)) = (
        MerchantId::parse(&row.merchant_id),
        TerminalId::parse(&row.terminal_id),
    ) else {
        return Ok(None);
    };
    Ok(Some(PaymentItem {
        request_id: crate::domain::RequestId(row.request_id),
        mode: row.mode,
        merchant_id,
        terminal_id,
        amount: row.amount.and_then(|a| Amount::try_from_decimal(a).ok()),
        code_hash: None,
        card,
        transaction_id: Some(TransactionId(row.id)),
        fee: row.fee.map(money),
        fee_rule_id: row.fee_rule_id,
        pin_verified: false,
        outcome,
    }))
}

/// The item that hands a transaction back to settlement (a confirmation, a decline, a
/// deadline): what the stages recorded, still to be decided. `pin_verified` says what the
/// sender checked; settlement believes the transaction's `confirmed_at` only.
pub fn pending_item(
    row: &TransactionRow,
    card: CardRef,
    pin_verified: bool,
) -> Result<PaymentItem, DbError> {
    let broken = |e: crate::domain::IdError| {
        DbError::Invariant(format!("transaction {}: stored id: {e}", row.id))
    };
    Ok(PaymentItem {
        request_id: crate::domain::RequestId(row.request_id),
        mode: row.mode,
        merchant_id: MerchantId::parse(&row.merchant_id).map_err(broken)?,
        terminal_id: TerminalId::parse(&row.terminal_id).map_err(broken)?,
        amount: row.amount.and_then(|a| Amount::try_from_decimal(a).ok()),
        code_hash: None,
        card: Some(card),
        transaction_id: Some(TransactionId(row.id)),
        fee: row.fee.map(money),
        fee_rule_id: row.fee_rule_id,
        pin_verified,
        outcome: Outcome::Pending,
    })
}
