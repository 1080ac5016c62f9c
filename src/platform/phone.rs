//! Phone routes: payment codes (TSM), orders from scanned merchant QR codes, and the
//! cardholder's own view. Every body is parsed into domain types here, at the edge.

use super::auth::Cardholder;
use super::error::ApiError;
use super::AppState;
use crate::db::{self, admin, forward};
use crate::domain::campus_qr::{decode_campus, MerchantQr};
use crate::domain::{
    Amount, MerchantId, PaymentMode, QrKind, RequestId, TerminalId, TransactionId,
};
use crate::messages::internal::{Outcome, PaymentItem};
use crate::pipeline::to_stage;
use crate::{qr, tsm};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

pub async fn payment_codes(
    who: Cardholder,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let issued = tsm::issue(
        &state.pool,
        state.config.keys.payment_codes.expose(),
        &who.0,
        state.config.code_ttl,
        state.config.code_prefix,
    )
    .await??;
    Ok(HttpResponse::Created().json(issued))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub request_id: String,
    pub qr: String,
}

pub async fn create_order(
    who: Cardholder,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: CreateOrder = super::json_object(&body)?;
    let request_id = RequestId::parse(&body.request_id)
        .map_err(|_| ApiError::bad_request("invalid_body", "request_id must be a UUID"))?;
    let scanned = decode_campus(body.qr.trim()).map_err(|e| {
        ApiError::bad_request(
            "invalid_qr",
            format!("not a valid campus merchant QR code: {e}"),
        )
    })?;
    let (kind, merchant, terminal, amount, reference): (
        QrKind,
        MerchantId,
        TerminalId,
        Option<Amount>,
        Option<String>,
    ) = match scanned {
        MerchantQr::Static {
            merchant_id,
            terminal_id: None,
        } => (
            QrKind::StaticMerchant,
            merchant_id,
            qr::counter_terminal(),
            None,
            None,
        ),
        MerchantQr::Static {
            merchant_id,
            terminal_id: Some(t),
        } => (QrKind::StaticTerminal, merchant_id, t, None, None),
        MerchantQr::Dynamic {
            merchant_id,
            terminal_id,
            amount,
            reference,
            signature,
        } => {
            if !qr::signature_valid(
                state.config.keys.qr_signatures.expose(),
                &merchant_id,
                &terminal_id,
                amount,
                &reference,
                &signature,
            ) {
                return Err(ApiError::bad_request(
                    "invalid_qr",
                    "the dynamic QR code was altered",
                ));
            }
            (
                QrKind::Dynamic,
                merchant_id,
                terminal_id,
                Some(amount),
                Some(reference),
            )
        }
    };
    if let Some(reference) = reference.clone() {
        // The stored code is the truth: amount, terminal and merchant must all match it.
        let row = db::run(&state.pool, move |c| forward::find_dynamic(c, &reference)).await?;
        let matches = row.as_ref().is_some_and(|r| {
            r.merchant_id == merchant.as_str()
                && r.terminal_id == terminal.as_str()
                && Some(r.amount) == amount.map(|a| a.value())
        });
        if !matches {
            return Err(ApiError::bad_request(
                "invalid_qr",
                "the dynamic QR code was altered or never issued",
            ));
        }
    }
    let user = who.0.clone();
    let view = db::run(&state.pool, move |c| {
        forward::create_order(
            c,
            forward::NewOrder {
                user: &user,
                request_id: request_id.0,
                qr_kind: kind,
                merchant: &merchant,
                terminal: &terminal,
                amount,
                dynamic_reference: reference.as_deref(),
            },
        )
    })
    .await??;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayOrder {
    /// Required for a static code; optional for a dynamic one (then it must match).
    #[serde(default)]
    pub amount: Option<String>,
    /// The card's 6-digit PIN, needed above its password-free amount.
    #[serde(default)]
    pub pin: Option<String>,
}

pub async fn pay_order(
    who: Cardholder,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    // An empty body means "no amount" (a dynamic code); anything else must be a valid PayOrder.
    let body: PayOrder = if body.iter().all(u8::is_ascii_whitespace) {
        PayOrder {
            amount: None,
            pin: None,
        }
    } else {
        super::json_object(&body)?
    };
    let amount = match body.amount {
        Some(a) => Some(
            Amount::parse(&a)
                .map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))?,
        ),
        None => None,
    };
    let pin = body.pin.clone();
    if pin.as_deref().is_some_and(|p| !tsm::valid_pin(p)) {
        return Err(ApiError::pin_invalid(None, "a PIN is 6 digits"));
    }
    let hash = pin
        .as_deref()
        .map(|p| tsm::pin_hash(state.config.keys.pin_hashes.expose(), &who.0, p));
    let user = who.0.clone();
    let submitted = db::run(&state.pool, move |c| {
        forward::submit_order(
            c,
            &user,
            id,
            amount,
            forward::PinCheck {
                pin: pin.as_deref(),
                hash,
            },
        )
    })
    .await??;
    let view_before = {
        let (u, oid) = (who.0.clone(), id);
        db::run(&state.pool, move |c| forward::view_order(c, &u, oid)).await??
    };
    // A final order needs no second trip through the pipeline.
    if !view_before.status.is_final() {
        let order = &submitted.order;
        let item = PaymentItem {
            request_id: RequestId(order.request_id),
            mode: PaymentMode::ForwardScan,
            merchant_id: MerchantId::parse(&order.merchant_id)
                .map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?,
            terminal_id: TerminalId::parse(&order.terminal_id)
                .map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?,
            amount: Some(submitted.amount),
            code_hash: None,
            card: Some(submitted.card),
            transaction_id: Some(TransactionId(order.id)),
            fee: None,
            fee_rule_id: None,
            pin_verified: submitted.pin_verified,
            outcome: Outcome::Pending,
        };
        log::info!(
            request_id:% = item.request_id, transaction_id:% = id;
            "platform: confirmed order handed to the order stage"
        );
        let trace = crate::pipeline::Trace::received_now(std::slice::from_ref(&item));
        let messages = to_stage(&state.config.keys.stage_mac, "order", vec![item], &trace)
            .map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?;
        state.publisher.publish(&messages).await.map_err(|e| {
            log::warn!(transaction_id:% = id; "cannot hand order {id} to the pipeline: {e}");
            ApiError::new(
                503,
                "unavailable",
                "the payment pipeline is unavailable; confirm again to retry",
            )
        })?;
    }
    let (u, oid) = (who.0.clone(), id);
    let view = db::run(&state.pool, move |c| forward::view_order(c, &u, oid)).await??;
    Ok(HttpResponse::Accepted().json(view))
}

fn order_id(path: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(path).map_err(|_| ApiError::new(404, "not_found", "no such order"))
}

pub async fn get_order(
    who: Cardholder,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let view = db::run(&state.pool, move |c| forward::view_order(c, &who.0, id)).await??;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn me(who: Cardholder, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = db::run(&state.pool, move |c| admin::card_show(c, &who.0)).await??;
    Ok(HttpResponse::Ok().json(view))
}
