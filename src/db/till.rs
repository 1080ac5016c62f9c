//! What a till's page reads: the sales of the current campus day at that till (`GET
//! /pos/v1/sales`). Read-only; money moves only through the pipeline and `ops`.

use super::schema::transactions;
use super::{money, DbError};
use crate::domain::{DeclineReason, MerchantId, Money, PaymentMode, TerminalId, TxState};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// The most sales a page is sent (a busy canteen till makes a few hundred a day); the totals
/// cover them all.
pub const SALES_LIMIT: i64 = 500;

#[derive(Debug, Clone, Serialize)]
pub struct Sale {
    pub transaction_id: Uuid,
    pub request_id: Uuid,
    pub mode: PaymentMode,
    pub state: TxState,
    pub reason: Option<DeclineReason>,
    pub amount: Option<Money>,
    pub fee: Option<Money>,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sales {
    /// Newest first, at most `SALES_LIMIT`.
    pub sales: Vec<Sale>,
    /// Approved payments of the day (reversed ones are not counted) and what they took.
    pub approved_count: i64,
    pub approved_amount: Money,
    pub approved_fee: Money,
}

type Row = (
    Uuid,
    Uuid,
    PaymentMode,
    TxState,
    Option<DeclineReason>,
    Option<Decimal>,
    Option<Decimal>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// The sales made at `m`/`t` since `since` (the campus day's start).
pub fn sales_since(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
    since: DateTime<Utc>,
) -> Result<Sales, DbError> {
    let at_till = || {
        transactions::table
            .filter(transactions::merchant_id.eq(m.as_str()))
            .filter(transactions::terminal_id.eq(t.as_str()))
            .filter(transactions::created_at.ge(since))
    };
    let rows: Vec<Row> = at_till()
        .order(transactions::created_at.desc())
        .limit(SALES_LIMIT)
        .select((
            transactions::id,
            transactions::request_id,
            transactions::mode,
            transactions::state,
            transactions::reason,
            transactions::amount,
            transactions::fee,
            transactions::created_at,
            transactions::processed_at,
        ))
        .load(conn)?;
    let (count, amount, fee): (i64, Option<Decimal>, Option<Decimal>) = at_till()
        .filter(transactions::state.eq(TxState::Approved))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::sum(transactions::amount),
            diesel::dsl::sum(transactions::fee),
        ))
        .first(conn)?;
    Ok(Sales {
        sales: rows
            .into_iter()
            .map(
                |(id, rid, mode, state, reason, amount, fee, created_at, processed_at)| Sale {
                    transaction_id: id,
                    request_id: rid,
                    mode,
                    state,
                    reason,
                    amount: amount.map(money),
                    fee: fee.map(money),
                    created_at,
                    processed_at,
                },
            )
            .collect(),
        approved_count: count,
        approved_amount: amount.map(money).unwrap_or(Money::ZERO),
        approved_fee: fee.map(money).unwrap_or(Money::ZERO),
    })
}

/// The order that paid the dynamic QR code `reference` of till `m`/`t` (`Some(None)`: not paid
/// yet; `None`: no such code at this till). The page matches a forward-scan result to the code
/// it shows by this order's id, which is the result's `transaction_id`.
pub fn dynamic_qr_order(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
    reference: &str,
) -> Result<Option<Option<Uuid>>, DbError> {
    use super::schema::dynamic_qr_codes as d;
    Ok(d::table
        .find(reference)
        .filter(d::merchant_id.eq(m.as_str()))
        .filter(d::terminal_id.eq(t.as_str()))
        .select(d::order_id)
        .first(conn)
        .optional()?)
}
