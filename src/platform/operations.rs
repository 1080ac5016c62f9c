//! The operations listener: what a monitoring system asks a process, on an address of its own
//! (`CAMPUSPAY_OPS_ADDR`), apart from the public payment platform. Every `campuspay run`
//! process serves it, stage workers without the platform included:
//! - `GET /healthz`: 200 while the process runs (a liveness probe: restart it when this fails);
//! - `GET /readyz`: 200 when PostgreSQL answers, the broker is connected and every consumer of
//!   this process is registered on its queue; else 503 with a JSON body naming what is not;
//! - `GET /metrics`: this process's Prometheus text (queue depths come from RabbitMQ's own
//!   exporter, not from here: a scrape costs the broker nothing).

use crate::db::{self, DbError, Pool};
use crate::health::{broker_problems, consumer_problems, Consumers};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// How long `/readyz` waits for PostgreSQL before calling it unreachable (a probe must answer
/// well within a load balancer's or systemd's timeout).
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    /// The process's database pool (`None`: no database to check).
    pub pool: Option<Pool>,
    /// The process's stage consumers.
    pub consumers: Consumers,
}

struct State {
    readiness: Readiness,
    /// One database probe at a time: probes that arrive meanwhile wait for its answer instead
    /// of each holding a blocking thread on a database that does not answer.
    db_probe: tokio::sync::Mutex<()>,
}

/// A running operations listener.
pub struct OpsListener {
    pub addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
}

impl OpsListener {
    /// Binds `addr` (port 0: a free one) and serves until `stop`. Runs in the current actix
    /// system.
    pub fn start(addr: &str, readiness: Readiness) -> std::io::Result<OpsListener> {
        let state = web::Data::new(State {
            readiness,
            db_probe: tokio::sync::Mutex::new(()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/metrics", web::get().to(metrics))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)?;
        let bound = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("no address bound"))?;
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        log::info!("operations listener (/healthz, /readyz, /metrics) on http://{bound}");
        Ok(OpsListener {
            addr: bound,
            server: handle,
        })
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

/// `SELECT 1` within DB_PROBE_TIMEOUT.
async fn probe_database(state: &State, pool: &Pool) -> Result<(), String> {
    let _one = state.db_probe.lock().await;
    let probe = db::run(pool, |conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(DbError::from)
    });
    match tokio::time::timeout(DB_PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {DB_PROBE_TIMEOUT:?}")),
    }
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    let mut checks = serde_json::Map::new();
    let mut not_ready = Vec::new();
    if let Some(pool) = &state.readiness.pool {
        match probe_database(&state, pool).await {
            Ok(()) => {
                checks.insert("database".into(), json!("ok"));
            }
            Err(e) => {
                checks.insert("database".into(), json!(format!("unreachable: {e}")));
                not_ready.push("database");
            }
        }
    }
    let consumers = state.readiness.consumers.snapshot();
    let verdict = |problems: Option<_>, name: &'static str, not_ready: &mut Vec<&str>| -> Value {
        match problems {
            None => json!("ok"),
            Some(bad) => {
                not_ready.push(name);
                json!(bad)
            }
        }
    };
    let broker = verdict(broker_problems(&consumers), "broker", &mut not_ready);
    checks.insert("broker".into(), broker);
    let attached = if consumers.is_empty() {
        not_ready.push("consumers");
        json!("none started yet")
    } else {
        verdict(consumer_problems(&consumers), "consumers", &mut not_ready)
    };
    checks.insert("consumers".into(), attached);
    let body = json!({
        "status": if not_ready.is_empty() { "ready" } else { "not_ready" },
        "not_ready": not_ready,
        "checks": checks,
    });
    if not_ready.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
