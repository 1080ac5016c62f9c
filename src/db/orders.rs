//! Order creation's repository: the transaction record (交易流水), written once per request,
//! and the payment code it consumes.

use super::batch;
use super::models::{NewTransaction, TransactionRow};
use super::payments::fill_from_row;
use super::schema::*;
use super::DbError;
use crate::domain::{
    Amount, CardStatus, CodeState, DeclineReason, OrderState, PaymentMode, TransactionId, TxState,
};
use crate::messages::internal::PaymentItem;
use crate::messages::now_micros;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The forward-scan items (by index) that match an order its cardholder confirmed: same id, the
/// order submitted, the same cardholder and card, merchant, terminal and amount. The MAC on
/// stage messages already keeps forgeries out; this is the second lock on the door (and the
/// check that a platform bug cannot skip).
fn confirmed_orders(
    conn: &mut PgConnection,
    items: &[PaymentItem],
) -> Result<HashSet<usize>, DbError> {
    let forward: Vec<(usize, &PaymentItem)> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.mode == PaymentMode::ForwardScan && i.is_pending())
        .collect();
    if forward.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = forward
        .iter()
        .filter_map(|(_, i)| i.transaction_id.map(|t| t.0))
        .collect();
    type Row = (
        Uuid,
        String,
        String,
        String,
        Option<rust_decimal::Decimal>,
        OrderState,
        i64,
    );
    let rows: HashMap<Uuid, Row> = orders::table
        .inner_join(cards::table.on(cards::user_id.eq(orders::user_id)))
        .filter(orders::id.eq_any(&ids))
        .select((
            orders::id,
            orders::user_id,
            orders::merchant_id,
            orders::terminal_id,
            orders::amount,
            orders::state,
            cards::id,
        ))
        .load::<Row>(conn)?
        .into_iter()
        .map(|r| (r.0, r))
        .collect();
    Ok(forward
        .into_iter()
        .filter(|(_, item)| {
            let Some((_, user, merchant, terminal, amount, state, card_id)) =
                item.transaction_id.and_then(|t| rows.get(&t.0))
            else {
                return false;
            };
            *state == OrderState::Submitted
                && item
                    .card
                    .as_ref()
                    .is_some_and(|c| c.user_id.as_str() == user.as_str() && c.card_id == *card_id)
                && item.merchant_id.as_str() == merchant.as_str()
                && item.terminal_id.as_str() == terminal.as_str()
                && *amount == item.amount.map(Amount::value)
        })
        .map(|(i, _)| i)
        .collect())
}

/// Order creation: records each request once (idempotent on its scope and `request_id`) and
/// consumes its payment code. A retry gets the stored transaction back. The whole batch is a
/// handful of statements whatever its size: one multi-row insert and one code update (which
/// checks the card is active) when every payment goes through; a card-status read for forward
/// scans, two reads and a decline update when some are declined, and one read per request seen
/// before.
pub fn create_orders(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
) -> Result<Vec<PaymentItem>, DbError> {
    conn.transaction(|conn| {
        let at = now_micros();
        let confirmed = confirmed_orders(conn, &items)?;
        let mut todo: Vec<usize> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            if !item.is_pending() {
                continue;
            }
            if item.card.is_none() || item.amount.is_none() {
                item.decline(DeclineReason::InternalError, at);
            } else if item.mode == PaymentMode::ForwardScan && !confirmed.contains(&i) {
                log::warn!(
                    request_id:% = item.request_id;
                    "forward-scan payment {} has no confirmed order behind it: declined",
                    item.request_id
                );
                item.decline(DeclineReason::Unauthorized, at);
            } else {
                todo.push(i);
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
                        mode: item.mode,
                        request_scope: &scopes[i],
                        request_id: item.request_id.0,
                        merchant_id: item.merchant_id.as_str(),
                        terminal_id: item.terminal_id.as_str(),
                        card_id: Some(card.card_id),
                        user_id: Some(card.user_id.as_str()),
                        amount: item.amount.map(Amount::value),
                        state: TxState::Created,
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

        // A reverse scan's card must be active for its code to be consumed: the code update
        // checks it in the same statement. A forward scan consumes no code here, so its card
        // is read on its own (and only when the batch has one).
        let card_ids: Vec<i64> = fresh
            .iter()
            .filter(|&&(i, _)| items[i].mode == PaymentMode::ForwardScan)
            .filter_map(|&(i, _)| items[i].card.as_ref().map(|c| c.card_id))
            .collect();
        let inactive: HashSet<i64> = if card_ids.is_empty() {
            HashSet::new()
        } else {
            cards::table
                .filter(cards::id.eq_any(&card_ids))
                .filter(cards::status.ne(CardStatus::Active))
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
            if item.mode == PaymentMode::ForwardScan && inactive.contains(&card_id) {
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
            // Why each claim lost: a card that is not active comes first (as the card's
            // status was checked before the code's), else the code's state.
            let lost_cards: Vec<i64> = lost.iter().map(|(_, c)| c.card_id).collect();
            let inactive: HashSet<i64> = cards::table
                .filter(cards::id.eq_any(&lost_cards))
                .filter(cards::status.ne(CardStatus::Active))
                .select(cards::id)
                .load::<i64>(conn)?
                .into_iter()
                .collect();
            let hashes: Vec<&[u8]> = lost.iter().map(|(_, c)| c.hash).collect();
            let states: HashMap<Vec<u8>, CodeState> = payment_codes::table
                .filter(payment_codes::code_hash.eq_any(&hashes))
                .select((payment_codes::code_hash, payment_codes::state))
                .load::<(Vec<u8>, CodeState)>(conn)?
                .into_iter()
                .collect();
            for (i, claim) in lost {
                let reason = if inactive.contains(&claim.card_id) {
                    DeclineReason::CardFrozen
                } else {
                    states
                        .get(claim.hash)
                        .map_or(DeclineReason::UnknownCode, |s| s.decline_reason())
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
