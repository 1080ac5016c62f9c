//! Settlement's repository (the card backend): loads and locks what `domain::settlement::decide`
//! needs, and writes what it decides. A whole batch is one database transaction of a fixed
//! number of statements, whatever its size:
//! 1. the transactions, locked in id order (`FOR UPDATE`): a payment still `created` is ours
//!    to decide; one `awaiting_confirmation` is finished if its cardholder declined it or its
//!    deadline passed (by the database's clock, which the sweeper uses too), else its pending
//!    answer is re-sent; anything else is final already and only re-sent;
//! 2. each payment's card, limits and merchant account, read from the card and merchant rows of
//!    the transaction — never from the message — and the card's spending today (with its
//!    limits, one statement);
//! 3. the card accounts, locked in id order (`journal::lock_cards`);
//! 4. the decisions, in memory, in arrival order per card. A reverse scan counts its PIN as
//!    given only when the transaction records the cardholder's confirmation (`confirmed_at`,
//!    written by the platform after checking the PIN), never because a message says so;
//! 5. one statement per kind of write: declines, finished confirmations, payments parked for
//!    confirmation (with their deadline), approvals, then the journal entries (`journal::post`,
//!    which credits merchants and the school last, just before the commit).

use super::cards::{LimitsRow, LIMITS_COLUMNS, LIMITS_FROM};
use super::journal;
use super::models::TransactionRow;
use super::payments::{awaiting_of, load_card_ref, outcome_of};
use super::schema::*;
use super::{batch, money, DbError};
use crate::domain::settlement::{decide, CardBook, Payment, Verdict};
use crate::domain::{AccountId, Amount, CardId, DeclineReason, Money, PaymentMode, TxState};
use crate::messages::internal::{AwaitingConfirmation, FinalResult, Outcome, PaymentItem};
use crate::messages::now_micros;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// A card's limits and what it has spent today.
#[derive(diesel::QueryableByName)]
struct CardToday {
    #[diesel(embed)]
    limits: LimitsRow,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    spent: Decimal,
}

/// The cards' limits (their own, else their identity's, as `cards::limits_of_cards`) and their
/// approved amounts since `day_start`, across both scan directions: one statement.
fn limits_and_spending(
    conn: &mut PgConnection,
    card_ids: &[CardId],
    day_start: DateTime<Utc>,
) -> Result<Vec<(LimitsRow, Money)>, DbError> {
    if card_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = card_ids.iter().map(|c| c.0).collect();
    let rows: Vec<CardToday> = diesel::sql_query(format!(
        "SELECT {LIMITS_COLUMNS}, \
                COALESCE((SELECT sum(t.amount) FROM transactions t \
                          WHERE t.card_id = c.id AND t.state = $3 AND t.processed_at >= $2), 0) \
                    AS spent \
         FROM {LIMITS_FROM} WHERE c.id = ANY($1)"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(ids)
    .bind::<diesel::sql_types::Timestamptz, _>(day_start)
    .bind::<diesel::sql_types::Text, _>(TxState::Approved)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.limits, money(r.spent)))
        .collect())
}

/// Where each pending item stands before the decisions.
enum Plan {
    /// Decided by `decide`: the index of its payment.
    Decide(usize),
    /// The same transaction as an earlier item of this batch (a request sent twice).
    SameAs(usize),
    /// Cannot be settled: a bug upstream or a damaged row.
    Decline(DeclineReason),
    /// Awaiting confirmation, and now declined by its cardholder or past its deadline.
    Finish(DeclineReason),
    /// Final already, or still awaiting confirmation (a redelivery): its stored outcome is
    /// re-sent.
    Final,
}

/// A merchant as settlement needs it.
struct MerchantBook {
    account: AccountId,
    name: String,
}

/// Settles a batch: see the module doc. `day_start` is when the campus day began (daily limits);
/// a payment parked for its cardholder's confirmation waits `confirm_for`.
///
/// `fee_income` remembers the school's fee-income account across batches: the first migration
/// makes it and nothing changes or removes it, so it is read once per stage (per database),
/// not once per batch.
pub fn settle(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
    day_start: DateTime<Utc>,
    confirm_for: chrono::Duration,
    fee_income: &std::sync::OnceLock<AccountId>,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        let at = now_micros();
        let fee_income = match fee_income.get() {
            Some(&id) => id,
            None => {
                let id = journal::fee_income(conn)?;
                *fee_income.get_or_init(|| id)
            }
        };

        // 1. The transactions, locked in id order.
        let tx_ids: Vec<Uuid> = items
            .iter()
            .filter(|i| i.is_pending())
            .filter_map(|i| i.transaction_id.map(|t| t.0))
            .collect();
        let rows: HashMap<Uuid, TransactionRow> = transactions::table
            .filter(transactions::id.eq_any(&tx_ids))
            .order(transactions::id)
            .for_update()
            .select(TransactionRow::as_select())
            .load(conn)?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();

        // 2. Cards and merchants, from the rows.
        let open: Vec<&TransactionRow> = rows
            .values()
            .filter(|r| r.state == TxState::Created)
            .collect();
        let mut card_ids: Vec<CardId> = open.iter().filter_map(|r| r.card_id.map(CardId)).collect();
        card_ids.sort_unstable();
        card_ids.dedup();
        let merchant_ids: Vec<&str> = rows
            .values()
            .filter(|r| matches!(r.state, TxState::Created | TxState::AwaitingConfirmation))
            .map(|r| r.merchant_id.as_str())
            .collect();
        let merchant_books: HashMap<String, MerchantBook> = merchants::table
            .filter(merchants::id.eq_any(&merchant_ids))
            .select((merchants::id, merchants::account_id, merchants::name))
            .load::<(String, i64, String)>(conn)?
            .into_iter()
            .map(|(m, account, name)| {
                let account = AccountId(account);
                (m, MerchantBook { account, name })
            })
            .collect();
        // Whether a confirmation's deadline passed, by the clock the sweeper goes by too; read
        // only when a batch holds a payment awaiting confirmation.
        let db_now: Option<DateTime<Utc>> = if rows
            .values()
            .any(|r| r.state == TxState::AwaitingConfirmation)
        {
            Some(
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
                    .get_result(conn)?,
            )
        } else {
            None
        };
        let limits = limits_and_spending(conn, &card_ids, day_start)?;

        // 3. The card accounts, locked in id order.
        let accounts: Vec<AccountId> = limits
            .iter()
            .map(|(l, _)| AccountId(l.account_id))
            .collect();
        let mut locks = journal::lock_cards(conn, &accounts)?;
        let mut books: HashMap<CardId, CardBook> = HashMap::with_capacity(limits.len());
        for (l, spent_today) in &limits {
            let account = AccountId(l.account_id);
            let balance = crate::db::admin::locked_balance(&locks, account)?;
            books.insert(
                CardId(l.card_id),
                CardBook {
                    account,
                    balance,
                    limits: Some(l.limits()),
                    spent_today: *spent_today,
                    has_pin: l.has_pin,
                },
            );
        }

        // 4. The decisions, in arrival order.
        let mut payments: Vec<Payment> = Vec::new();
        let mut plans: Vec<(usize, Plan)> = Vec::new();
        let mut first_item: HashMap<Uuid, usize> = HashMap::new();
        for (i, item) in items.iter_mut().enumerate() {
            if !item.is_pending() {
                continue;
            }
            let Some(row) = item.transaction_id.and_then(|t| rows.get(&t.0)) else {
                plans.push((i, Plan::Decline(DeclineReason::InternalError)));
                continue;
            };
            if let Some(&first) = first_item.get(&row.id) {
                plans.push((i, Plan::SameAs(first)));
                continue;
            }
            first_item.insert(row.id, i);
            // The result goes to the card of the row, whatever the message said.
            if let Some(card_id) = row.card_id {
                if item.card.as_ref().map(|c| c.card_id) != Some(card_id) {
                    item.card = Some(load_card_ref(conn, card_id)?);
                }
            }
            if row.state == TxState::AwaitingConfirmation {
                item.fee = row.fee.map(money);
                let overdue = match (row.confirm_deadline, db_now) {
                    (Some(deadline), Some(now)) => deadline <= now,
                    // The CHECK `awaiting_has_deadline` rules the first out; the clock was read
                    // for every batch with such a row.
                    (None, _) | (_, None) => true,
                };
                if row.confirm_declined_at.is_some() {
                    plans.push((i, Plan::Finish(DeclineReason::UserDeclined)));
                } else if overdue {
                    plans.push((i, Plan::Finish(DeclineReason::ConfirmationTimeout)));
                } else {
                    let name = merchant_books.get(&row.merchant_id).map(|m| m.name.clone());
                    item.outcome = Outcome::AwaitingConfirmation(awaiting_of(row, name)?);
                    plans.push((i, Plan::Final));
                }
                continue;
            }
            if row.state != TxState::Created {
                item.outcome = outcome_of(conn, row)?;
                item.fee = row.fee.map(money);
                plans.push((i, Plan::Final));
                continue;
            }
            // A reverse scan's PIN is given only by a confirmation the platform recorded after
            // checking it. A forward scan's comes with the order, checked by the platform too.
            let pin_verified = match row.mode {
                PaymentMode::ReverseScan => row.confirmed_at.is_some(),
                PaymentMode::ForwardScan => item.pin_verified,
            };
            let payment = match (
                row.card_id,
                merchant_books.get(&row.merchant_id),
                row.amount.and_then(|a| Amount::try_from_decimal(a).ok()),
                row.fee,
            ) {
                (Some(card), Some(merchant), Some(amount), Some(fee)) => Payment {
                    transaction: crate::domain::TransactionId(row.id),
                    card: CardId(card),
                    merchant_account: merchant.account,
                    mode: row.mode,
                    amount,
                    fee: money(fee),
                    pin_verified,
                },
                // Only a tombstone lacks an amount, and it is never `created`; the fee stage
                // stores every fee before it hands a payment on.
                _ => {
                    plans.push((i, Plan::Decline(DeclineReason::InternalError)));
                    continue;
                }
            };
            item.fee = Some(payment.fee);
            plans.push((i, Plan::Decide(payments.len())));
            payments.push(payment);
        }
        let verdicts = decide(&payments, &mut books, fee_income);

        // 5. The writes.
        let mut declines: Vec<(Uuid, DeclineReason)> = Vec::new();
        let mut finished: Vec<(Uuid, DeclineReason)> = Vec::new();
        let mut parked: Vec<(Uuid, DateTime<Utc>)> = Vec::new();
        let mut approvals: Vec<(Uuid, Money)> = Vec::new();
        let mut entries = Vec::new();
        let mut decided: HashMap<usize, Outcome> = HashMap::new();
        for (i, plan) in plans {
            let outcome = match plan {
                Plan::Final => continue,
                Plan::SameAs(first) => match decided.get(&first) {
                    Some(o) => o.clone(),
                    None => items[first].outcome.clone(),
                },
                Plan::Decline(reason) => {
                    if let Some(t) = items[i].transaction_id {
                        if rows.contains_key(&t.0) {
                            declines.push((t.0, reason));
                        }
                    }
                    declined(reason, at)
                }
                Plan::Finish(reason) => {
                    if let Some(t) = items[i].transaction_id {
                        finished.push((t.0, reason));
                    }
                    declined(reason, at)
                }
                Plan::Decide(p) => match &verdicts[p] {
                    Verdict::Declined(reason) => {
                        declines.push((payments[p].transaction.0, *reason));
                        declined(*reason, at)
                    }
                    Verdict::AwaitConfirmation => {
                        let expires_at = at + confirm_for;
                        parked.push((payments[p].transaction.0, expires_at));
                        // The payment was built from this merchant's row.
                        let merchant_name = items[i]
                            .transaction_id
                            .and_then(|t| rows.get(&t.0))
                            .and_then(|r| merchant_books.get(&r.merchant_id))
                            .map(|m| m.name.clone())
                            .ok_or_else(|| {
                                DbError::Invariant(format!(
                                    "transaction {} lost its merchant",
                                    payments[p].transaction
                                ))
                            })?;
                        Outcome::AwaitingConfirmation(AwaitingConfirmation {
                            requested_at: at,
                            expires_at,
                            merchant_name,
                        })
                    }
                    Verdict::Approved {
                        balance_after,
                        entry,
                    } => {
                        approvals.push((payments[p].transaction.0, *balance_after));
                        entries.push(entry.clone());
                        Outcome::Done(FinalResult {
                            status: TxState::Approved,
                            reason: None,
                            processed_at: at,
                            balance_after: Some(*balance_after),
                        })
                    }
                },
            };
            decided.insert(i, outcome.clone());
            items[i].outcome = outcome;
        }
        declines.sort_by_key(|d| d.0);
        batch::decline_rows(conn, &declines, at)?;
        finished.sort_by_key(|d| d.0);
        batch::finish_awaiting_rows(conn, &finished, at)?;
        parked.sort_by_key(|a| a.0);
        batch::await_rows(conn, &parked, at)?;
        approvals.sort_by_key(|a| a.0);
        batch::approve_rows(conn, &approvals, at)?;
        journal::post(conn, &mut locks, &entries)?;
        Ok(items)
    })
}

fn declined(reason: DeclineReason, at: DateTime<Utc>) -> Outcome {
    Outcome::Done(FinalResult {
        status: TxState::Declined,
        reason: Some(reason),
        processed_at: at,
        balance_after: None,
    })
}
