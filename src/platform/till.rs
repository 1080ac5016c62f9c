//! The POS page's bridge (`/pos/v1/…`): a till in a browser acts exactly as a hardware till
//! does. Each route publishes the same contract message (`scan.v1`, `query.v1`,
//! `reversal.v1`, `dynamic_qr.v1`) on `pay.requests` with routing key
//! `pos.<merchant>.<terminal>.<verb>`, a terminal token of the terminal's current version in
//! `authorization`, and the pipeline's broker user in `user-id`; QR validation then checks it
//! like any other request. The answers come back on `pay.results` under
//! `pos.<merchant>.<terminal>` and reach the page through `GET /pos/v1/events`.
//!
//! **Who the till is** comes from the browser's session only (`SessionRole::Terminal`, subject
//! `<merchant>/<terminal>`), never from a body: the bodies name no merchant or terminal, and
//! one that tries is refused as `invalid_body` (docs/SECURITY.md, *The POS page*).

use super::error::ApiError;
use super::{events, session, AppState};
use crate::broker::topology::REQUESTS;
use crate::broker::Outgoing;
use crate::db::{self, forward, till};
use crate::domain::{Amount, MerchantId, PaymentCode, RequestId, SessionRole, TerminalId};
use crate::messages::external::{pos_result_key, DYNAMIC_QR_V1, QUERY_V1, REVERSAL_V1, SCAN_V1};
use crate::messages::format_time;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long the token the bridge puts on a request lives: long enough for a request queued
/// behind a backlog to still verify, short enough that a copy of it is soon worthless.
const BRIDGE_TOKEN_SECS: i64 = 600;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/pos/v1")
            .route("/me", web::get().to(me))
            .route("/scans", web::post().to(scan))
            .route("/queries", web::post().to(query))
            .route("/reversals", web::post().to(reversal))
            .route("/dynamic-qr", web::post().to(dynamic_qr))
            .route("/dynamic-qr/{reference}", web::get().to(dynamic_qr_paid))
            .route("/events", web::get().to(till_events))
            .route("/sales", web::get().to(sales)),
    );
}

/// The till a browser session is: its merchant, its terminal and the terminal's current token
/// version. Only a till's session; a cardholder's or an operator's is `403 forbidden`.
pub struct Till {
    pub merchant: MerchantId,
    pub terminal: TerminalId,
    pub token_version: i32,
}

impl FromRequest for Till {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Till, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::new(500, "internal_error", "application state missing"))?;
            let s = session::from_cookie(&req, &state)
                .await?
                .ok_or_else(|| ApiError::unauthorized("sign in with the till's sign-in link"))?;
            if s.role != SessionRole::Terminal {
                return Err(ApiError::new(
                    403,
                    "forbidden",
                    "these routes need a till's session",
                ));
            }
            let bad = || ApiError::unauthorized("the session names no valid terminal");
            let (m, t) = s.subject.split_once('/').ok_or_else(bad)?;
            Ok(Till {
                merchant: MerchantId::parse(m).map_err(|_| bad())?,
                terminal: TerminalId::parse(t).map_err(|_| bad())?,
                token_version: s.token_version,
            })
        })
    }
}

impl Till {
    /// Publishes `body` (the contract message, its identity filled in here) for this till, as
    /// the till: a fresh short-lived terminal token and the pipeline's broker user.
    async fn publish(
        &self,
        state: &AppState,
        verb: &str,
        mut body: serde_json::Value,
    ) -> Result<(), ApiError> {
        body["merchant_id"] = json!(self.merchant.as_str());
        body["terminal_id"] = json!(self.terminal.as_str());
        body["sent_at"] = json!(format_time(chrono::Utc::now()));
        let token = state
            .jwt
            .issue_terminal_for(
                &self.merchant,
                &self.terminal,
                self.token_version,
                BRIDGE_TOKEN_SECS,
            )
            .map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?;
        let key = format!("pos.{}.{}.{verb}", self.merchant, self.terminal);
        let msg = Outgoing::json(REQUESTS, key, body.to_string().into_bytes())
            .with_header("authorization", &format!("Bearer {token}"));
        state.till_publisher.publish(&[msg]).await.map_err(|e| {
            log::warn!(
                "POS bridge: cannot publish for {}/{}: {e}",
                self.merchant,
                self.terminal
            );
            ApiError::new(
                503,
                "unavailable",
                "the payment gateway is unavailable; send the same request again",
            )
        })
    }
}

fn request_id(s: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(s)
        .map_err(|_| ApiError::bad_request("invalid_body", "request_id must be a UUID"))
}

fn amount(s: &str) -> Result<Amount, ApiError> {
    Amount::parse(s).map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))
}

/// What a request was accepted as: its answer follows on `GET /pos/v1/events`.
#[derive(Serialize)]
struct Sent {
    request_id: String,
    routing_key: String,
}

fn accepted(till: &Till, request_id: RequestId, verb: &str) -> HttpResponse {
    HttpResponse::Accepted().json(Sent {
        request_id: request_id.to_string(),
        routing_key: format!("pos.{}.{}.{verb}", till.merchant, till.terminal),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    request_id: String,
    payment_code: String,
    amount: String,
}

/// `POST /pos/v1/scans`: a reverse-scan payment (`scan.v1`). Re-sending the same
/// `request_id` is the contract's retry: it never charges twice.
async fn scan(
    till: Till,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: ScanBody = super::json_object(&body)?;
    let rid = request_id(&b.request_id)?;
    let amount = amount(&b.amount)?;
    let code = PaymentCode::parse(&b.payment_code, state.config.code_prefix)
        .map_err(|e| ApiError::bad_request("invalid_payment_code", e.to_string()))?;
    till.publish(
        &state,
        "scan",
        json!({
            "type": SCAN_V1,
            "request_id": rid.to_string(),
            "payment_code": code.expose(),
            "amount": amount.to_string(),
        }),
    )
    .await?;
    Ok(accepted(&till, rid, "scan"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpBody {
    request_id: String,
}

async fn follow_up(
    till: Till,
    state: web::Data<AppState>,
    body: web::Bytes,
    kind: &'static str,
    verb: &'static str,
) -> Result<HttpResponse, ApiError> {
    let b: FollowUpBody = super::json_object(&body)?;
    let rid = request_id(&b.request_id)?;
    till.publish(
        &state,
        verb,
        json!({"type": kind, "request_id": rid.to_string()}),
    )
    .await?;
    Ok(accepted(&till, rid, verb))
}

/// `POST /pos/v1/queries`: what became of an earlier request (`query.v1`).
async fn query(
    till: Till,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    follow_up(till, state, body, QUERY_V1, "query").await
}

/// `POST /pos/v1/reversals`: cancel an earlier request (`reversal.v1`), within the reversal
/// window the pipeline enforces.
async fn reversal(
    till: Till,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    follow_up(till, state, body, REVERSAL_V1, "reversal").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DynamicQrBody {
    request_id: String,
    amount: String,
}

/// `POST /pos/v1/dynamic-qr`: a dynamic merchant QR code with the amount in it
/// (`dynamic_qr.v1`); `dynamic_qr_issued.v1` follows on the events.
async fn dynamic_qr(
    till: Till,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: DynamicQrBody = super::json_object(&body)?;
    let rid = request_id(&b.request_id)?;
    let amount = amount(&b.amount)?;
    till.publish(
        &state,
        "dynamic_qr",
        json!({"type": DYNAMIC_QR_V1, "request_id": rid.to_string(), "amount": amount.to_string()}),
    )
    .await?;
    Ok(accepted(&till, rid, "dynamic_qr"))
}

#[derive(Serialize)]
struct DynamicQrPaid {
    reference: String,
    /// The order that paid it (the forward-scan result's `transaction_id`), or null.
    order_id: Option<uuid::Uuid>,
}

/// `GET /pos/v1/dynamic-qr/{reference}`: whether a dynamic QR code of this till was paid, and by
/// which order. Another till's code, or none, is `404`.
async fn dynamic_qr_paid(
    till: Till,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reference = path.into_inner();
    // References are short tokens the gateway made; anything long is no reference of ours.
    if reference.len() > 64 {
        return Err(ApiError::new(
            404,
            "not_found",
            "no such dynamic QR code at this till",
        ));
    }
    let (m, t, r) = (
        till.merchant.clone(),
        till.terminal.clone(),
        reference.clone(),
    );
    let found = db::run(&state.pool, move |c| till::dynamic_qr_order(c, &m, &t, &r)).await?;
    match found {
        Some(order_id) => Ok(HttpResponse::Ok().json(DynamicQrPaid {
            reference,
            order_id,
        })),
        None => Err(ApiError::new(
            404,
            "not_found",
            "no such dynamic QR code at this till",
        )),
    }
}

/// `GET /pos/v1/events`: what arrives on the till's own queue `pos.<merchant>.<terminal>`
/// (`till_feed`).
async fn till_events(till: Till, state: web::Data<AppState>) -> HttpResponse {
    let rx = state.hub.subscribe_till(
        &pos_result_key(&till.merchant, &till.terminal),
        &state.config.amqp_url,
        state.stopping.clone(),
    );
    events::stream(rx, state.stopping.clone(), "GET /pos/v1/sales or query.v1")
}

#[derive(Serialize)]
struct Me {
    merchant_id: String,
    merchant_name: Option<String>,
    terminal_id: String,
    /// The campus's code prefix (the page checks codes before sending them; `28` also passes).
    code_prefix: String,
}

/// `GET /pos/v1/me`: which till this is.
async fn me(till: Till, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let m = till.merchant.clone();
    let name = db::run(&state.pool, move |c| forward::merchant_name(c, &m)).await?;
    Ok(HttpResponse::Ok().json(Me {
        merchant_id: till.merchant.to_string(),
        merchant_name: name,
        terminal_id: till.terminal.to_string(),
        code_prefix: state.config.code_prefix.to_string(),
    }))
}

#[derive(Serialize)]
struct SalesView {
    #[serde(flatten)]
    sales: till::Sales,
    /// Approved payments processed at or after this instant may still be reversed from the
    /// till (`CAMPUSPAY_REVERSAL_WINDOW`); older ones only by the back office.
    reversible_since: chrono::DateTime<chrono::Utc>,
}

/// `GET /pos/v1/sales`: the current campus day's sales at this till.
async fn sales(till: Till, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = chrono::Utc::now();
    let day = crate::config::campus_day_start(state.config.campus_offset, now);
    let (m, t) = (till.merchant.clone(), till.terminal.clone());
    let sales = db::run(&state.pool, move |c| till::sales_since(c, &m, &t, day)).await?;
    Ok(HttpResponse::Ok().json(SalesView {
        sales,
        reversible_since: state.config.reversal_window.opens_at(now, day),
    }))
}
