//! Server-sent events: each cardholder's results (`event: result`) and requests to confirm a
//! payment (`event: confirmation`), and each till's answers (`result`, `query_status`,
//! `dynamic_qr`), pushed as they are fanned out.
//!
//! One AMQP consumer per platform process reads every `user.*` message from its own exclusive,
//! auto-deleted queue and hands it to the connected phones of that user through bounded
//! broadcast channels (keyed by routing key, `user.<id>`), named by the message's `type`. This
//! path is best effort by design: the durable copies are the transactions in PostgreSQL
//! (`GET /v1/orders/{id}`, `GET /v1/me`). A till's page is fed from the till's own durable
//! queue instead, while it listens (`till_feed`), through the same channels.

use super::auth::Cardholder;
use super::AppState;
use crate::broker::connection::{connect, Backoff};
use crate::broker::topology::RESULTS;
use crate::messages::external::{CONFIRMATION_REQUEST_V1, DYNAMIC_QR_ISSUED_V1, QUERY_STATUS_V1};
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Messages buffered per connected user (or till) before a slow reader starts missing some.
const PER_USER_BUFFER: usize = 64;
const KEEPALIVE: Duration = Duration::from_secs(15);

/// One message for a cardholder's streams: the SSE event name and the JSON, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub event: &'static str,
    pub data: String,
}

impl Pushed {
    /// A `confirmation_request.v1` is an `event: confirmation`, a `query_status.v1` an
    /// `event: query_status`, a `dynamic_qr_issued.v1` an `event: dynamic_qr`; anything else
    /// (`result.v1`) an `event: result`.
    pub fn of(body: &[u8]) -> Pushed {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let kind = serde_json::from_slice::<Head>(body)
            .ok()
            .and_then(|h| h.kind);
        Pushed {
            event: match kind.as_deref() {
                Some(CONFIRMATION_REQUEST_V1) => "confirmation",
                Some(QUERY_STATUS_V1) => "query_status",
                Some(DYNAMIC_QR_ISSUED_V1) => "dynamic_qr",
                _ => "result",
            },
            data: String::from_utf8_lossy(body).into_owned(),
        }
    }

    fn frame(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event, self.data)
    }
}

#[derive(Clone)]
pub struct ResultHub {
    /// By routing key: `user.<id>`, `pos.<merchant>.<terminal>`.
    pub(super) users: Arc<Mutex<HashMap<String, broadcast::Sender<Pushed>>>>,
    /// The tills whose queue a feed is reading now (`till_feed`); changed only with `users`
    /// locked, so a new listener and a feed that ends cannot miss each other.
    pub(super) feeds: Arc<Mutex<std::collections::HashSet<String>>>,
    /// True while the hub's queue is bound and consumed: from then on every fanned-out result
    /// reaches it (a readiness signal for `/readyz` and for tests, instead of a sleep).
    ready: Arc<watch::Sender<bool>>,
}

impl Default for ResultHub {
    fn default() -> ResultHub {
        ResultHub {
            users: Arc::default(),
            feeds: Arc::default(),
            ready: Arc::new(watch::channel(false).0),
        }
    }
}

impl ResultHub {
    /// Whether the hub is consuming results right now.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the hub consumes results (at once if it does already).
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot see it closed.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The messages routed to `key` from now on (`user.<id>`, `pos.<merchant>.<terminal>`).
    pub fn subscribe(&self, key: &str) -> broadcast::Receiver<Pushed> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(key.to_owned())
            .or_insert_with(|| broadcast::channel(PER_USER_BUFFER).0)
            .subscribe()
    }

    /// Hands `body` to the listeners of `key`; whether anyone took it.
    pub(super) fn dispatch(&self, key: &str, body: Pushed) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(key) {
            if tx.send(body).is_ok() {
                return true;
            }
            // Nobody listens any more.
            users.remove(key);
        }
        false
    }

    /// Consumes `user.*` results until `shutdown`, reconnecting with back-off.
    pub async fn run(self, amqp_url: String, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        while !*shutdown.borrow() {
            let result = self.session(&amqp_url, &mut shutdown, &mut backoff).await;
            self.ready.send_replace(false);
            if let Err(e) = result {
                let delay = backoff.next_delay();
                log::warn!("result hub: {e}; reconnecting in {delay:?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    async fn session(
        &self,
        url: &str,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), crate::broker::BrokerError> {
        let conn = connect(url, "campuspay platform events").await?;
        let channel = conn.create_channel().await?;
        let mut args = FieldTable::default();
        // Bounded both ways: old results expire, and a stuck hub refuses rather than grows.
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(60_000));
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(100_000));
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                RESULTS.into(),
                "user.*".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        backoff.reset();
        self.ready.send_replace(true);
        loop {
            tokio::select! {
                d = consumer.next() => match d {
                    Some(Ok(d)) => {
                        self.dispatch(d.routing_key.as_str(), Pushed::of(&d.data));
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(crate::broker::BrokerError::ConsumerClosed),
                },
                _ = shutdown.changed() => {
                    crate::broker::connection::close_within(&conn, None, "shutdown").await;
                    return Ok(());
                }
            }
        }
    }
}

pub async fn events(who: Cardholder, state: web::Data<AppState>) -> HttpResponse {
    let rx = state.hub.subscribe(&format!("user.{}", who.0));
    stream(rx, state.stopping.clone(), "GET /v1/me")
}

/// An SSE response of `rx` until the platform stops; `catch_up` names where a reader that
/// fell behind finds what it missed.
pub fn stream(
    rx: broadcast::Receiver<Pushed>,
    stopping: watch::Receiver<bool>,
    catch_up: &'static str,
) -> HttpResponse {
    let stream = futures_util::stream::unfold(
        (rx, stopping, true),
        move |(mut rx, mut stopping, first)| async move {
            if first {
                return Some((
                    Ok::<_, actix_web::Error>(Bytes::from_static(b": connected\n\n")),
                    (rx, stopping, false),
                ));
            }
            if *stopping.borrow() {
                return None;
            }
            let next = tokio::select! {
                r = tokio::time::timeout(KEEPALIVE, rx.recv()) => r,
                // The platform stops: end the stream (the browser reconnects elsewhere or later).
                _ = stopping.changed() => return None,
            };
            let chunk = match next {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(pushed)) => Bytes::from(pushed.frame()),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => Bytes::from(format!(
                    ": {n} results skipped (slow reader); see {catch_up}\n\n"
                )),
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            };
            Some((Ok(chunk), (rx, stopping, false)))
        },
    );
    HttpResponse::Ok()
        .insert_header(("content-type", "text/event-stream"))
        .insert_header(("cache-control", "no-cache"))
        .streaming(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_requests_and_results_are_told_apart_by_type() {
        let c = Pushed::of(br#"{"type":"confirmation_request.v1","transaction_id":"x"}"#);
        assert_eq!(c.event, "confirmation");
        assert_eq!(
            c.frame(),
            "event: confirmation\ndata: {\"type\":\"confirmation_request.v1\",\"transaction_id\":\"x\"}\n\n"
        );
        assert_eq!(Pushed::of(br#"{"type":"result.v1"}"#).event, "result");
        assert_eq!(
            Pushed::of(br#"{"type":"query_status.v1"}"#).event,
            "query_status"
        );
        assert_eq!(
            Pushed::of(br#"{"type":"dynamic_qr_issued.v1"}"#).event,
            "dynamic_qr"
        );
        assert_eq!(Pushed::of(b"not json").event, "result");
    }
}
