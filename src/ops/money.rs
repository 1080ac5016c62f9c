//! Money the back office moves: top-ups, refunds, subsidies, and the fee rules that decide the
//! 搭伙费. Every one of them goes through the ledger writer (`db::journal`).

use super::{Operator, Ops, OpsError};
use crate::db::{admin, refunds, subsidy};
use crate::domain::{
    Amount, FeeRate, FeeRuleId, Identity, MerchantId, Money, TransactionId, UserId,
};
use uuid::Uuid;

/// Credits a card from the school's clearing account; the same `entry` never credits twice.
/// Returns the balance after.
pub async fn topup(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    amount: Amount,
    entry: Uuid,
    memo: &'static str,
) -> Result<Money, OpsError> {
    let u = user.clone();
    let balance = ops
        .db(move |c| admin::topup(c, &u, amount, entry, memo))
        .await?;
    ops.record(
        who,
        "card.topup",
        user.to_string(),
        serde_json::json!({ "amount": amount, "entry_id": entry }),
    )
    .await;
    Ok(balance)
}

/// Refunds an approved payment, fully (`amount` none: what remains) or partly; the same
/// `refund_id` never refunds twice.
pub async fn refund(
    ops: &Ops,
    who: &Operator,
    tx: TransactionId,
    amount: Option<Amount>,
    refund_id: Uuid,
    reason: &str,
) -> Result<refunds::RefundOutcome, OpsError> {
    let r = reason.to_owned();
    let out = ops
        .db(move |c| refunds::refund(c, tx, amount, refund_id, &r))
        .await?;
    ops.record(
        who,
        "refund",
        tx.to_string(),
        serde_json::json!({
            "refund_id": refund_id, "amount": out.amount, "fee": out.fee, "reason": reason
        }),
    )
    .await;
    Ok(out)
}

/// Credits cards from a subsidy file under the batch `batch`: each row once per batch, however
/// often, edited or reordered, the file is imported (`db::subsidy`).
pub async fn import_subsidies(
    ops: &Ops,
    who: &Operator,
    text: String,
    batch: String,
) -> Result<subsidy::ImportReport, OpsError> {
    let b = batch.clone();
    let report = ops.db(move |c| subsidy::import(c, &text, &b)).await?;
    ops.record(
        who,
        "subsidy.import",
        batch,
        serde_json::json!({
            "credited": report.credited, "total": report.total_credited,
            "rejected": report.rejected.len()
        }),
    )
    .await;
    Ok(report)
}

/// Adds a 搭伙费 rule, effective now (the newest rule wins, merchant-specific first).
pub async fn set_fee(
    ops: &Ops,
    who: &Operator,
    identity: Identity,
    rate: FeeRate,
    merchant: Option<&MerchantId>,
) -> Result<FeeRuleId, OpsError> {
    let m = merchant.cloned();
    let id = ops
        .db(move |c| admin::set_fee(c, identity, rate, m.as_ref()))
        .await?;
    ops.record(
        who,
        "fee.set",
        identity.to_string(),
        serde_json::json!({ "rate": rate.to_string(), "merchant_id": merchant, "rule_id": id.0 }),
    )
    .await;
    Ok(id)
}

/// What importing the file under `batch` would credit and refuse, row by row, with nothing
/// credited (the console shows it before the operator confirms the import). Not recorded:
/// nothing changed.
pub async fn preview_subsidies(
    ops: &Ops,
    text: String,
    batch: String,
) -> Result<subsidy::ImportReport, OpsError> {
    ops.db(move |c| subsidy::preview(c, &text, &batch)).await
}

/// The fee rules, newest first, each marked whether it decides fees now.
pub async fn fee_rules(ops: &Ops) -> Result<Vec<crate::db::listings::FeeRuleRow>, OpsError> {
    Ok(crate::db::run(&ops.pool, crate::db::listings::fee_rules).await?)
}
