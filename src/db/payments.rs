//! The pipeline's repository: one function per stage, each taking a whole batch and running in
//! one database transaction. Every function is idempotent per payment: running it again on the
//! same items (a redelivery) changes nothing and yields the same outcomes.

use super::admin::account_of;
use super::models::{NewEntry, NewPosting, NewTransaction, TransactionRow};
use super::schema::*;
use super::DbError;
use crate::domain::{
    Amount, DeclineReason, FeeRate, Identity, Money, PaymentMode, TransactionId, TxState, UserId,
};
use crate::messages::internal::{CardRef, FinalResult, Outcome, PaymentItem};
use crate::messages::now_micros;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

fn money(d: Decimal) -> Money {
    Money::from_decimal(d).unwrap_or_else(|| Money::round_half_up(d))
}

/// What QR validation needs to know about a batch, in three queries.
#[derive(Debug, Default)]
pub struct ValidationLookup {
    pub merchants: HashSet<String>,
    pub terminals: HashSet<(String, String)>,
    pub cards_by_code: HashMap<Vec<u8>, CardRef>,
}

pub fn lookup_for_validation(
    conn: &mut PgConnection,
    merchant_ids: &[String],
    code_hashes: &[Vec<u8>],
) -> Result<ValidationLookup, DbError> {
    let merchants: HashSet<String> = merchants::table
        .filter(merchants::id.eq_any(merchant_ids))
        .select(merchants::id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let terminals: HashSet<(String, String)> = terminals::table
        .filter(terminals::merchant_id.eq_any(merchant_ids))
        .select((terminals::merchant_id, terminals::id))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let rows: Vec<(Vec<u8>, i64, i64, String, String)> = payment_codes::table
        .inner_join(cards::table.inner_join(cardholders::table))
        .filter(payment_codes::code_hash.eq_any(code_hashes))
        .select((
            payment_codes::code_hash,
            cards::id,
            cards::account_id,
            cards::user_id,
            cardholders::identity,
        ))
        .load(conn)?;
    let mut cards_by_code = HashMap::with_capacity(rows.len());
    for (hash, card_id, account_id, user, identity) in rows {
        cards_by_code.insert(hash, card_ref(card_id, account_id, &user, &identity)?);
    }
    Ok(ValidationLookup {
        merchants,
        terminals,
        cards_by_code,
    })
}

fn card_ref(card_id: i64, account_id: i64, user: &str, identity: &str) -> Result<CardRef, DbError> {
    Ok(CardRef {
        card_id,
        account_id,
        user_id: UserId::parse(user).map_err(|e| DbError::Rejected(e.to_string()))?,
        identity: Identity::parse(identity)
            .ok_or_else(|| DbError::Rejected(format!("identity {identity:?} in database")))?,
    })
}

pub fn load_card_ref(conn: &mut PgConnection, card_id: i64) -> Result<CardRef, DbError> {
    let (account_id, user, identity): (i64, String, String) = cards::table
        .inner_join(cardholders::table)
        .filter(cards::id.eq(card_id))
        .select((cards::account_id, cards::user_id, cardholders::identity))
        .first(conn)?;
    card_ref(card_id, account_id, &user, &identity)
}

/// The outcome a stored transaction stands for.
fn outcome_of(row: &TransactionRow) -> Outcome {
    match TxState::parse(&row.state) {
        Some(TxState::Created) | None => Outcome::Pending,
        Some(status) => Outcome::Done(FinalResult {
            status,
            reason: row.reason.as_deref().and_then(DeclineReason::parse),
            processed_at: row.processed_at.unwrap_or(row.created_at),
            balance_after: row.balance_after.map(money),
        }),
    }
}

/// Replaces what a retried request carries with what was stored the first time.
fn fill_from_row(
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
    item.outcome = outcome_of(row);
    Ok(())
}

fn decline_row(
    conn: &mut PgConnection,
    id: Uuid,
    reason: DeclineReason,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(
        transactions::table
            .find(id)
            .filter(transactions::state.eq("created")),
    )
    .set((
        transactions::state.eq("declined"),
        transactions::reason.eq(reason.as_str()),
        transactions::processed_at.eq(at),
    ))
    .execute(conn)?;
    Ok(())
}

fn card_inactive(
    conn: &mut PgConnection,
    card: &CardRef,
) -> Result<Option<DeclineReason>, DbError> {
    let status: String = cards::table
        .find(card.card_id)
        .select(cards::status)
        .first(conn)?;
    Ok((status != "active").then_some(DeclineReason::CardFrozen))
}

/// Consumes a reverse-scan payment code for transaction `tx`, or says why it cannot be used.
fn consume_code(
    conn: &mut PgConnection,
    card: &CardRef,
    hash: &[u8],
    tx: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<DeclineReason>, DbError> {
    if let Some(frozen) = card_inactive(conn, card)? {
        return Ok(Some(frozen));
    }
    // The row lock taken by this UPDATE is what makes two simultaneous scans of one code
    // resolve to exactly one winner; the loser re-checks `state` after the winner commits.
    let used = diesel::update(
        payment_codes::table
            .filter(payment_codes::code_hash.eq(hash))
            .filter(payment_codes::card_id.eq(card.card_id))
            .filter(payment_codes::state.eq("unused"))
            .filter(payment_codes::expires_at.gt(at)),
    )
    .set((
        payment_codes::state.eq("used"),
        payment_codes::used_at.eq(at),
        payment_codes::transaction_id.eq(tx),
    ))
    .execute(conn)?;
    if used == 1 {
        return Ok(None);
    }
    let state: Option<String> = payment_codes::table
        .find(hash)
        .select(payment_codes::state)
        .first(conn)
        .optional()?;
    Ok(Some(match state.as_deref() {
        Some("used") => DeclineReason::CodeUsed,
        Some("superseded") | Some("revoked") => DeclineReason::CodeRevoked,
        Some("unused") => DeclineReason::CodeExpired,
        _ => DeclineReason::UnknownCode,
    }))
}

/// Order creation: records each request once (idempotent on its scope and `request_id`) and
/// consumes its payment code. A retry gets the stored transaction back.
pub fn create_orders(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        for item in items.iter_mut().filter(|i| i.is_pending()) {
            let at = now_micros();
            let (Some(card), Some(amount)) = (item.card.clone(), item.amount) else {
                item.decline(DeclineReason::InternalError, at);
                continue;
            };
            let scope = item.request_scope();
            // A forward-scan order arrives with its id (the phone's order id); a reverse scan
            // gets a fresh one.
            let new_id = item
                .transaction_id
                .map(|t| t.0)
                .unwrap_or_else(Uuid::new_v4);
            let inserted: Option<Uuid> = diesel::insert_into(transactions::table)
                .values(&NewTransaction {
                    id: new_id,
                    mode: item.mode.as_str(),
                    request_scope: &scope,
                    request_id: item.request_id.0,
                    merchant_id: item.merchant_id.as_str(),
                    terminal_id: item.terminal_id.as_str(),
                    card_id: Some(card.card_id),
                    user_id: Some(card.user_id.as_str()),
                    amount: Some(amount.value()),
                    state: "created",
                })
                .on_conflict((transactions::request_scope, transactions::request_id))
                .do_nothing()
                .returning(transactions::id)
                .get_result(conn)
                .optional()?;
            match inserted {
                None => {
                    let row: TransactionRow = transactions::table
                        .filter(transactions::request_scope.eq(&scope))
                        .filter(transactions::request_id.eq(item.request_id.0))
                        .select(TransactionRow::as_select())
                        .first(conn)?;
                    fill_from_row(conn, item, &row)?;
                }
                Some(id) => {
                    item.transaction_id = Some(TransactionId(id));
                    let reason = match (item.mode, item.code_hash.as_deref()) {
                        (PaymentMode::ReverseScan, Some(hash)) => {
                            consume_code(conn, &card, hash, id, at)?
                        }
                        (PaymentMode::ReverseScan, None) => Some(DeclineReason::UnknownCode),
                        // The platform validated the QR and claimed a dynamic code already.
                        (PaymentMode::ForwardScan, _) => card_inactive(conn, &card)?,
                    };
                    if let Some(reason) = reason {
                        decline_row(conn, id, reason, at)?;
                        item.decline(reason, at);
                    }
                }
            }
            item.code_hash = None;
        }
        Ok(items)
    })
}

type FeeRuleRow = (i64, String, Option<String>, Decimal);

fn load_fee_rules(
    conn: &mut PgConnection,
    identities: &[&str],
    merchant_ids: &[String],
) -> Result<Vec<FeeRuleRow>, DbError> {
    Ok(fee_rules::table
        .filter(fee_rules::identity.eq_any(identities))
        .filter(fee_rules::effective_from.le(diesel::dsl::now))
        .filter(
            fee_rules::merchant_id
                .is_null()
                .or(fee_rules::merchant_id.eq_any(merchant_ids)),
        )
        .order((fee_rules::effective_from.desc(), fee_rules::id.desc()))
        .select((
            fee_rules::id,
            fee_rules::identity,
            fee_rules::merchant_id,
            fee_rules::rate,
        ))
        .load(conn)?)
}

/// The rule for (identity, merchant): the newest merchant-specific one, else the newest general
/// one. `rules` must be newest first.
fn pick_rule(
    rules: &[FeeRuleRow],
    identity: Identity,
    merchant: &str,
) -> Result<Option<(i64, FeeRate)>, DbError> {
    let identity = identity.as_str();
    let rule = rules
        .iter()
        .find(|r| r.1 == identity && r.2.as_deref() == Some(merchant))
        .or_else(|| rules.iter().find(|r| r.1 == identity && r.2.is_none()));
    rule.map(|(id, _, _, rate)| {
        FeeRate::try_from_decimal(*rate)
            .map(|r| (*id, r))
            .map_err(|e| DbError::Rejected(e.to_string()))
    })
    .transpose()
}

/// The fee rule that applies now to `identity` at `merchant` (for showing a phone the fee
/// before it pays).
pub fn fee_rule_for(
    conn: &mut PgConnection,
    identity: Identity,
    merchant: &str,
) -> Result<Option<(i64, FeeRate)>, DbError> {
    let rules = load_fee_rules(conn, &[identity.as_str()], &[merchant.to_owned()])?;
    pick_rule(&rules, identity, merchant)
}

/// Fee calculation: the newest effective rule for (identity, merchant), else for (identity, any
/// merchant), else no fee. The fee and the rule are stored once; a retry reads them back.
pub fn apply_fees(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
) -> Result<Vec<PaymentItem>, DbError> {
    let identities: Vec<&str> = items
        .iter()
        .filter_map(|i| i.card.as_ref().map(|c| c.identity.as_str()))
        .collect();
    let merchant_ids: Vec<String> = items.iter().map(|i| i.merchant_id.to_string()).collect();
    let rules = load_fee_rules(conn, &identities, &merchant_ids)?;
    conn.transaction(|conn| {
        for item in items.iter_mut().filter(|i| i.is_pending()) {
            let (Some(card), Some(amount), Some(tx)) =
                (&item.card, item.amount, item.transaction_id)
            else {
                item.decline(DeclineReason::InternalError, now_micros());
                continue;
            };
            let (fee, rule_id) = match pick_rule(&rules, card.identity, item.merchant_id.as_str())?
            {
                Some((id, rate)) => (rate.fee_for(amount), Some(id)),
                None => (Money::ZERO, None),
            };
            let updated = diesel::update(
                transactions::table
                    .find(tx.0)
                    .filter(transactions::fee.is_null()),
            )
            .set((
                transactions::fee.eq(fee.value()),
                transactions::fee_rule_id.eq(rule_id),
            ))
            .execute(conn)?;
            if updated == 1 {
                item.fee = Some(fee);
                item.fee_rule_id = rule_id;
            } else {
                let (stored_fee, stored_rule): (Option<Decimal>, Option<i64>) = transactions::table
                    .find(tx.0)
                    .select((transactions::fee, transactions::fee_rule_id))
                    .first(conn)?;
                item.fee = Some(stored_fee.map(money).unwrap_or(fee));
                item.fee_rule_id = stored_rule;
            }
        }
        Ok(items)
    })
}

/// Settlement (the card backend): for each payment, debit the card (amount + fee) only if the
/// balance covers it, credit the merchant (amount) and the school's fee income (fee), as one
/// balanced journal entry keyed by the transaction id. The whole batch is one database
/// transaction; card rows are touched in account-id order, then merchants, then the school.
/// Approved amounts per card since `day_start`, across both scan directions.
fn spent_since(
    conn: &mut PgConnection,
    card_ids: &[i64],
    day_start: DateTime<Utc>,
) -> Result<HashMap<i64, Decimal>, DbError> {
    if card_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Option<i64>, Option<Decimal>)> = transactions::table
        .filter(transactions::card_id.eq_any(card_ids))
        .filter(transactions::state.eq("approved"))
        .filter(transactions::processed_at.ge(day_start))
        .group_by(transactions::card_id)
        .select((
            transactions::card_id,
            diesel::dsl::sum(transactions::amount),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, s)| Some((c?, s.unwrap_or_default())))
        .collect())
}

/// Limits are checked here, where a card's payments are serialised: the per-transaction limit,
/// the daily limit (approved amounts since `day_start`, both scan directions), and the
/// password-free amount (above it a reverse scan is declined `pin_required`; a forward scan
/// must carry a verified PIN).
pub fn settle(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
    day_start: DateTime<Utc>,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        let fee_account = account_of(conn, "fee_income", "school")?;
        let tx_ids: Vec<Uuid> = items
            .iter()
            .filter(|i| i.is_pending())
            .filter_map(|i| i.transaction_id.map(|t| t.0))
            .collect();
        let mut rows: HashMap<Uuid, TransactionRow> = transactions::table
            .filter(transactions::id.eq_any(&tx_ids))
            .order(transactions::id)
            .for_update()
            .select(TransactionRow::as_select())
            .load(conn)?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let merchant_ids: Vec<String> = items.iter().map(|i| i.merchant_id.to_string()).collect();
        let merchant_accounts: HashMap<String, i64> = merchants::table
            .filter(merchants::id.eq_any(&merchant_ids))
            .select((merchants::id, merchants::account_id))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();

        let card_ids: Vec<i64> = items
            .iter()
            .filter(|i| i.is_pending())
            .filter_map(|i| i.card.as_ref().map(|c| c.card_id))
            .collect();
        let limits: HashMap<i64, super::cards::Limits> =
            super::cards::limits_of_cards(conn, &card_ids)?
                .into_iter()
                .map(|l| (l.card_id, l))
                .collect();
        let mut spent_today = spent_since(conn, &card_ids, day_start)?;

        let mut order: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].is_pending())
            .collect();
        order.sort_by_key(|&i| {
            items[i]
                .card
                .as_ref()
                .map(|c| c.account_id)
                .unwrap_or(i64::MAX)
        });

        let mut merchant_credit: BTreeMap<i64, Decimal> = BTreeMap::new();
        let mut fee_total = Decimal::ZERO;
        let mut entries: Vec<Uuid> = Vec::new();
        let mut legs: Vec<(Uuid, &'static str, i64, Decimal)> = Vec::new();

        for i in order {
            let item = &mut items[i];
            let at = now_micros();
            let row = match item.transaction_id.and_then(|t| rows.get_mut(&t.0)) {
                Some(r) => r,
                None => {
                    item.decline(DeclineReason::InternalError, at);
                    continue;
                }
            };
            if row.state != "created" {
                item.outcome = outcome_of(row);
                item.fee = row.fee.map(money);
                continue;
            }
            let (Some(card), Some(merchant_account)) = (
                item.card.clone(),
                merchant_accounts.get(item.merchant_id.as_str()).copied(),
            ) else {
                decline_row(conn, row.id, DeclineReason::InternalError, at)?;
                item.decline(DeclineReason::InternalError, at);
                continue;
            };
            let Some(amount) = row.amount else {
                // Only tombstones lack an amount, and they are never `created`.
                decline_row(conn, row.id, DeclineReason::InternalError, at)?;
                item.decline(DeclineReason::InternalError, at);
                continue;
            };
            let fee = row
                .fee
                .or(item.fee.map(Money::value))
                .unwrap_or(Decimal::ZERO);
            let total = amount + fee;
            let over_limit = match limits.get(&card.card_id) {
                None => None,
                Some(l) => {
                    let spent = spent_today.get(&card.card_id).copied().unwrap_or_default();
                    if amount > l.per_txn_limit || spent + amount > l.daily_limit {
                        Some(DeclineReason::LimitExceeded)
                    } else if amount > l.password_free_limit
                        && !(item.mode == PaymentMode::ForwardScan && item.pin_verified)
                    {
                        Some(DeclineReason::PinRequired)
                    } else {
                        None
                    }
                }
            };
            if let Some(reason) = over_limit {
                decline_row(conn, row.id, reason, at)?;
                row.state = "declined".into();
                row.reason = Some(reason.as_str().into());
                row.processed_at = Some(at);
                item.decline(reason, at);
                item.fee = Some(money(fee));
                continue;
            }
            let balance_after: Option<Decimal> = diesel::update(
                accounts::table
                    .find(card.account_id)
                    .filter(accounts::balance.ge(total)),
            )
            .set(accounts::balance.eq(accounts::balance - total))
            .returning(accounts::balance)
            .get_result(conn)
            .optional()?;
            match balance_after {
                None => {
                    decline_row(conn, row.id, DeclineReason::InsufficientBalance, at)?;
                    row.state = "declined".into();
                    row.reason = Some(DeclineReason::InsufficientBalance.as_str().into());
                    row.processed_at = Some(at);
                    item.decline(DeclineReason::InsufficientBalance, at);
                }
                Some(balance) => {
                    diesel::update(transactions::table.find(row.id))
                        .set((
                            transactions::state.eq("approved"),
                            transactions::balance_after.eq(balance),
                            transactions::processed_at.eq(at),
                        ))
                        .execute(conn)?;
                    row.state = "approved".into();
                    row.balance_after = Some(balance);
                    row.processed_at = Some(at);
                    entries.push(row.id);
                    legs.push((row.id, "card", card.account_id, -total));
                    legs.push((row.id, "merchant", merchant_account, amount));
                    if !fee.is_zero() {
                        legs.push((row.id, "fee", fee_account, fee));
                    }
                    *merchant_credit.entry(merchant_account).or_default() += amount;
                    *spent_today.entry(card.card_id).or_default() += amount;
                    fee_total += fee;
                    item.outcome = Outcome::Done(FinalResult {
                        status: TxState::Approved,
                        reason: None,
                        processed_at: at,
                        balance_after: Some(money(balance)),
                    });
                }
            }
            item.fee = Some(money(fee));
        }

        if !entries.is_empty() {
            let new_entries: Vec<NewEntry> = entries
                .iter()
                .map(|&id| NewEntry {
                    id,
                    kind: "payment",
                    transaction_id: Some(id),
                    memo: "",
                })
                .collect();
            diesel::insert_into(journal_entries::table)
                .values(&new_entries)
                .execute(conn)?;
            let new_postings: Vec<NewPosting> = legs
                .iter()
                .map(|&(entry_id, leg, account_id, amount)| NewPosting {
                    entry_id,
                    leg,
                    account_id,
                    amount,
                })
                .collect();
            diesel::insert_into(postings::table)
                .values(&new_postings)
                .execute(conn)?;
            for (account, credit) in &merchant_credit {
                diesel::update(accounts::table.find(*account))
                    .set(accounts::balance.eq(accounts::balance + *credit))
                    .execute(conn)?;
            }
            if !fee_total.is_zero() {
                diesel::update(accounts::table.find(fee_account))
                    .set(accounts::balance.eq(accounts::balance + fee_total))
                    .execute(conn)?;
            }
        }
        Ok(items)
    })
}

/// The decided item a stored transaction stands for (for re-sending its result), or `None`
/// while it is still `created`.
pub fn item_from_row(row: &TransactionRow, card: Option<CardRef>) -> Option<PaymentItem> {
    let outcome = outcome_of(row);
    if matches!(outcome, Outcome::Pending) {
        return None;
    }
    Some(PaymentItem {
        request_id: crate::domain::RequestId(row.request_id),
        mode: PaymentMode::parse(&row.mode)?,
        merchant_id: crate::domain::MerchantId::parse(&row.merchant_id).ok()?,
        terminal_id: crate::domain::TerminalId::parse(&row.terminal_id).ok()?,
        amount: row.amount.and_then(|a| Amount::try_from_decimal(a).ok()),
        code_hash: None,
        card,
        transaction_id: Some(TransactionId(row.id)),
        fee: row.fee.map(money),
        fee_rule_id: row.fee_rule_id,
        pin_verified: false,
        outcome,
    })
}

/// Failed payment-code attempts a terminal may make within the current and the previous
/// minute before it is throttled (`rate_limited`). A cashier mistypes a few; a guesser needs
/// millions.
pub const FAILURE_LIMIT: i64 = 10;

/// The terminals among `merchants`' that are over the failure limit right now.
pub fn throttled_terminals(
    conn: &mut PgConnection,
    merchant_ids: &[String],
) -> Result<HashSet<(String, String)>, DbError> {
    use chrono::DurationRound;
    // The start of the previous minute: the counters are per minute.
    let window_start = (now_micros() - chrono::Duration::minutes(1))
        .duration_trunc(chrono::Duration::minutes(1))
        .map_err(|e| DbError::Rejected(e.to_string()))?;
    let rows: Vec<(String, String, DateTime<Utc>, i32)> = terminal_failures::table
        .filter(terminal_failures::merchant_id.eq_any(merchant_ids))
        .filter(terminal_failures::minute.ge(window_start))
        .select((
            terminal_failures::merchant_id,
            terminal_failures::terminal_id,
            terminal_failures::minute,
            terminal_failures::failures,
        ))
        .load(conn)?;
    let mut sums: HashMap<(String, String), i64> = HashMap::new();
    for (m, t, _, n) in rows {
        *sums.entry((m, t)).or_default() += i64::from(n);
    }
    Ok(sums
        .into_iter()
        .filter(|(_, n)| *n >= FAILURE_LIMIT)
        .map(|(k, _)| k)
        .collect())
}

/// Adds failed attempts to the terminals' counters for the current minute.
pub fn record_failures(
    conn: &mut PgConnection,
    failures: &HashMap<(String, String), i32>,
) -> Result<(), DbError> {
    for ((m, t), n) in failures {
        diesel::sql_query(
            "INSERT INTO terminal_failures (merchant_id, terminal_id, minute, failures) \
             VALUES ($1, $2, date_trunc('minute', now()), $3) \
             ON CONFLICT (merchant_id, terminal_id, minute) \
             DO UPDATE SET failures = terminal_failures.failures + EXCLUDED.failures",
        )
        .bind::<diesel::sql_types::Text, _>(m)
        .bind::<diesel::sql_types::Text, _>(t)
        .bind::<diesel::sql_types::Integer, _>(n)
        .execute(conn)?;
    }
    // Old counters are useless after the window; keep the table small.
    diesel::delete(
        terminal_failures::table
            .filter(terminal_failures::minute.lt(now_micros() - chrono::Duration::minutes(10))),
    )
    .execute(conn)?;
    Ok(())
}
