//! The payment platform (支付平台): the phone's HTTP API (actix-web, JSON, bearer JWTs or a
//! browser session) and the browser pages.
//!
//! Routes: `POST /v1/payment-codes`, `POST /v1/orders`, `POST /v1/orders/{id}/pay`,
//! `GET /v1/orders/{id}`, `GET /v1/confirmations`, `POST /v1/confirmations/{id}/confirm`,
//! `POST /v1/confirmations/{id}/decline`, `GET /v1/events` (SSE), `GET /v1/me`, and
//! `GET /openapi.json`;
//! `/admin/v1/…` (`admin`); the POS page's bridge `/pos/v1/…` (`till`); the wallet page `/app`,
//! the POS page `/pos` and their files (`pages`); sign-in links and sign-out (`session`).
//! A confirmed order is handed to the pipeline's order stage as a one-item batch; from there
//! it follows the same stages as a reverse scan.

pub mod access;
pub mod admin;
pub mod admin_views;
pub mod auth;
pub mod confirmations;
pub mod console;
pub mod error;
pub mod events;
pub mod operations;
pub mod pages;
pub mod phone;
pub mod session;
pub mod till;
pub mod till_feed;

use crate::auth::JwtKeys;
use crate::broker::PublisherSlot;
use crate::config::Config;
use crate::db::Pool;
use actix_web::{web, App, HttpResponse, HttpServer};
use error::ApiError;
use events::ResultHub;
use std::net::SocketAddr;
use tokio::sync::watch;

/// Largest JSON body the platform reads (a QR payload is at most 512 characters).
const MAX_BODY_BYTES: usize = 16 * 1024;

pub struct AppState {
    pub pool: Pool,
    pub jwt: JwtKeys,
    pub config: Config,
    pub publisher: PublisherSlot,
    /// The POS page's bridge: publishes contract messages to `pay.requests` with the pipeline's
    /// broker user as `user-id` (`till`).
    pub till_publisher: PublisherSlot,
    pub hub: ResultHub,
    /// Turns true when the platform stops: open event streams end, so a graceful stop does not
    /// wait out its timeout on them.
    pub stopping: watch::Receiver<bool>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/payment-codes", web::post().to(phone::payment_codes))
            .route("/orders", web::post().to(phone::create_order))
            .route("/orders/{id}", web::get().to(phone::get_order))
            .route("/orders/{id}/pay", web::post().to(phone::pay_order))
            .route("/confirmations", web::get().to(confirmations::list))
            .route(
                "/confirmations/{id}/confirm",
                web::post().to(confirmations::confirm),
            )
            .route(
                "/confirmations/{id}/decline",
                web::post().to(confirmations::decline),
            )
            .route("/events", web::get().to(events::events))
            .route("/me", web::get().to(phone::me)),
    )
    .route("/openapi.json", web::get().to(openapi))
    .configure(admin::routes)
    .configure(till::routes)
    .configure(session::routes)
    .configure(pages::routes);
}

/// Parses a request body that must be a JSON object (serde would also take an array for a
/// struct, which the contract does not allow) no larger than MAX_BODY_BYTES.
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

/// What a path or a method that is not in schemas/openapi.json gets: a JSON 404, never a 405.
async fn no_such_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(404, "not_found", "no such route"))
}

pub const OPENAPI: &str = include_str!("../../schemas/openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// A running platform: its address and how to stop it.
pub struct Platform {
    pub addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    hub: ResultHub,
    hub_stop: watch::Sender<bool>,
}

impl Platform {
    /// Binds `addr` (port 0 picks a free one) and serves until `stop`. Runs in the current actix
    /// system.
    pub fn start(config: &Config, pool: Pool, addr: &str) -> std::io::Result<Platform> {
        let listener = std::net::TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let mut config = config.clone();
        if config.public_url.ends_with(":0") {
            // Derived from a "pick a free port" address (tests, tools): the port is known now.
            config.public_url = format!("http://{bound}");
        }
        let hub = ResultHub::default();
        let (hub_stop, hub_rx) = watch::channel(false);
        actix_rt::spawn(hub.clone().run(config.amqp_url.clone(), hub_rx.clone()));
        let state = web::Data::new(AppState {
            pool,
            jwt: JwtKeys::new(&config.keys),
            config: config.clone(),
            publisher: PublisherSlot::new(
                &config.amqp_url,
                "campuspay platform",
                config.confirm_timeout,
            ),
            till_publisher: PublisherSlot::new(
                &config.amqp_url,
                "campuspay platform tills",
                config.confirm_timeout,
            )
            .as_user(&config.broker_user),
            hub: hub.clone(),
            stopping: hub_rx,
        });
        let server = HttpServer::new(move || {
            let json = web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|err, _| {
                    ApiError::bad_request("invalid_body", err.to_string()).into()
                });
            // A bad query string (`?date=yesterday`, `?limit=x`) is a JSON error like any
            // other, not actix's plain-text default.
            let query = web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request("invalid_query", err.to_string()).into()
            });
            App::new()
                .wrap_fn(access::log_request)
                .app_data(state.clone())
                .app_data(json)
                .app_data(query)
                .configure(routes)
                .default_service(web::to(no_such_route))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?;
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        log::info!("payment platform listening on http://{bound}");
        Ok(Platform {
            addr: bound,
            server: handle,
            hub,
            hub_stop,
        })
    }

    /// Waits until the result hub consumes results, so that an event stream opened from now on
    /// misses none.
    pub async fn ready(&self) {
        self.hub.ready().await;
    }

    pub async fn stop(self) {
        let _ = self.hub_stop.send(true);
        self.server.stop(true).await;
    }
}
