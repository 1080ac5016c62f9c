//! Subscribing to a result queue (`pos.<m>.<t>` or `user.<u>`): provisions the durable queue,
//! consumes it, and hands out `result.v1` messages, keeping those for other requests aside.

use super::SimError;
use crate::broker::topology::provision_result_queue;
use crate::domain::RequestId;
use crate::messages::external::ResultV1;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Unclaimed results kept per subscriber; older ones are dropped from memory (they stay in
/// PostgreSQL and can be re-sent by `query.v1`).
const MAX_BUFFERED: usize = 10_000;

pub struct Subscriber {
    consumer: Consumer,
    /// Messages that arrived while waiting for another, oldest first per request (a request
    /// sent twice gets two results).
    buffered: HashMap<(String, RequestId), VecDeque<Vec<u8>>>,
    pub queue: String,
}

#[derive(serde::Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    request_id: RequestId,
}

impl Subscriber {
    /// Provisions the queue (declares and binds it: the pipeline's own user may) and consumes
    /// it.
    pub async fn open(conn: &Connection, queue: &str) -> Result<Subscriber, SimError> {
        provision_result_queue(conn, queue).await?;
        let channel = conn.create_channel().await?;
        Self::consume(channel, queue).await
    }

    /// Consumes a queue that exists already, declaring nothing: what a terminal's own broker
    /// user can do (it may read its queue and configure nothing).
    pub async fn attach(conn: &Connection, queue: &str) -> Result<Subscriber, SimError> {
        let channel = conn.create_channel().await?;
        Self::consume(channel, queue).await
    }

    async fn consume(channel: lapin::Channel, queue: &str) -> Result<Subscriber, SimError> {
        channel.basic_qos(200, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Subscriber {
            consumer,
            buffered: HashMap::new(),
            queue: queue.to_owned(),
        })
    }

    /// The next message of any kind, as raw JSON (acked).
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, SimError> {
        let delivery = match tokio::time::timeout(timeout, self.consumer.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(SimError::Closed),
            Ok(Some(d)) => d?,
        };
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(Some(delivery.data))
    }

    /// The next `result.v1` of any request, raw JSON included; other messages are skipped.
    pub async fn next_raw(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(ResultV1, Vec<u8>)>, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(data) = self.next_message(left).await? else {
                return Ok(None);
            };
            match serde_json::from_slice::<ResultV1>(&data) {
                Ok(r) => return Ok(Some((r, data))),
                Err(e) => log::warn!(
                    "skipping a message on {} that is not result.v1: {e}",
                    self.queue
                ),
            }
        }
    }

    /// Waits for the message of type `kind` answering `request_id`, raw.
    pub async fn wait_raw(
        &mut self,
        kind: &str,
        request_id: RequestId,
        timeout: Duration,
    ) -> Result<Vec<u8>, SimError> {
        Ok(self.wait_any(&[kind], request_id, timeout).await?.1)
    }

    /// Waits for whichever of `kinds` answers `request_id` first; returns its type and raw JSON.
    pub async fn wait_any(
        &mut self,
        kinds: &[&str],
        request_id: RequestId,
        timeout: Duration,
    ) -> Result<(String, Vec<u8>), SimError> {
        for k in kinds {
            let key = ((*k).to_owned(), request_id);
            if let Some(raw) = self.buffered.get_mut(&key).and_then(VecDeque::pop_front) {
                if self.buffered.get(&key).is_some_and(VecDeque::is_empty) {
                    self.buffered.remove(&key);
                }
                return Ok((key.0, raw));
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(data) = self.next_message(left).await? else {
                return Err(SimError::Timeout {
                    request_id: request_id.to_string(),
                    secs: timeout.as_secs(),
                });
            };
            match serde_json::from_slice::<Head>(&data) {
                Ok(h) if h.request_id == request_id && kinds.contains(&h.kind.as_str()) => {
                    return Ok((h.kind, data))
                }
                Ok(h) => {
                    if self.buffered.len() >= MAX_BUFFERED {
                        self.buffered.clear();
                    }
                    self.buffered
                        .entry((h.kind, h.request_id))
                        .or_default()
                        .push_back(data);
                }
                Err(e) => log::warn!("skipping an unreadable message on {}: {e}", self.queue),
            }
        }
    }

    /// Waits for the `result.v1` of `request_id`.
    pub async fn wait_for(
        &mut self,
        request_id: RequestId,
        timeout: Duration,
    ) -> Result<ResultV1, SimError> {
        let raw = self
            .wait_raw(crate::messages::external::RESULT_V1, request_id, timeout)
            .await?;
        serde_json::from_slice(&raw).map_err(|e| SimError::Other(format!("bad result.v1: {e}")))
    }
}
