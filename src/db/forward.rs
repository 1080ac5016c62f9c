//! Forward-scan (正扫) repository: dynamic merchant QR codes and the phone's orders.

use super::cards::PinOutcome;
use super::payments::load_card_ref;
use super::schema::*;
use super::{money, DbError};
use crate::domain::pin::PinAttempt;
use crate::domain::{
    Amount, CardId, CardStatus, DeclineReason, Identity, MerchantId, Money, OrderState,
    OrderStatus, QrKind, TerminalId, TxState, UserId,
};
use crate::messages::internal::CardRef;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// Why an order cannot be created or paid: the request's fault, not the database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderProblem {
    #[error("the merchant is not known")]
    UnknownMerchant,
    #[error("the terminal is not known")]
    UnknownTerminal,
    #[error("the dynamic QR code is not known or was altered")]
    QrTampered,
    #[error("the dynamic QR code has expired")]
    QrExpired,
    #[error("the dynamic QR code was already used")]
    QrUsed,
    #[error("no such order")]
    NotFound,
    #[error("this QR code has no amount: give one")]
    AmountRequired,
    #[error("the amount differs from the one in the dynamic QR code")]
    AmountMismatch,
    #[error("the order was already submitted with another amount")]
    AlreadySubmitted,
    #[error("the card is frozen")]
    CardFrozen,
    #[error("no card for this cardholder")]
    NoCard,
    #[error("this amount is above the card's password-free limit: confirm with the card's PIN")]
    PinRequired,
    #[error("wrong PIN{}", tries_left.map(|n| format!("; {n} more wrong and the PIN locks")).unwrap_or_default())]
    PinInvalid { tries_left: Option<i32> },
    #[error("the PIN is locked after too many wrong tries; it unlocks at {until} (or ask the card office)")]
    PinLocked { until: DateTime<Utc> },
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dynamic_qr_codes, check_for_backend(diesel::pg::Pg))]
pub struct DynamicQrRow {
    pub reference: String,
    pub request_scope: String,
    pub request_id: Uuid,
    pub merchant_id: String,
    pub terminal_id: String,
    pub amount: Decimal,
    pub payload: String,
    pub expires_at: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

pub struct NewDynamicQr<'a> {
    pub scope: &'a str,
    pub request_id: Uuid,
    pub merchant: &'a MerchantId,
    pub terminal: &'a TerminalId,
    pub amount: Amount,
    pub reference: &'a str,
    pub payload: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// What `check_terminal` can find missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalProblem {
    UnknownMerchant,
    UnknownTerminal,
}

impl From<TerminalProblem> for OrderProblem {
    fn from(p: TerminalProblem) -> OrderProblem {
        match p {
            TerminalProblem::UnknownMerchant => OrderProblem::UnknownMerchant,
            TerminalProblem::UnknownTerminal => OrderProblem::UnknownTerminal,
        }
    }
}

/// Checks the merchant and terminal exist; the merchant's name.
pub fn check_terminal(
    conn: &mut PgConnection,
    m: &str,
    t: Option<&str>,
) -> Result<Result<String, TerminalProblem>, DbError> {
    let name: Option<String> = merchants::table
        .find(m)
        .select(merchants::name)
        .first(conn)
        .optional()?;
    let Some(name) = name else {
        return Ok(Err(TerminalProblem::UnknownMerchant));
    };
    if let Some(t) = t {
        let exists: bool =
            diesel::select(diesel::dsl::exists(terminals::table.find((m, t)))).get_result(conn)?;
        if !exists {
            return Ok(Err(TerminalProblem::UnknownTerminal));
        }
    }
    Ok(Ok(name))
}

/// Issues a dynamic code once per POS request (a retry gets the same code back).
pub fn issue_dynamic(
    conn: &mut PgConnection,
    new: NewDynamicQr,
) -> Result<Result<DynamicQrRow, TerminalProblem>, DbError> {
    if let Err(p) = check_terminal(conn, new.merchant.as_str(), Some(new.terminal.as_str()))? {
        return Ok(Err(p));
    }
    diesel::insert_into(dynamic_qr_codes::table)
        .values((
            dynamic_qr_codes::reference.eq(new.reference),
            dynamic_qr_codes::request_scope.eq(new.scope),
            dynamic_qr_codes::request_id.eq(new.request_id),
            dynamic_qr_codes::merchant_id.eq(new.merchant.as_str()),
            dynamic_qr_codes::terminal_id.eq(new.terminal.as_str()),
            dynamic_qr_codes::amount.eq(new.amount.value()),
            dynamic_qr_codes::payload.eq(new.payload),
            dynamic_qr_codes::expires_at.eq(new.expires_at),
        ))
        .on_conflict((
            dynamic_qr_codes::request_scope,
            dynamic_qr_codes::request_id,
        ))
        .do_nothing()
        .execute(conn)?;
    Ok(Ok(dynamic_qr_codes::table
        .filter(dynamic_qr_codes::request_scope.eq(new.scope))
        .filter(dynamic_qr_codes::request_id.eq(new.request_id))
        .select(DynamicQrRow::as_select())
        .first(conn)?))
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: String,
    pub request_id: Uuid,
    pub qr_kind: QrKind,
    pub merchant_id: String,
    pub terminal_id: String,
    pub amount: Option<Decimal>,
    pub dynamic_reference: Option<String>,
    pub state: OrderState,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// What the phone sees of an order.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub qr_kind: QrKind,
    pub merchant_id: String,
    pub merchant_name: String,
    pub terminal_id: String,
    /// Fixed for a dynamic code; for a static code, known once the cardholder typed it.
    pub amount: Option<Amount>,
    pub fee_rate: String,
    pub fee: Option<Money>,
    pub total: Option<Money>,
    /// `open` (waiting for confirmation), `processing`, or the transaction's final state.
    pub status: OrderStatus,
    pub reason: Option<DeclineReason>,
    pub balance_after: Option<Money>,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

pub struct NewOrder<'a> {
    pub user: &'a UserId,
    pub request_id: Uuid,
    pub qr_kind: QrKind,
    pub merchant: &'a MerchantId,
    pub terminal: &'a TerminalId,
    pub amount: Option<Amount>,
    pub dynamic_reference: Option<&'a str>,
}

/// The cardholder has a card and it is active.
fn card_usable(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<(), OrderProblem>, DbError> {
    let status: Option<CardStatus> = cards::table
        .filter(cards::user_id.eq(user.as_str()))
        .select(cards::status)
        .first(conn)
        .optional()?;
    Ok(match status {
        None => Err(OrderProblem::NoCard),
        Some(CardStatus::Active) => Ok(()),
        Some(CardStatus::Frozen) => Err(OrderProblem::CardFrozen),
    })
}

/// Creates the order for a scanned QR code, idempotent on the phone's `request_id`. A dynamic
/// code is claimed by the first order that scans it.
pub fn create_order(
    conn: &mut PgConnection,
    new: NewOrder,
) -> Result<Result<OrderView, OrderProblem>, DbError> {
    conn.transaction(|conn| {
        let existing: Option<Uuid> = orders::table
            .filter(orders::user_id.eq(new.user.as_str()))
            .filter(orders::request_id.eq(new.request_id))
            .select(orders::id)
            .first(conn)
            .optional()?;
        if let Some(id) = existing {
            return view_order(conn, new.user, id);
        }
        if let Err(p) = card_usable(conn, new.user)? {
            return Ok(Err(p));
        }
        // A merchant-only printed code has no terminal of its own (results go to the counter).
        let terminal = (new.qr_kind != QrKind::StaticMerchant).then_some(new.terminal.as_str());
        if let Err(p) = check_terminal(conn, new.merchant.as_str(), terminal)? {
            return Ok(Err(p.into()));
        }
        let id = Uuid::new_v4();
        if let Some(reference) = new.dynamic_reference {
            let claimed = diesel::update(
                dynamic_qr_codes::table
                    .find(reference)
                    .filter(dynamic_qr_codes::order_id.is_null())
                    .filter(dynamic_qr_codes::expires_at.gt(diesel::dsl::now)),
            )
            .set(dynamic_qr_codes::order_id.eq(id))
            .execute(conn)?;
            if claimed == 0 {
                let row: Option<(Option<Uuid>, DateTime<Utc>)> = dynamic_qr_codes::table
                    .find(reference)
                    .select((dynamic_qr_codes::order_id, dynamic_qr_codes::expires_at))
                    .first(conn)
                    .optional()?;
                return Ok(Err(match row {
                    None => OrderProblem::QrTampered,
                    Some((Some(_), _)) => OrderProblem::QrUsed,
                    Some((None, _)) => OrderProblem::QrExpired,
                }));
            }
        }
        diesel::insert_into(orders::table)
            .values((
                orders::id.eq(id),
                orders::user_id.eq(new.user.as_str()),
                orders::request_id.eq(new.request_id),
                orders::qr_kind.eq(new.qr_kind),
                orders::merchant_id.eq(new.merchant.as_str()),
                orders::terminal_id.eq(new.terminal.as_str()),
                orders::amount.eq(new.amount.map(|a| a.value())),
                orders::dynamic_reference.eq(new.dynamic_reference),
            ))
            .execute(conn)?;
        view_order(conn, new.user, id)
    })
}

/// Looks a dynamic code up by its reference.
pub fn find_dynamic(
    conn: &mut PgConnection,
    reference: &str,
) -> Result<Option<DynamicQrRow>, DbError> {
    Ok(dynamic_qr_codes::table
        .find(reference)
        .select(DynamicQrRow::as_select())
        .first(conn)
        .optional()?)
}

/// state, reason, fee, balance after, processed at
type TxOutcomeRow = (
    TxState,
    Option<DeclineReason>,
    Option<Decimal>,
    Option<Decimal>,
    Option<DateTime<Utc>>,
);

/// The order as its owner sees it; another cardholder's order does not exist for them.
pub fn view_order(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Result<OrderView, OrderProblem>, DbError> {
    let row: Option<OrderRow> = orders::table
        .find(id)
        .filter(orders::user_id.eq(user.as_str()))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(Err(OrderProblem::NotFound));
    };
    let merchant_name: String = merchants::table
        .find(&row.merchant_id)
        .select(merchants::name)
        .first(conn)?;
    let identity: Identity = cardholders::table
        .find(user.as_str())
        .select(cardholders::identity)
        .first(conn)?;
    let merchant = MerchantId::parse(&row.merchant_id)
        .map_err(|e| DbError::Invariant(format!("order {}: {e}", row.id)))?;
    let rule = super::fees::rule_for(conn, identity, &merchant)?;
    let tx: Option<TxOutcomeRow> = transactions::table
        .find(row.id)
        .select((
            transactions::state,
            transactions::reason,
            transactions::fee,
            transactions::balance_after,
            transactions::processed_at,
        ))
        .first(conn)
        .optional()?;
    let amount = row.amount.and_then(|a| Amount::try_from_decimal(a).ok());
    let fee = match (&tx, amount) {
        (Some((_, _, Some(fee), _, _)), _) => Some(money(*fee)),
        (_, Some(a)) => Some(rule.as_ref().map_or(Money::ZERO, |r| r.rate.fee_for(a))),
        _ => None,
    };
    let (status, reason, balance_after, processed_at) = match (row.state, tx) {
        (OrderState::Open, _) => (OrderStatus::Open, None, None, None),
        (OrderState::Submitted, None) => (OrderStatus::Processing, None, None, None),
        (OrderState::Submitted, Some((state, reason, _, balance, at))) => {
            (OrderStatus::from(state), reason, balance.map(money), at)
        }
    };
    Ok(Ok(OrderView {
        order_id: row.id,
        request_id: row.request_id,
        qr_kind: row.qr_kind,
        merchant_id: row.merchant_id,
        merchant_name,
        terminal_id: row.terminal_id,
        amount,
        fee_rate: rule.map_or_else(|| "0".into(), |r| r.rate.to_string()),
        fee,
        total: amount.and_then(|a| fee.and_then(|f| a.money().checked_add(f))),
        status,
        reason,
        balance_after,
        created_at: row.created_at,
        processed_at,
    }))
}

/// What the platform needs to publish a submitted order into the pipeline.
pub struct Submitted {
    pub order: OrderRow,
    pub amount: Amount,
    pub card: CardRef,
    /// The cardholder gave the right PIN (needed above the password-free amount).
    pub pin_verified: bool,
}

/// A PIN as the platform received it, and how to check it.
pub struct PinCheck<'a> {
    pub pin: Option<&'a str>,
    /// The keyed hash the stored one must equal.
    pub hash: Option<Vec<u8>>,
}

/// The cardholder confirms: fixes the amount (given for a static code, checked for a dynamic
/// one) and marks the order submitted. Idempotent: a repeated confirmation with the same
/// amount returns the same order so the caller can re-publish it safely.
pub fn submit_order(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
    amount: Option<Amount>,
    pin: PinCheck,
) -> Result<Result<Submitted, OrderProblem>, DbError> {
    conn.transaction(|conn| {
        let row: Option<OrderRow> = orders::table
            .find(id)
            .filter(orders::user_id.eq(user.as_str()))
            .select(OrderRow::as_select())
            .for_update()
            .first(conn)
            .optional()?;
        let Some(row) = row else {
            return Ok(Err(OrderProblem::NotFound));
        };
        if row.state == OrderState::Open {
            if let Err(p) = card_usable(conn, user)? {
                return Ok(Err(p));
            }
        }
        let stored = row.amount.and_then(|a| Amount::try_from_decimal(a).ok());
        let amount = match (row.qr_kind, stored, amount) {
            (QrKind::Dynamic, Some(s), Some(a)) if s != a => {
                return Ok(Err(OrderProblem::AmountMismatch))
            }
            (QrKind::Dynamic, Some(s), _) => s,
            (_, Some(s), Some(a)) if s != a => return Ok(Err(OrderProblem::AlreadySubmitted)),
            (_, _, Some(a)) => a,
            (_, Some(s), None) if row.state == OrderState::Submitted => s,
            _ => return Ok(Err(OrderProblem::AmountRequired)),
        };
        let card_id: Option<i64> = cards::table
            .filter(cards::user_id.eq(user.as_str()))
            .select(cards::id)
            .first(conn)
            .optional()?;
        let Some(card_id) = card_id else {
            return Ok(Err(OrderProblem::NoCard));
        };
        let card = load_card_ref(conn, card_id)?;
        let limits = super::cards::limits_of_cards(conn, &[CardId(card_id)])?;
        let needs_pin = limits.first().is_some_and(|l| l.limits().needs_pin(amount));
        let pin_verified = match (pin.pin, pin.hash) {
            (Some(_), Some(given)) => match super::cards::attempt_pin(conn, user, &given)? {
                None => return Ok(Err(OrderProblem::NoCard)),
                Some(PinOutcome::NotSet) => {
                    return Ok(Err(OrderProblem::PinInvalid { tries_left: None }))
                }
                Some(PinOutcome::Checked(PinAttempt::Accepted)) => true,
                Some(PinOutcome::Checked(PinAttempt::Wrong {
                    locked_until: Some(until),
                    ..
                }))
                | Some(PinOutcome::Checked(PinAttempt::Locked { until })) => {
                    return Ok(Err(OrderProblem::PinLocked { until }))
                }
                Some(PinOutcome::Checked(PinAttempt::Wrong {
                    tries_left,
                    locked_until: None,
                })) => {
                    return Ok(Err(OrderProblem::PinInvalid {
                        tries_left: Some(tries_left),
                    }))
                }
            },
            _ => false,
        };
        if needs_pin && !pin_verified {
            return Ok(Err(OrderProblem::PinRequired));
        }
        if row.state == OrderState::Open {
            diesel::update(orders::table.find(id))
                .set((
                    orders::state.eq(OrderState::Submitted),
                    orders::amount.eq(amount.value()),
                    orders::submitted_at.eq(diesel::dsl::now),
                ))
                .execute(conn)?;
        }
        let order = orders::table
            .find(id)
            .select(OrderRow::as_select())
            .first(conn)?;
        Ok(Ok(Submitted {
            order,
            amount,
            card,
            pin_verified,
        }))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct MerchantInfo {
    pub merchant_id: String,
    pub name: String,
}

pub fn merchant_name(conn: &mut PgConnection, m: &MerchantId) -> Result<Option<String>, DbError> {
    Ok(merchants::table
        .find(m.as_str())
        .select(merchants::name)
        .first(conn)
        .optional()?)
}

/// Records a printed static code (the latest print of a merchant's or terminal's code wins).
pub fn record_static(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: Option<&TerminalId>,
    payload: &str,
) -> Result<(), DbError> {
    let t = t.map(|t| t.as_str()).unwrap_or("");
    diesel::insert_into(static_qr_codes::table)
        .values((
            static_qr_codes::merchant_id.eq(m.as_str()),
            static_qr_codes::terminal_id.eq(t),
            static_qr_codes::payload.eq(payload),
        ))
        .on_conflict((static_qr_codes::merchant_id, static_qr_codes::terminal_id))
        .do_update()
        .set((
            static_qr_codes::payload.eq(payload),
            static_qr_codes::printed_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}
