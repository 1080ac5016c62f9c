//! Confirming a reverse-scan payment on the phone: `GET /v1/confirmations`,
//! `POST /v1/confirmations/{id}/confirm`, `POST /v1/confirmations/{id}/decline`.
//!
//! A reverse scan above the card's password-free amount waits `awaiting_confirmation` (the POS
//! has a `pending` answer, the phone a `confirmation_request.v1`). Confirming it checks the PIN
//! with the card's lockout and hands it back to settlement with the PIN verified; declining it
//! hands it back to be declined `user_declined`. The final `result.v1` then reaches the POS and
//! the phone like every result. What the cardholder did is recorded before the hand-over, and
//! the confirmation sweeper (`pipeline::confirmation`) hands it over again if this one is lost,
//! so a `503` here leaves nothing half done: asking again is safe.

use super::auth::Cardholder;
use super::error::ApiError;
use super::AppState;
use crate::db::{self, confirmations};
use crate::domain::{DeclineReason, TransactionId};
use crate::messages::external::ConfirmationRequestV1;
use crate::messages::internal::{Outcome, PaymentItem};
use crate::pipeline::fanout::confirmation_request_of;
use crate::pipeline::to_settlement;
use crate::tsm;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// At most this many confirmations are listed (a cardholder has one or two at a time; a
/// payment waits at most ten minutes).
const MAX_LISTED: i64 = 20;

/// Body of `GET /v1/confirmations`.
#[derive(Debug, Serialize)]
pub struct ConfirmationList {
    pub confirmations: Vec<ConfirmationRequestV1>,
}

/// Body of `POST /v1/confirmations/{id}/confirm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The card's 6-digit payment PIN.
    pub pin: String,
}

/// Answer of a confirmation (`processing`: being settled) or a decline (`declined`,
/// `user_declined`); the final `result.v1` follows on the event stream.
#[derive(Debug, Serialize)]
pub struct ConfirmationAnswer {
    pub transaction_id: TransactionId,
    pub status: &'static str,
    pub reason: Option<DeclineReason>,
}

fn transaction_id(path: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(path).map_err(|_| {
        ApiError::new(
            404,
            "not_found",
            "no such payment awaiting this cardholder's confirmation",
        )
    })
}

/// Hands items to their settlement shards.
async fn hand_to_settlement(state: &AppState, items: Vec<PaymentItem>) -> Result<(), ApiError> {
    for item in &items {
        match item.transaction_id {
            Some(tx) => log::info!(
                request_id:% = item.request_id, transaction_id:% = tx;
                "platform: the cardholder's answer handed to settlement"
            ),
            None => log::info!(
                request_id:% = item.request_id;
                "platform: the cardholder's answer handed to settlement"
            ),
        }
    }
    let messages = to_settlement(
        &state.config.keys.stage_mac,
        state.config.settlement_shards,
        items,
        &crate::pipeline::Trace::default(),
    )
    .map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?;
    state.publisher.publish(&messages).await.map_err(|e| {
        log::warn!("cannot hand a confirmation to settlement: {e}");
        ApiError::new(
            503,
            "unavailable",
            "the payment pipeline is unavailable; your answer is recorded and will be \
             settled, and sending it again is safe",
        )
    })
}

pub async fn list(who: Cardholder, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let user = who.0.clone();
    let items = db::run(&state.pool, move |c| {
        confirmations::open_for(c, &user, MAX_LISTED)
    })
    .await?;
    let confirmations = items
        .iter()
        .filter_map(|item| match &item.outcome {
            Outcome::AwaitingConfirmation(awaiting) => confirmation_request_of(item, awaiting),
            Outcome::Pending | Outcome::Done(_) => None,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ConfirmationList { confirmations }))
}

pub async fn confirm(
    who: Cardholder,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = transaction_id(&path)?;
    let body: ConfirmBody = super::json_object(&body)?;
    if !tsm::valid_pin(&body.pin) {
        return Err(ApiError::pin_invalid(None, "a PIN is 6 digits"));
    }
    let hash = tsm::pin_hash(state.config.keys.pin_hashes.expose(), &who.0, &body.pin);
    let user = who.0.clone();
    let item = db::run(&state.pool, move |c| {
        confirmations::confirm(c, &user, id, &hash)
    })
    .await??;
    hand_to_settlement(&state, vec![item]).await?;
    Ok(HttpResponse::Accepted().json(ConfirmationAnswer {
        transaction_id: TransactionId(id),
        status: "processing",
        reason: None,
    }))
}

pub async fn decline(
    who: Cardholder,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = transaction_id(&path)?;
    let user = who.0.clone();
    let item = db::run(&state.pool, move |c| confirmations::decline(c, &user, id)).await??;
    if let Some(item) = item {
        hand_to_settlement(&state, vec![item]).await?;
    }
    Ok(HttpResponse::Ok().json(ConfirmationAnswer {
        transaction_id: TransactionId(id),
        status: "declined",
        reason: Some(DeclineReason::UserDeclined),
    }))
}
