//! Row types. Enum columns are read and written as the domain enums (`db::enums`).

use super::schema::*;
use crate::domain::{DeclineReason, EntryKind, LegKind, PaymentMode, TxState};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = transactions, check_for_backend(diesel::pg::Pg))]
pub struct TransactionRow {
    pub id: Uuid,
    pub mode: PaymentMode,
    pub request_scope: String,
    pub request_id: Uuid,
    pub merchant_id: String,
    pub terminal_id: String,
    pub card_id: Option<i64>,
    pub user_id: Option<String>,
    /// `None` only for a tombstone (a reversal that came before its request).
    pub amount: Option<Decimal>,
    pub fee: Option<Decimal>,
    pub fee_rule_id: Option<i64>,
    pub state: TxState,
    pub reason: Option<DeclineReason>,
    pub balance_after: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub reversed_at: Option<DateTime<Utc>>,
    /// A reverse scan waiting for its cardholder's confirmation: declined when unconfirmed by
    /// then.
    pub confirm_deadline: Option<DateTime<Utc>>,
    /// The cardholder confirmed it with the right PIN.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The cardholder declined it.
    pub confirm_declined_at: Option<DateTime<Utc>>,
    /// Last handed back to settlement (by the platform or the confirmation sweeper).
    pub confirm_sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = transactions)]
pub struct NewTransaction<'a> {
    pub id: Uuid,
    pub mode: PaymentMode,
    pub request_scope: &'a str,
    pub request_id: Uuid,
    pub merchant_id: &'a str,
    pub terminal_id: &'a str,
    pub card_id: Option<i64>,
    pub user_id: Option<&'a str>,
    pub amount: Option<Decimal>,
    pub state: TxState,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = postings)]
pub struct NewPosting {
    pub entry_id: Uuid,
    pub leg: LegKind,
    pub account_id: i64,
    pub amount: Decimal,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = journal_entries)]
pub struct NewEntry<'a> {
    pub id: Uuid,
    pub kind: EntryKind,
    pub transaction_id: Option<Uuid>,
    pub memo: &'a str,
}
