//! `/admin/v1` routes added for the operator console (`/console`), registered in
//! `admin::routes`: the dashboard, the lists (merchants, cards, fee rules), a dead letter in
//! full, the static QR codes as images, the daily report as CSV, new terminal credentials and
//! the card's PIN. Like the rest of `/admin/v1` they take an admin token or the console's
//! session cookie, and every change goes through `ops` with the operator's name.

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use crate::domain::{MerchantId, TerminalId, UserId};
use crate::ops::{self, Operator, Ops};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

fn ops_of(state: &AppState) -> Ops {
    Ops::new(state.pool.clone(), state.config.clone())
}

fn operator(who: &Admin) -> Operator {
    Operator::admin(&who.0)
}

fn merchant(path: &str) -> Result<MerchantId, ApiError> {
    MerchantId::parse(path).map_err(|_| ApiError::new(404, "not_found", "no such merchant"))
}

fn user(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(|_| ApiError::new(404, "not_found", "no such cardholder"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardQuery {
    minutes: Option<i64>,
}

/// `GET /admin/v1/dashboard`: today's payments, the last minutes, the queues.
pub async fn dashboard(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<DashboardQuery>,
) -> Result<HttpResponse, ApiError> {
    let minutes = q.minutes.unwrap_or(30);
    if !(1..=120).contains(&minutes) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "minutes is 1 to 120",
        ));
    }
    Ok(HttpResponse::Ok().json(ops::reports::dashboard(&ops_of(&state), minutes).await?))
}

/// `GET /admin/v1/merchants`: every merchant with its live terminals.
pub async fn merchants(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let list = ops::merchants::list(&ops_of(&state)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "merchants": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    terminal: Option<String>,
}

/// The static code's payload for the merchant (and terminal), recorded as printed.
async fn static_payload(
    who: &Admin,
    state: &AppState,
    path: &str,
    q: &QrQuery,
) -> Result<(String, String), ApiError> {
    let m = merchant(path)?;
    let t = q
        .terminal
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(TerminalId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let qr = ops::merchants::static_qr(&ops_of(state), &operator(who), &m, t.as_ref()).await?;
    let name = match &t {
        Some(t) => format!("campuspay-{m}-{t}"),
        None => format!("campuspay-{m}"),
    };
    Ok((qr.payload, name))
}

fn image(content_type: &'static str, file: String, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{file}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn render_failed(e: crate::qr::RenderError) -> ApiError {
    log::error!("rendering a static QR code: {e}");
    ApiError::new(500, "internal_error", "could not draw the QR code")
}

/// `GET /admin/v1/merchants/{id}/qr.png?terminal=T`: the printable static code as a PNG.
pub async fn qr_png(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let (payload, name) = static_payload(&who, &state, &path, &q).await?;
    let png = crate::qr::render_png(&payload).map_err(render_failed)?;
    Ok(image("image/png", format!("{name}.png"), png))
}

/// `GET /admin/v1/merchants/{id}/qr.svg?terminal=T`: the same code as an SVG.
pub async fn qr_svg(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let (payload, name) = static_payload(&who, &state, &path, &q).await?;
    let svg = crate::qr::render_svg(&payload).map_err(render_failed)?;
    Ok(image(
        "image/svg+xml",
        format!("{name}.svg"),
        svg.into_bytes(),
    ))
}

/// `POST /admin/v1/terminals/{merchant}/{terminal}/rotate`: new credentials for a till (a
/// new broker password and token), shown once; the old ones stop working at once.
pub async fn rotate_terminal(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (m, t) = path.into_inner();
    let m = merchant(&m)?;
    let t =
        TerminalId::parse(&t).map_err(|_| ApiError::new(404, "not_found", "no such terminal"))?;
    let out = ops::merchants::rotate_terminal(&ops_of(&state), &operator(&who), &m, &t).await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSearch {
    q: String,
    limit: Option<i64>,
}

/// `GET /admin/v1/cards?q=…`: cards by user id prefix or holder's name.
pub async fn search_cards(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<CardSearch>,
) -> Result<HttpResponse, ApiError> {
    let query = q.q.trim();
    if query.is_empty() || query.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is 1 to 100 characters: a user id's start or part of a name",
        ));
    }
    let limit = q.limit.unwrap_or(50);
    let cards = ops::cards::search(&ops_of(&state), query, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "cards": cards })))
}

/// `POST /admin/v1/cards/{user}/pin/unlock`: lifts a PIN lock and clears the wrong tries.
pub async fn pin_unlock(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    ops::cards::unlock_pin(&ops_of(&state), &operator(&who), &u).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user_id": u, "pin_locked": false })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    pin: String,
}

/// `PUT /admin/v1/cards/{user}/pin`: sets a new payment PIN (the cardholder forgot theirs).
pub async fn pin_reset(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let b: PinBody = super::json_object(&body)?;
    ops::cards::set_pin(&ops_of(&state), &operator(&who), &u, &b.pin).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user_id": u, "pin_set": true })))
}

/// `GET /admin/v1/fee-rules`: the 搭伙费 rules, newest first.
pub async fn fee_rules(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rules = ops::money::fee_rules(&ops_of(&state)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rules": rules })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyQuery {
    date: Option<chrono::NaiveDate>,
}

/// `GET /admin/v1/reports/daily.csv`: the daily report as the CLI's CSV, for a spreadsheet.
pub async fn daily_csv(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<DailyQuery>,
) -> Result<HttpResponse, ApiError> {
    let report = ops::reports::daily(&ops_of(&state), q.date).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"campuspay-daily-{}.csv\"",
                report.date
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(report.to_csv()))
}

/// `GET /admin/v1/dead/letters/{id}`: every copy of one dead letter, decoded, payment codes masked
/// (all of them given back to `pay.dead`).
pub async fn dead_letter(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = ops::queues::dead_show(&ops_of(&state), &path, 10_000)
        .await
        .map_err(super::admin::queues_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "copies": found })))
}
