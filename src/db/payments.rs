//! The pipeline's repository: one function per stage, each taking a whole batch and running in
//! one database transaction. Every function is idempotent per payment: running it again on the
//! same items (a redelivery) changes nothing and yields the same outcomes.

use super::admin::account_of;
use super::models::{NewEntry, NewPosting, NewTransaction, TransactionRow};
use super::schema::*;
use super::{batch, DbError};
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
    let rows: Vec<(Vec<u8>, i64, i64, String)> = payment_codes::table
        .inner_join(cards::table)
        .filter(payment_codes::code_hash.eq_any(code_hashes))
        .select((
            payment_codes::code_hash,
            cards::id,
            cards::account_id,
            cards::user_id,
        ))
        .load(conn)?;
    // Identities in a second query by key: joined in the first, the planner hashed the whole
    // cardholders table for every batch.
    let users: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let identities: HashMap<String, String> = if users.is_empty() {
        HashMap::new()
    } else {
        cardholders::table
            .filter(cardholders::user_id.eq_any(&users))
            .select((cardholders::user_id, cardholders::identity))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect()
    };
    let mut cards_by_code = HashMap::with_capacity(rows.len());
    for (hash, card_id, account_id, user) in &rows {
        let identity = identities
            .get(user)
            .ok_or_else(|| DbError::Rejected(format!("card {card_id} has no cardholder")))?;
        cards_by_code.insert(
            hash.clone(),
            card_ref(*card_id, *account_id, user, identity)?,
        );
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

/// Order creation: records each request once (idempotent on its scope and `request_id`) and
/// consumes its payment code. A retry gets the stored transaction back. The whole batch is a
/// handful of statements whatever its size: one multi-row insert, one card-status read, one
/// code update, one decline update, plus one read per request seen before.
pub fn create_orders(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        let at = now_micros();
        let mut todo: Vec<usize> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            if !item.is_pending() {
                continue;
            }
            if item.card.is_some() && item.amount.is_some() {
                todo.push(i);
            } else {
                item.decline(DeclineReason::InternalError, at);
            }
        }
        let scopes: Vec<String> = items.iter().map(PaymentItem::request_scope).collect();
        // One insertion order for every batch, so that two order consumers racing on the same
        // requests (a POS retry landing on the other process) wait instead of deadlocking.
        todo.sort_by(|&a, &b| {
            (&scopes[a], items[a].request_id.0).cmp(&(&scopes[b], items[b].request_id.0))
        });
        // A forward-scan order arrives with its id (the phone's order id); a reverse scan gets
        // a fresh one.
        let new_ids: Vec<Uuid> = todo
            .iter()
            .map(|&i| items[i].transaction_id.map_or_else(Uuid::new_v4, |t| t.0))
            .collect();
        let mut inserted: HashSet<Uuid> = HashSet::with_capacity(todo.len());
        for (chunk, ids) in todo
            .chunks(batch::ROWS_PER_STATEMENT)
            .zip(new_ids.chunks(batch::ROWS_PER_STATEMENT))
        {
            let rows: Vec<NewTransaction> = chunk
                .iter()
                .zip(ids)
                .filter_map(|(&i, &id)| {
                    let item = &items[i];
                    let card = item.card.as_ref()?;
                    Some(NewTransaction {
                        id,
                        mode: item.mode.as_str(),
                        request_scope: &scopes[i],
                        request_id: item.request_id.0,
                        merchant_id: item.merchant_id.as_str(),
                        terminal_id: item.terminal_id.as_str(),
                        card_id: Some(card.card_id),
                        user_id: Some(card.user_id.as_str()),
                        amount: item.amount.map(Amount::value),
                        state: "created",
                    })
                })
                .collect();
            inserted.extend(
                diesel::insert_into(transactions::table)
                    .values(&rows)
                    .on_conflict((transactions::request_scope, transactions::request_id))
                    .do_nothing()
                    .returning(transactions::id)
                    .get_results::<Uuid>(conn)?,
            );
        }
        // (item index, transaction id): new orders, and requests stored before.
        type Split = (Vec<(usize, Uuid)>, Vec<(usize, Uuid)>);
        let (fresh, seen): Split = todo
            .iter()
            .copied()
            .zip(new_ids.iter().copied())
            .partition(|(_, id)| inserted.contains(id));

        let card_ids: Vec<i64> = fresh
            .iter()
            .filter_map(|&(i, _)| items[i].card.as_ref().map(|c| c.card_id))
            .collect();
        let inactive: HashSet<i64> = if card_ids.is_empty() {
            HashSet::new()
        } else {
            cards::table
                .filter(cards::id.eq_any(&card_ids))
                .filter(cards::status.ne("active"))
                .select(cards::id)
                .load::<i64>(conn)?
                .into_iter()
                .collect()
        };

        let mut declines: Vec<(usize, Uuid, DeclineReason)> = Vec::new();
        // Claims and the items they are for, index for index.
        let mut claims: Vec<batch::CodeClaim> = Vec::new();
        let mut claimed_by: Vec<usize> = Vec::new();
        for &(i, id) in &fresh {
            let item = &items[i];
            let card_id = item.card.as_ref().map_or(0, |c| c.card_id);
            if inactive.contains(&card_id) {
                declines.push((i, id, DeclineReason::CardFrozen));
                continue;
            }
            match (item.mode, item.code_hash.as_deref()) {
                (PaymentMode::ReverseScan, Some(hash)) => {
                    claims.push(batch::CodeClaim {
                        hash,
                        card_id,
                        transaction_id: id,
                    });
                    claimed_by.push(i);
                }
                (PaymentMode::ReverseScan, None) => {
                    declines.push((i, id, DeclineReason::UnknownCode))
                }
                // The platform validated the QR and claimed a dynamic code already.
                (PaymentMode::ForwardScan, _) => {}
            }
        }
        let won = batch::consume_codes(conn, &claims, at)?;
        let lost: Vec<(usize, &batch::CodeClaim)> = claimed_by
            .iter()
            .copied()
            .zip(&claims)
            .filter(|(_, c)| !won.contains(&c.transaction_id))
            .collect();
        if !lost.is_empty() {
            let hashes: Vec<&[u8]> = lost.iter().map(|(_, c)| c.hash).collect();
            let states: HashMap<Vec<u8>, String> = payment_codes::table
                .filter(payment_codes::code_hash.eq_any(&hashes))
                .select((payment_codes::code_hash, payment_codes::state))
                .load::<(Vec<u8>, String)>(conn)?
                .into_iter()
                .collect();
            for (i, claim) in lost {
                let reason = match states.get(claim.hash).map(String::as_str) {
                    Some("used") => DeclineReason::CodeUsed,
                    Some("superseded") | Some("revoked") => DeclineReason::CodeRevoked,
                    Some("unused") => DeclineReason::CodeExpired,
                    _ => DeclineReason::UnknownCode,
                };
                declines.push((i, claim.transaction_id, reason));
            }
        }
        let rows: Vec<(Uuid, DeclineReason)> = declines.iter().map(|d| (d.1, d.2)).collect();
        batch::decline_rows(conn, &rows, at)?;

        for &(i, id) in &fresh {
            items[i].transaction_id = Some(TransactionId(id));
        }
        for (i, _, reason) in declines {
            items[i].decline(reason, at);
        }
        // Requests seen before (a retry, or the same request twice in this batch, which now
        // finds the row inserted above): they carry their stored transaction on. Rare, so one
        // read each.
        for (i, _) in seen {
            let row: TransactionRow = transactions::table
                .filter(transactions::request_scope.eq(&scopes[i]))
                .filter(transactions::request_id.eq(items[i].request_id.0))
                .select(TransactionRow::as_select())
                .first(conn)?;
            fill_from_row(conn, &mut items[i], &row)?;
        }
        for item in &mut items {
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
        let mut planned: Vec<(usize, Uuid, Money, Option<i64>)> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            if !item.is_pending() {
                continue;
            }
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
            planned.push((i, tx.0, fee, rule_id));
        }
        // Transaction-id order: the row locks this update takes are taken in one order.
        planned.sort_by_key(|p| p.1);
        let writes: Vec<(Uuid, Decimal, Option<i64>)> =
            planned.iter().map(|p| (p.1, p.2.value(), p.3)).collect();
        let stored_now = batch::set_fees(conn, &writes)?;
        // A retry finds the fee stored the first time and keeps it (a rule may have changed
        // since).
        let earlier: Vec<Uuid> = planned
            .iter()
            .map(|p| p.1)
            .filter(|id| !stored_now.contains(id))
            .collect();
        let stored: HashMap<Uuid, (Option<Decimal>, Option<i64>)> = if earlier.is_empty() {
            HashMap::new()
        } else {
            transactions::table
                .filter(transactions::id.eq_any(&earlier))
                .select((
                    transactions::id,
                    transactions::fee,
                    transactions::fee_rule_id,
                ))
                .load::<(Uuid, Option<Decimal>, Option<i64>)>(conn)?
                .into_iter()
                .map(|(id, fee, rule)| (id, (fee, rule)))
                .collect()
        };
        for (i, tx, fee, rule_id) in planned {
            let item = &mut items[i];
            match stored.get(&tx) {
                Some(&(stored_fee, stored_rule)) => {
                    item.fee = Some(stored_fee.map(money).unwrap_or(fee));
                    item.fee_rule_id = stored_rule;
                }
                None => {
                    item.fee = Some(fee);
                    item.fee_rule_id = rule_id;
                }
            }
        }
        Ok(items)
    })
}

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

/// Settlement (the card backend): for each payment, debit the card (amount + fee) only if the
/// balance covers it, credit the merchant (amount) and the school's fee income (fee), as one
/// balanced journal entry keyed by the transaction id. The whole batch is one database
/// transaction of a fixed number of statements: the transactions are locked in id order, the
/// card accounts in account-id order, and the debits are decided in memory against the locked
/// balances (several payments of one card in a batch are taken in arrival order), then written
/// with one statement per kind of change. Merchant and school accounts are locked after the
/// cards, in id order, and last, just before the commit (every shard credits them). The CHECK
/// constraint on balances stands behind the arithmetic.
///
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
        let at = now_micros();
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

        let pending_cards: Vec<&CardRef> = items
            .iter()
            .filter(|i| i.is_pending())
            .filter_map(|i| i.card.as_ref())
            .collect();
        let card_ids: Vec<i64> = pending_cards.iter().map(|c| c.card_id).collect();
        let mut card_accounts: Vec<i64> = pending_cards.iter().map(|c| c.account_id).collect();
        card_accounts.sort_unstable();
        card_accounts.dedup();
        let limits: HashMap<i64, super::cards::Limits> =
            super::cards::limits_of_cards(conn, &card_ids)?
                .into_iter()
                .map(|l| (l.card_id, l))
                .collect();
        let mut spent_today = spent_since(conn, &card_ids, day_start)?;
        let mut balances: HashMap<i64, Decimal> = batch::lock_accounts(conn, &card_accounts)?
            .into_iter()
            .collect();

        // Account order, and arrival order within one card (the sort is stable).
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

        let mut debits: BTreeMap<i64, Decimal> = BTreeMap::new();
        let mut credits: BTreeMap<i64, Decimal> = BTreeMap::new();
        let mut declines: Vec<(Uuid, DeclineReason)> = Vec::new();
        let mut approvals: Vec<(Uuid, Decimal)> = Vec::new();
        let mut legs: Vec<(Uuid, &'static str, i64, Decimal)> = Vec::new();

        for i in order {
            let item = &mut items[i];
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
            let fee = row
                .fee
                .or(item.fee.map(Money::value))
                .unwrap_or(Decimal::ZERO);
            item.fee = Some(money(fee));
            // Only tombstones lack an amount, and they are never `created`.
            let (Some(card), Some(merchant_account), Some(amount)) = (
                item.card.as_ref(),
                merchant_accounts.get(item.merchant_id.as_str()).copied(),
                row.amount,
            ) else {
                declines.push((row.id, DeclineReason::InternalError));
                decline_in_place(row, item, DeclineReason::InternalError, at);
                continue;
            };
            let total = amount + fee;
            let verdict = match limits.get(&card.card_id) {
                Some(l) => {
                    let spent = spent_today.get(&card.card_id).copied().unwrap_or_default();
                    if amount > l.per_txn_limit || spent + amount > l.daily_limit {
                        Err(DeclineReason::LimitExceeded)
                    } else if amount > l.password_free_limit
                        && !(item.mode == PaymentMode::ForwardScan && item.pin_verified)
                    {
                        Err(DeclineReason::PinRequired)
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            }
            .and_then(|()| match balances.get_mut(&card.account_id) {
                None => Err(DeclineReason::InternalError),
                Some(balance) if *balance < total => Err(DeclineReason::InsufficientBalance),
                Some(balance) => {
                    *balance -= total;
                    Ok(())
                }
            });
            if let Err(reason) = verdict {
                declines.push((row.id, reason));
                decline_in_place(row, item, reason, at);
                continue;
            }
            let balance = balances.get(&card.account_id).copied().unwrap_or_default();
            *debits.entry(card.account_id).or_default() -= total;
            *credits.entry(merchant_account).or_default() += amount;
            if !fee.is_zero() {
                *credits.entry(fee_account).or_default() += fee;
            }
            *spent_today.entry(card.card_id).or_default() += amount;
            approvals.push((row.id, balance));
            legs.push((row.id, "card", card.account_id, -total));
            legs.push((row.id, "merchant", merchant_account, amount));
            if !fee.is_zero() {
                legs.push((row.id, "fee", fee_account, fee));
            }
            row.state = "approved".into();
            row.balance_after = Some(balance);
            row.processed_at = Some(at);
            item.outcome = Outcome::Done(FinalResult {
                status: TxState::Approved,
                reason: None,
                processed_at: at,
                balance_after: Some(money(balance)),
            });
        }

        batch::decline_rows(conn, &declines, at)?;
        if approvals.is_empty() {
            return Ok(items);
        }
        approvals.sort_by_key(|a| a.0);
        batch::approve_rows(conn, &approvals, at)?;
        let debits: Vec<(i64, Decimal)> = debits.into_iter().collect();
        batch::adjust_balances(conn, &debits)?;
        for chunk in approvals.chunks(batch::ROWS_PER_STATEMENT) {
            let entries: Vec<NewEntry> = chunk
                .iter()
                .map(|&(id, _)| NewEntry {
                    id,
                    kind: "payment",
                    transaction_id: Some(id),
                    memo: "",
                })
                .collect();
            diesel::insert_into(journal_entries::table)
                .values(&entries)
                .execute(conn)?;
        }
        for chunk in legs.chunks(batch::ROWS_PER_STATEMENT) {
            let postings: Vec<NewPosting> = chunk
                .iter()
                .map(|&(entry_id, leg, account_id, amount)| NewPosting {
                    entry_id,
                    leg,
                    account_id,
                    amount,
                })
                .collect();
            diesel::insert_into(postings::table)
                .values(&postings)
                .execute(conn)?;
        }
        // Merchant and school accounts last: every shard credits them, so each shard holds
        // their row locks from here to its commit, and the shorter that is, the less the other
        // shards wait (at 1,000/s they were a quarter of the waits). The postings above only
        // take key-share locks on them, which do not conflict with another shard's update.
        let credited: Vec<i64> = credits.keys().copied().collect();
        batch::lock_accounts(conn, &credited)?;
        let credits: Vec<(i64, Decimal)> = credits.into_iter().collect();
        batch::adjust_balances(conn, &credits)?;
        Ok(items)
    })
}

/// Records a decline on the locked row (so a second item of the same transaction in this batch
/// sees it) and on the item.
fn decline_in_place(
    row: &mut TransactionRow,
    item: &mut PaymentItem,
    reason: DeclineReason,
    at: DateTime<Utc>,
) {
    row.state = "declined".into();
    row.reason = Some(reason.as_str().into());
    row.processed_at = Some(at);
    item.decline(reason, at);
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
