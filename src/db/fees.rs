//! Fee calculation's repository: the 搭伙费 rules in force, and the fee stored once on each
//! transaction. Which rule applies is `domain::fee::pick_rule`.

use super::batch;
use super::schema::*;
use super::{money, DbError};
use crate::domain::fee::{fee_for, pick_rule};
use crate::domain::{DeclineReason, FeeRate, FeeRule, FeeRuleId, Identity, MerchantId, Money};
use crate::messages::internal::PaymentItem;
use crate::messages::now_micros;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// The rules in force now for these identities at these merchants (and at every merchant),
/// newest first, as `pick_rule` wants them.
pub fn rules_in_force(
    conn: &mut PgConnection,
    identities: &[Identity],
    merchant_ids: &[&MerchantId],
) -> Result<Vec<FeeRule>, DbError> {
    let merchants: Vec<&str> = merchant_ids.iter().map(|m| m.as_str()).collect();
    let rows: Vec<(i64, Identity, Option<String>, Decimal)> = fee_rules::table
        .filter(fee_rules::identity.eq_any(identities))
        .filter(fee_rules::effective_from.le(diesel::dsl::now))
        .filter(
            fee_rules::merchant_id
                .is_null()
                .or(fee_rules::merchant_id.eq_any(&merchants)),
        )
        .order((fee_rules::effective_from.desc(), fee_rules::id.desc()))
        .select((
            fee_rules::id,
            fee_rules::identity,
            fee_rules::merchant_id,
            fee_rules::rate,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(id, identity, merchant, rate)| {
            Ok(FeeRule {
                id: FeeRuleId(id),
                identity,
                merchant: merchant
                    .map(|m| MerchantId::parse(&m))
                    .transpose()
                    .map_err(|e| DbError::Invariant(format!("fee rule {id}: {e}")))?,
                rate: FeeRate::try_from_decimal(rate)
                    .map_err(|e| DbError::Invariant(format!("fee rule {id}: {e}")))?,
            })
        })
        .collect()
}

/// The rule in force now for `identity` at `merchant`, if any (to show a phone the fee before
/// it pays).
pub fn rule_for(
    conn: &mut PgConnection,
    identity: Identity,
    merchant: &MerchantId,
) -> Result<Option<FeeRule>, DbError> {
    let rules = rules_in_force(conn, &[identity], &[merchant])?;
    Ok(pick_rule(&rules, identity, merchant).cloned())
}

/// Fee calculation: the newest effective rule for (identity, merchant), else for (identity, any
/// merchant), else no fee. The fee and the rule are stored once; a retry reads them back.
pub fn apply_fees(
    conn: &mut PgConnection,
    mut items: Vec<PaymentItem>,
) -> Result<Vec<PaymentItem>, DbError> {
    let identities: Vec<Identity> = items
        .iter()
        .filter_map(|i| i.card.as_ref().map(|c| c.identity))
        .collect();
    let merchant_ids: Vec<&MerchantId> = items.iter().map(|i| &i.merchant_id).collect();
    let rules = rules_in_force(conn, &identities, &merchant_ids)?;
    // No transaction of its own: each statement below commits alone, and that is enough. The
    // fee update is idempotent (it writes only rows without a fee) and a batch whose update
    // ran in part is handled whole when it is retried, reading back what was stored. A
    // BEGIN and a COMMIT around it were two more round trips per batch for nothing.
    let mut planned: Vec<(usize, Uuid, Money, Option<i64>)> = Vec::new();
    for (i, item) in items.iter_mut().enumerate() {
        if !item.is_pending() {
            continue;
        }
        let (Some(card), Some(amount), Some(tx)) = (&item.card, item.amount, item.transaction_id)
        else {
            item.decline(DeclineReason::InternalError, now_micros());
            continue;
        };
        let (fee, rule) = fee_for(&rules, card.identity, &item.merchant_id, amount);
        planned.push((i, tx.0, fee, rule.map(|r| r.0)));
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
}
