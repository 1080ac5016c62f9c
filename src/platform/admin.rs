//! `/admin/v1`: the back-office routes matching `campuspay admin …` (admin JWT, or the
//! console's session cookie); the console's views are in `admin_views`. Metrics are
//! not here: they are on the operations listener (`platform::operations`).

use super::admin_views as views;
use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use crate::admin::queues;
use crate::domain::{Amount, MerchantId, TerminalId, TransactionId, UserId};
use crate::ops::{self, Operator, Ops};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/v1")
            .route("/dashboard", web::get().to(views::dashboard))
            .route("/queues", web::get().to(queues_overview))
            .route("/verify", web::get().to(verify))
            .route("/cards", web::get().to(views::search_cards))
            .route("/cards/{user}", web::get().to(card))
            .route("/cards/{user}/freeze", web::post().to(freeze))
            .route("/cards/{user}/unfreeze", web::post().to(unfreeze))
            .route("/cards/{user}/topup", web::post().to(topup))
            .route("/cards/{user}/limits", web::put().to(limits))
            .route("/cards/{user}/sign-in-links", web::post().to(sign_in_link))
            .route("/cards/{user}/pin", web::put().to(views::pin_reset))
            .route(
                "/cards/{user}/pin/unlock",
                web::post().to(views::pin_unlock),
            )
            .route("/refunds", web::post().to(refund))
            .route("/dead", web::get().to(dead_letters))
            .route("/dead/replay", web::post().to(dead_replay))
            .route("/dead/drop", web::post().to(dead_drop))
            .route("/dead/letters/{id}", web::get().to(views::dead_letter))
            .route("/queues/{name}/purge", web::post().to(purge))
            .route("/topology/check", web::get().to(topology_check))
            .route("/merchants", web::get().to(views::merchants))
            .route("/merchants", web::post().to(add_merchant))
            .route("/merchants/{id}/qr.png", web::get().to(views::qr_png))
            .route("/merchants/{id}/qr.svg", web::get().to(views::qr_svg))
            .route("/terminals", web::post().to(add_terminal))
            .route(
                "/terminals/{merchant}/{terminal}/rotate",
                web::post().to(views::rotate_terminal),
            )
            .route(
                "/terminals/{merchant}/{terminal}/sign-in-links",
                web::post().to(terminal_sign_in_link),
            )
            .route("/cards", web::post().to(add_card))
            .route("/fee-rules", web::get().to(views::fee_rules))
            .route("/fee-rules", web::post().to(set_fee))
            .service(
                web::resource("/subsidies")
                    // A campus-wide subsidy file is a few hundred kilobytes.
                    .app_data(web::PayloadConfig::new(8 << 20))
                    .route(web::post().to(subsidy_import))
                    // A resource of its own would answer other methods 405 without a body.
                    .default_service(web::to(super::no_such_route)),
            )
            .route("/reports/daily", web::get().to(daily))
            .route("/reports/daily.csv", web::get().to(views::daily_csv)),
    );
}

fn user(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(|_| ApiError::new(404, "not_found", "no such cardholder"))
}

fn amount(field: &str, s: Option<&str>) -> Result<Option<Amount>, ApiError> {
    s.map(|s| {
        Amount::parse(s)
            .map_err(|e| ApiError::bad_request("invalid_amount", format!("{field}: {e}")))
    })
    .transpose()
}

async fn queues_overview(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let o = ops::queues::overview(&ops_of(&state), false)
        .await
        .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(o))
}

fn ops_of(state: &AppState) -> Ops {
    Ops::new(state.pool.clone(), state.config.clone())
}

fn operator(who: &Admin) -> Operator {
    Operator::admin(&who.0)
}

async fn verify(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ops::reports::verify(&ops_of(&state), 300).await?))
}

async fn card(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    Ok(HttpResponse::Ok().json(ops::cards::show(&ops_of(&state), &u).await?))
}

async fn freeze(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let out = ops::cards::freeze(&ops_of(&state), &operator(&who), &u).await?;
    Ok(HttpResponse::Ok().json(out))
}

async fn unfreeze(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let out = ops::cards::unfreeze(&ops_of(&state), &operator(&who), &u).await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopupBody {
    amount: String,
    request_id: uuid::Uuid,
}

async fn topup(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let body: TopupBody = super::json_object(&body)?;
    let a = amount("amount", Some(&body.amount))?
        .ok_or_else(|| ApiError::bad_request("invalid_amount", "amount"))?;
    let id = body.request_id;
    let balance = ops::money::topup(
        &ops_of(&state),
        &operator(&who),
        &u,
        a,
        id,
        "top-up (admin API)",
    )
    .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"user_id": u, "amount": a, "balance": balance, "entry_id": id})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    per_txn: Option<String>,
    daily: Option<String>,
    password_free: Option<String>,
}

async fn limits(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let body: LimitsBody = super::json_object(&body)?;
    let (p, d, f) = (
        amount("per_txn", body.per_txn.as_deref())?,
        amount("daily", body.daily.as_deref())?,
        amount("password_free", body.password_free.as_deref())?,
    );
    let change = ops::cards::LimitChange {
        per_txn: p,
        daily: d,
        password_free: f,
    };
    let l = ops::cards::limits(&ops_of(&state), &operator(&who), &u, change).await?;
    Ok(HttpResponse::Ok().json(l))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInLinkBody {
    ttl_secs: Option<i64>,
}

/// A one-time sign-in link for the cardholder's wallet page (`admin token --user U --link`).
/// The body is optional: `{"ttl_secs": 900}`.
async fn sign_in_link(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let ttl = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::json_object::<SignInLinkBody>(&body)?.ttl_secs
    };
    let link = ops::tokens::cardholder_link(&ops_of(&state), &operator(&who), &u, ttl).await?;
    Ok(HttpResponse::Created().json(link))
}

/// A one-time sign-in link for a till's page (`admin token --terminal M/T --link`); the same
/// optional body and answer shape as the cardholder's, naming the merchant and the terminal.
async fn terminal_sign_in_link(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let no_such = || ApiError::new(404, "not_found", "no such terminal");
    let m = MerchantId::parse(&path.0).map_err(|_| no_such())?;
    let t = TerminalId::parse(&path.1).map_err(|_| no_such())?;
    let ttl = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::json_object::<SignInLinkBody>(&body)?.ttl_secs
    };
    let link = ops::tokens::terminal_link(&ops_of(&state), &operator(&who), &m, &t, ttl).await?;
    Ok(HttpResponse::Created().json(link))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    transaction_id: uuid::Uuid,
    amount: Option<String>,
    request_id: uuid::Uuid,
    #[serde(default)]
    reason: String,
}

async fn refund(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: RefundBody = super::json_object(&body)?;
    let a = amount("amount", b.amount.as_deref())?;
    let out = ops::money::refund(
        &ops_of(&state),
        &operator(&who),
        TransactionId(b.transaction_id),
        a,
        b.request_id,
        &b.reason,
    )
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
struct DailyQuery {
    date: Option<chrono::NaiveDate>,
}

async fn daily(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<DailyQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ops::reports::daily(&ops_of(&state), q.date).await?))
}

#[derive(Deserialize)]
struct DeadQuery {
    limit: Option<usize>,
}

/// The dead letters in `pay.dead` (read and given back, none lost).
async fn dead_letters(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<DeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let listing = ops::queues::dead_list(&ops_of(&state), limit)
        .await
        .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(listing))
}

#[derive(Deserialize)]
struct SubsidyQuery {
    batch: Option<String>,
    /// Only say what the import would do, crediting nothing (the console's preview).
    #[serde(default)]
    dry_run: bool,
}

/// A subsidy file as the body (`text/csv`, `user_id,amount[,memo]` lines), like
/// `campuspay admin subsidy import`; with `dry_run=true` what it would do, nothing credited.
async fn subsidy_import(
    who: Admin,
    state: web::Data<AppState>,
    q: web::Query<SubsidyQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_body", "the file must be UTF-8 text"))?;
    let SubsidyQuery { batch, dry_run } = q.into_inner();
    let batch = batch.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            "name the subsidy batch: ?batch=2026-11%20meal%20subsidy",
        )
    })?;
    let report = if dry_run {
        ops::money::preview_subsidies(&ops_of(&state), text, batch).await?
    } else {
        ops::money::import_subsidies(&ops_of(&state), &operator(&who), text, batch).await?
    };
    Ok(HttpResponse::Ok().json(report))
}

/// Broker-side failures of the queue commands: a refusal is the caller's (409/400/404), the rest
/// is the broker being unavailable.
pub(super) fn queues_error(e: queues::QueuesError) -> ApiError {
    use queues::QueuesError as Q;
    match e {
        Q::NotConfirmed { .. } | Q::Protected { .. } => {
            ApiError::new(409, "refused", e.to_string())
        }
        Q::NoSuchQueue { .. } | Q::NotFound { .. } => {
            ApiError::new(404, "not_found", e.to_string())
        }
        Q::BadLimit(_) | Q::NothingSelected | Q::UnknownStage(_) | Q::NoReason => {
            ApiError::bad_request("invalid_body", e.to_string())
        }
        Q::Management(_)
        | Q::Broker(_)
        | Q::Amqp(_)
        | Q::BadAmqpUrl(_)
        | Q::Record { .. }
        | Q::Definitions { .. }
        | Q::Task(_) => {
            log::warn!("queue operation failed: {e}");
            ApiError::new(503, "unavailable", e.to_string())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    stage: Option<String>,
}

async fn dead_replay(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: ReplayBody = super::json_object(&body)?;
    let selection = if b.all {
        queues::Selection::All { stage: b.stage }
    } else {
        queues::Selection::Ids(b.ids)
    };
    let r = ops::queues::dead_replay(&ops_of(&state), &operator(&who), &selection, 10_000)
        .await
        .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropBody {
    ids: Vec<String>,
    reason: String,
}

async fn dead_drop(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: DropBody = super::json_object(&body)?;
    let record = std::path::PathBuf::from("dead-letters-dropped.jsonl");
    let r = ops::queues::dead_drop(
        &ops_of(&state),
        &operator(&who),
        &b.ids,
        &b.reason,
        &record,
        10_000,
    )
    .await
    .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(r))
}

#[derive(Deserialize)]
struct PurgeQuery {
    #[serde(default)]
    yes: bool,
    #[serde(default)]
    force: bool,
}

async fn purge(
    who: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<PurgeQuery>,
) -> Result<HttpResponse, ApiError> {
    let confirm = queues::PurgeConfirm {
        yes: q.yes,
        force: q.force,
    };
    let r = ops::queues::purge(&ops_of(&state), &operator(&who), &path, confirm)
        .await
        .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(r))
}

async fn topology_check(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let r = ops::queues::topology_check(&ops_of(&state), None)
        .await
        .map_err(queues_error)?;
    Ok(HttpResponse::Ok().json(r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MerchantBody {
    id: String,
    name: String,
}

async fn add_merchant(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: MerchantBody = super::json_object(&body)?;
    let id = crate::domain::MerchantId::parse(&b.id)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    ops::merchants::add_merchant(&ops_of(&state), &operator(&who), &id, &b.name).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "merchant_id": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalBody {
    merchant_id: String,
    terminal_id: String,
}

/// Registers a terminal, provisions its result queue and returns its token.
async fn add_terminal(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: TerminalBody = super::json_object(&body)?;
    let bad = |e: crate::domain::IdError| ApiError::bad_request("invalid_body", e.to_string());
    let m = crate::domain::MerchantId::parse(&b.merchant_id).map_err(bad)?;
    let t = crate::domain::TerminalId::parse(&b.terminal_id).map_err(bad)?;
    let added = ops::merchants::add_terminal(&ops_of(&state), &operator(&who), &m, &t).await?;
    Ok(HttpResponse::Created().json(added))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    user_id: String,
    name: String,
    identity: String,
}

async fn add_card(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: CardBody = super::json_object(&body)?;
    let u = UserId::parse(&b.user_id)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let identity = crate::domain::Identity::parse(&b.identity).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            "identity must be student, staff, temporary or external",
        )
    })?;
    let card =
        ops::cards::add_card(&ops_of(&state), &operator(&who), &u, &b.name, identity).await?;
    Ok(HttpResponse::Created()
        .json(serde_json::json!({ "user_id": u, "card_id": card.0, "identity": identity })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeBody {
    identity: String,
    rate: String,
    merchant_id: Option<String>,
}

async fn set_fee(
    who: Admin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: FeeBody = super::json_object(&body)?;
    let identity = crate::domain::Identity::parse(&b.identity).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            "identity must be student, staff, temporary or external",
        )
    })?;
    let rate = crate::domain::FeeRate::parse(&b.rate)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let merchant = b
        .merchant_id
        .map(|m| crate::domain::MerchantId::parse(&m))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let id = ops::money::set_fee(
        &ops_of(&state),
        &operator(&who),
        identity,
        rate,
        merchant.as_ref(),
    )
    .await?;
    Ok(HttpResponse::Created().json(
        serde_json::json!({ "rule_id": id.0, "identity": identity, "rate": rate.to_string() }),
    ))
}
