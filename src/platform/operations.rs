//! The operations listener: what a monitoring system asks a process, on an address of its own
//! (`CAMPUSPAY_OPS_ADDR`), apart from the public payment platform. Every `campuspay run`
//! process serves it, stage workers without the platform included. `GET /metrics` is this
//! process's Prometheus text; the pipeline queues' depths come from the management API at most
//! once per `BACKLOG_MAX_AGE`, however often Prometheus scrapes.

use crate::admin::management::Management;
use crate::admin::queues;
use crate::config::Config;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How stale the queue depths in `/metrics` may be.
const BACKLOG_MAX_AGE: Duration = Duration::from_secs(15);

struct State {
    config: Config,
    backlog: Mutex<Option<(Instant, crate::metrics::Backlog)>>,
}

/// A running operations listener.
pub struct OpsListener {
    pub addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
}

impl OpsListener {
    /// Binds `addr` (port 0: a free one) and serves until `stop`. Runs in the current actix
    /// system.
    pub fn start(config: &Config, addr: &str) -> std::io::Result<OpsListener> {
        let state = web::Data::new(State {
            config: config.clone(),
            backlog: Mutex::new(None),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/metrics", web::get().to(metrics))
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
        log::info!("operations listener (metrics) on http://{bound}");
        Ok(OpsListener {
            addr: bound,
            server: handle,
        })
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

async fn backlog(state: &State) -> crate::metrics::Backlog {
    if let Some((at, b)) = state
        .backlog
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        if at.elapsed() < BACKLOG_MAX_AGE {
            return b.clone();
        }
    }
    // Best effort: a scrape still answers when the management API does not.
    let fresh = match (
        Management::new(&state.config.management_url),
        queues::vhost_of(&state.config.amqp_url),
    ) {
        (Ok(m), Ok(vhost)) => {
            match queues::queue_overview(&m, &vhost, false, state.config.settlement_shards).await {
                Ok(o) => o
                    .pipeline
                    .iter()
                    .map(|q| {
                        let n = |v: Option<u64>| v.map(|x| x as i64).unwrap_or(0);
                        (q.name.clone(), n(q.ready), n(q.unacked), n(q.consumers))
                    })
                    .collect(),
                Err(e) => {
                    log::warn!("metrics: no queue backlog: {e}");
                    Vec::new()
                }
            }
        }
        (Err(e), _) => {
            log::warn!("metrics: no queue backlog: {e}");
            Vec::new()
        }
        (_, Err(e)) => {
            log::warn!("metrics: no queue backlog: {e}");
            Vec::new()
        }
    };
    *state.backlog.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((Instant::now(), fresh.clone()));
    fresh
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let backlog = backlog(&state).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(&backlog))
}
