//! A till page's answers, read from the till's own durable queue `pos.<merchant>.<terminal>`
//! (the one `admin terminal add` made for it), as a hardware till reads it: while at least one
//! of the till's pages listens (`GET /pos/v1/events`), one consumer per till and platform
//! process takes its messages, hands each to the till's pages and only then acks it. When the
//! last page goes, an undelivered message is handed back to the queue and the feed stops, so
//! what arrives meanwhile waits in the queue (a day, bounded) for the next page or for
//! `query.v1`. Reading the queue keeps it from filling (a full result queue refuses fan-out's
//! publishes). A till is either a browser or a hardware till: both reading one queue would
//! share its messages.

use super::events::{Pushed, ResultHub};
use crate::broker::connection::{connect, Backoff};
use crate::broker::topology::provision_result_queue;
use crate::broker::BrokerError;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Messages a feed holds unacked at once.
const PREFETCH: u16 = 32;
/// How often an idle feed checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(5);

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ResultHub {
    /// The messages of till queue `key` from now on (and what waited in it); starts the till's
    /// feed unless one runs.
    pub fn subscribe_till(
        &self,
        key: &str,
        amqp_url: &str,
        stopping: watch::Receiver<bool>,
    ) -> broadcast::Receiver<Pushed> {
        let rx = self.subscribe(key);
        // `users` first, then `feeds`: the order `feed_over` takes them in.
        let _users = locked(&self.users);
        if locked(&self.feeds).insert(key.to_owned()) {
            actix_rt::spawn(
                self.clone()
                    .feed(key.to_owned(), amqp_url.to_owned(), stopping),
            );
        }
        rx
    }

    /// Whether nobody listens to `key` any more; if so the feed is over (decided under the
    /// same locks as `subscribe_till`'s check, so a page that subscribes meanwhile starts a new
    /// one).
    fn feed_over(&self, key: &str) -> bool {
        let mut users = locked(&self.users);
        if users.get(key).is_some_and(|tx| tx.receiver_count() > 0) {
            return false;
        }
        users.remove(key);
        locked(&self.feeds).remove(key);
        true
    }

    async fn feed(self, key: String, url: String, mut stopping: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            match self
                .feed_session(&key, &url, &mut stopping, &mut backoff)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    if self.feed_over(&key) {
                        return;
                    }
                    let delay = backoff.next_delay();
                    log::warn!("till feed {key}: {e}; again in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopping.changed() => {
                            locked(&self.feeds).remove(&key);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Reads the queue until nobody listens or the platform stops (`Ok`), or the broker fails.
    async fn feed_session(
        &self,
        key: &str,
        url: &str,
        stopping: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), BrokerError> {
        let conn = connect(url, "campuspay platform till feed").await?;
        // The pipeline's user may declare it (an existing one is left as it is).
        provision_result_queue(&conn, key).await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                key.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        backoff.reset();
        let result = loop {
            tokio::select! {
                d = consumer.next() => match d {
                    Some(Ok(d)) => {
                        if self.dispatch(key, Pushed::of(&d.data)) {
                            d.ack(BasicAckOptions::default()).await?;
                        } else {
                            // Nobody took it: back to the queue, for the next page or a query.
                            d.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
                                .await?;
                            if self.feed_over(key) {
                                break Ok(());
                            }
                        }
                    }
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(BrokerError::ConsumerClosed),
                },
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if self.feed_over(key) {
                        break Ok(());
                    }
                }
                _ = stopping.changed() => {
                    locked(&self.feeds).remove(key);
                    break Ok(());
                }
            }
        };
        let _ = conn.close(200, "till feed done".into()).await;
        result
    }
}
