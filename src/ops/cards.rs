//! Cards: issue, freeze (挂失) and unfreeze, limits, the payment PIN, and the card's view.

use super::{Operator, Ops, OpsError};
use crate::db::{admin, cards};
use crate::domain::{Amount, CardId, Identity, Refusal, UserId};
use crate::messages::external::user_result_key;

/// Issues a card to a new cardholder and provisions the cardholder's result queue.
pub async fn add_card(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    name: &str,
    identity: Identity,
) -> Result<CardId, OpsError> {
    let (u, n) = (user.clone(), name.to_owned());
    let card = ops
        .db(move |c| admin::add_card(c, &u, &n, identity))
        .await?;
    super::merchants::provision(ops, &user_result_key(user)).await?;
    ops.record(
        who,
        "card.add",
        user.to_string(),
        serde_json::json!({ "identity": identity, "card_id": card.0 }),
    )
    .await;
    Ok(card)
}

pub async fn show(ops: &Ops, user: &UserId) -> Result<admin::CardView, OpsError> {
    let u = user.clone();
    ops.db(move |c| admin::card_show(c, &u)).await
}

pub async fn freeze(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
) -> Result<cards::FreezeOutcome, OpsError> {
    let u = user.clone();
    let out = ops.db(move |c| cards::freeze(c, &u)).await?;
    ops.record(
        who,
        "card.freeze",
        user.to_string(),
        serde_json::json!({ "codes_revoked": out.codes_revoked }),
    )
    .await;
    Ok(out)
}

pub async fn unfreeze(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
) -> Result<cards::FreezeOutcome, OpsError> {
    let u = user.clone();
    let out = ops.db(move |c| cards::unfreeze(c, &u)).await?;
    ops.record(
        who,
        "card.unfreeze",
        user.to_string(),
        serde_json::json!({}),
    )
    .await;
    Ok(out)
}

/// New limits for a card (`None` keeps a limit as it is); with all `None`, shows them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitChange {
    pub per_txn: Option<Amount>,
    pub daily: Option<Amount>,
    pub password_free: Option<Amount>,
}

impl LimitChange {
    fn is_empty(&self) -> bool {
        self.per_txn.is_none() && self.daily.is_none() && self.password_free.is_none()
    }
}

pub async fn limits(
    ops: &Ops,
    who: &Operator,
    user: &UserId,
    change: LimitChange,
) -> Result<cards::Limits, OpsError> {
    let u = user.clone();
    if change.is_empty() {
        return ops.db(move |c| cards::limits_of_user(c, &u)).await;
    }
    let l = ops
        .db(move |c| cards::set_limits(c, &u, change.per_txn, change.daily, change.password_free))
        .await?;
    ops.record(
        who,
        "card.limits",
        user.to_string(),
        serde_json::json!({
            "per_txn": change.per_txn, "daily": change.daily, "password_free": change.password_free
        }),
    )
    .await;
    Ok(l)
}

/// Sets the card's 6-digit payment PIN (stored only as a keyed hash).
pub async fn set_pin(ops: &Ops, who: &Operator, user: &UserId, pin: &str) -> Result<(), OpsError> {
    if !crate::tsm::valid_pin(pin) {
        return Err(Refusal::InvalidPin.into());
    }
    let hash = crate::tsm::pin_hash(ops.config.keys.pin_hashes.expose(), user, pin);
    let u = user.clone();
    ops.db(move |c| cards::set_pin_hash(c, &u, &hash)).await?;
    ops.record(who, "card.pin", user.to_string(), serde_json::json!({}))
        .await;
    Ok(())
}

/// Lifts a PIN lock and clears the count of wrong PINs.
pub async fn unlock_pin(ops: &Ops, who: &Operator, user: &UserId) -> Result<(), OpsError> {
    let u = user.clone();
    ops.db(move |c| cards::unlock_pin(c, &u)).await?;
    ops.record(
        who,
        "card.pin_unlock",
        user.to_string(),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}

/// Cards whose user id starts with `query` or whose holder's name contains it.
pub async fn search(
    ops: &Ops,
    query: &str,
    limit: i64,
) -> Result<Vec<crate::db::listings::CardRow>, OpsError> {
    let q = query.to_owned();
    Ok(crate::db::run(&ops.pool, move |c| {
        crate::db::listings::search_cards(c, &q, limit)
    })
    .await?)
}
