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
use std::collections::HashMap;
use std::time::Duration;

/// Unclaimed results kept per subscriber; older ones are dropped from memory (they stay in
/// PostgreSQL and can be re-sent by `query.v1`).
const MAX_BUFFERED: usize = 10_000;

pub struct Subscriber {
    consumer: Consumer,
    buffered: HashMap<RequestId, ResultV1>,
    pub queue: String,
}

impl Subscriber {
    pub async fn open(conn: &Connection, queue: &str) -> Result<Subscriber, SimError> {
        let channel = conn.create_channel().await?;
        provision_result_queue(&channel, queue).await?;
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

    /// The next result of any request, raw JSON included.
    pub async fn next_raw(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(ResultV1, Vec<u8>)>, SimError> {
        loop {
            let delivery = match tokio::time::timeout(timeout, self.consumer.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(SimError::Closed),
                Ok(Some(d)) => d?,
            };
            delivery.ack(BasicAckOptions::default()).await?;
            match serde_json::from_slice::<ResultV1>(&delivery.data) {
                Ok(r) => return Ok(Some((r, delivery.data))),
                Err(e) => log::warn!(
                    "ignoring a message on {} that is not result.v1: {e}",
                    self.queue
                ),
            }
        }
    }

    /// Waits for the result of `request_id`.
    pub async fn wait_for(
        &mut self,
        request_id: RequestId,
        timeout: Duration,
    ) -> Result<ResultV1, SimError> {
        if let Some(r) = self.buffered.remove(&request_id) {
            return Ok(r);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_raw(left).await? {
                None => {
                    return Err(SimError::Timeout {
                        request_id: request_id.to_string(),
                        secs: timeout.as_secs(),
                    })
                }
                Some((r, _)) if r.request_id == request_id => return Ok(r),
                Some((r, _)) => {
                    if self.buffered.len() >= MAX_BUFFERED {
                        self.buffered.clear();
                    }
                    self.buffered.insert(r.request_id, r);
                }
            }
        }
    }
}
