//! The consumer loop that feeds a stage: take what has arrived (natural batching; on the request
//! queue, a short adaptive linger when requests come often enough to gather a batch by waiting
//! — `Linger`), hand the batch to the stage, publish its output with confirms, and only then
//! ack.
//! Reconnects with back-off when the connection or channel dies; unacked deliveries are then
//! redelivered by the broker and absorbed by the stages' idempotency.

use super::connection::{close_within, connect, Backoff};
use super::publisher::{Outgoing, Publisher};
use super::topology::DEAD;
use super::BrokerError;
use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use tokio::sync::watch;

/// A delivery as a stage sees it: no lapin types.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub exchange: String,
    pub routing_key: String,
    /// The `authorization` header, when it is a string.
    pub authorization: Option<String>,
    /// The `user-id` property: RabbitMQ refuses a publish whose user-id is not the user the
    /// connection logged in as, so when present it names who published.
    pub user_id: Option<String>,
    pub body: Vec<u8>,
    pub redelivered: bool,
    /// The string headers named `x-…` (tracing: `x-request-id`, `x-received-at`).
    pub headers: Vec<(String, String)>,
}

/// What to do with one input delivery once the stage's output is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Publish the original body to `pay.dead` with the reason in a header, then ack.
    DeadLetter {
        reason: String,
    },
}

#[derive(Debug, Default)]
pub struct HandlerOutput {
    pub publish: Vec<Outgoing>,
    /// One per input, in input order.
    pub dispositions: Vec<Disposition>,
}

/// A batch could not be handled. `transient`: worth retrying as it is (the database or broker
/// is restarting); otherwise something in the batch itself fails (a poison message), and the
/// consumer isolates it: each delivery is retried alone, and the ones that still fail are handed
/// back to the broker, whose delivery limit dead-letters them.
#[derive(Debug, Clone)]
pub struct Retry {
    pub why: String,
    pub transient: bool,
}

pub type Handler =
    Box<dyn Fn(Vec<Incoming>) -> LocalBoxFuture<'static, Result<HandlerOutput, Retry>>>;

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub amqp_url: String,
    pub queue: String,
    pub stage: &'static str,
    pub prefetch: u16,
    pub confirm_timeout: Duration,
    /// Wait this long before registering (zero: at once). A settlement shard's consumers are
    /// single-active in registration order, so a process that registers late is its standby.
    pub standby: Duration,
    /// Where this loop reports its state (`/readyz`).
    pub health: crate::health::ConsumerProbe,
    /// Adaptive linger (zero: never). When a batch starts small while messages have been
    /// arriving often enough that another is expected within this window, wait up to this long
    /// for more before handling it: at a few hundred payments a second every stage would
    /// otherwise pay its fixed cost (a database round trip per statement, a commit, a confirmed
    /// publish) per payment. At a trickle it never waits; under load the queue holds a batch
    /// already and it does not wait either.
    pub linger: Duration,
}

/// Arrival rate of a queue's messages, as the consumer saw it (an exponentially weighted
/// average over batches), and whether lingering for more is worth it.
#[derive(Debug)]
pub struct Linger {
    window: Duration,
    last_batch: Option<std::time::Instant>,
    /// Messages per second.
    rate: f64,
}

impl Linger {
    pub fn new(window: Duration) -> Linger {
        Linger {
            window,
            last_batch: None,
            rate: 0.0,
        }
    }

    /// Records a batch of `n` messages that started at `at`.
    pub fn record(&mut self, at: std::time::Instant, n: usize) {
        if let Some(last) = self.last_batch {
            let secs = at.duration_since(last).as_secs_f64().max(1e-4);
            let now = n as f64 / secs;
            self.rate = 0.8 * self.rate + 0.2 * now;
        }
        self.last_batch = Some(at);
    }

    /// How long to wait for more after a batch of `have` has been taken (zero: do not). Waits
    /// only when at least one more message is expected within the window and the batch holds
    /// fewer than the window is expected to bring: under load the batch is full already.
    pub fn wait_for(&self, have: usize) -> Duration {
        if self.window.is_zero() {
            return Duration::ZERO;
        }
        let expected = self.rate * self.window.as_secs_f64();
        if expected >= 1.0 && (have as f64) < expected {
            self.window
        } else {
            Duration::ZERO
        }
    }
}

/// In-place retries of a failing batch before it is handed back to the broker (each hand-back
/// counts toward the queue's delivery limit, so transient outages are absorbed here).
const IN_PLACE_RETRIES: u32 = 8;

/// How long opening the channel, the publisher and the consumer on a fresh connection may take
/// (four round trips, milliseconds when the broker is well).
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How often an idle consumer looks at its connection itself. The consumer stream normally ends
/// when the connection does; once, after the broker deleted the vhost, one of a worker's eight
/// consumers went on waiting on a connection that was already closed, and would have waited
/// forever.
const CONNECTION_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs until `shutdown` becomes true. Never returns an error: it reconnects instead.
pub async fn run(spec: ConsumerSpec, handler: Handler, mut shutdown: watch::Receiver<bool>) {
    use crate::health::ConsumerState;
    if !spec.standby.is_zero() {
        spec.health.report(ConsumerState::StandingBy);
        log::info!(
            "{}: standing by on {} (registering in {:?})",
            spec.stage,
            spec.queue,
            spec.standby
        );
        tokio::select! {
            _ = tokio::time::sleep(spec.standby) => {}
            _ = shutdown.changed() => {
                spec.health.report(ConsumerState::Stopped);
                return;
            }
        }
        spec.health.report(ConsumerState::Connecting);
    }
    let mut backoff = Backoff::new();
    loop {
        if *shutdown.borrow() {
            spec.health.report(ConsumerState::Stopped);
            return;
        }
        match session(&spec, &handler, &mut shutdown, &mut backoff).await {
            Ok(()) => {
                spec.health.report(ConsumerState::Stopped);
                log::info!("{} consumer on {} stopped", spec.stage, spec.queue);
                return;
            }
            Err(e) => {
                spec.health.report(ConsumerState::Connecting);
                let delay = backoff.next_delay();
                log::warn!(
                    "{} consumer on {}: {e}; reconnecting in {delay:?}",
                    spec.stage,
                    spec.queue
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// How many times `campuspay admin dead replay` has re-published a message.
pub const REPLAYED_HEADER: &str = "x-campuspay-replayed";

/// The replay count of a delivery (a string or an integer header), if it has one.
pub fn replayed_count(d: &Delivery) -> Option<u32> {
    match d
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(REPLAYED_HEADER)?
    {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        _ => None,
    }
}

fn incoming(d: &Delivery) -> Incoming {
    let authorization = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("authorization"))
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        });
    let headers = d
        .properties
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("x-"))
                .filter_map(|(k, v)| match v {
                    AMQPValue::LongString(s) => Some((
                        k.to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    )),
                    AMQPValue::ShortString(s) => Some((k.to_string(), s.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Incoming {
        headers,
        exchange: d.exchange.to_string(),
        routing_key: d.routing_key.to_string(),
        authorization,
        user_id: d.properties.user_id().as_ref().map(|u| u.to_string()),
        body: d.data.clone(),
        redelivered: d.redelivered,
    }
}

async fn session(
    spec: &ConsumerSpec,
    handler: &Handler,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<(), BrokerError> {
    let conn = connect(
        &spec.amqp_url,
        // The pid tells an operator (and the scale-out test) which process holds a shard.
        &format!(
            "campuspay {} {} pid {}",
            spec.stage,
            spec.queue,
            std::process::id()
        ),
    )
    .await?;
    spec.health.report(crate::health::ConsumerState::Connected);
    let tag = format!("{}-{}", spec.stage, uuid::Uuid::new_v4().simple());
    // Bounded: a connection the broker drops between two of these requests (its vhost being
    // deleted, say) may leave lapin waiting for a reply that never comes.
    let setup = async {
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(spec.prefetch, BasicQosOptions::default())
            .await?;
        let publisher = Publisher::new(&conn, spec.confirm_timeout).await?;
        let consumer = channel
            .basic_consume(
                spec.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, BrokerError>((channel, publisher, consumer))
    };
    let (channel, mut publisher, mut consumer) =
        match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
            Ok(ready) => ready?,
            Err(_) => {
                close_within(&conn, None, "no answer while setting up").await;
                return Err(BrokerError::SetupTimeout(SETUP_TIMEOUT));
            }
        };
    spec.health.report(crate::health::ConsumerState::Consuming);
    log::info!(
        "{} consuming {} (prefetch {})",
        spec.stage,
        spec.queue,
        spec.prefetch
    );
    backoff.reset();
    let mut linger = Linger::new(spec.linger);
    let mut check = tokio::time::interval(CONNECTION_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = check.tick() => {
                if conn.status().connected() && channel.status().connected() {
                    continue;
                }
                return Err(BrokerError::ConsumerClosed);
            }
            _ = shutdown.changed() => {
                // Stop taking new work; everything taken so far has been settled.
                close_within(&conn, Some((&channel, tag.as_str())), "shutdown").await;
                return Ok(());
            }
        };
        let mut batch = match first {
            Some(Ok(d)) => vec![d],
            Some(Err(e)) => return Err(e.into()),
            None => return Err(BrokerError::ConsumerClosed),
        };
        let started = std::time::Instant::now();
        // Natural batching: whatever is already buffered, up to the prefetch.
        while batch.len() < usize::from(spec.prefetch) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(d),
                Some(Some(Err(e))) => return Err(e.into()),
                Some(None) | None => break,
            }
        }
        // Then, if it pays, a short wait for more (never past the prefetch).
        let wait = linger.wait_for(batch.len());
        if !wait.is_zero() {
            let deadline = tokio::time::Instant::from_std(started) + wait;
            while batch.len() < usize::from(spec.prefetch) {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Some(Ok(d))) => batch.push(d),
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) => return Err(BrokerError::ConsumerClosed),
                    Err(_elapsed) => break,
                }
            }
        }
        linger.record(started, batch.len());
        settle_batch(spec, handler, &conn, &mut publisher, batch).await?;
    }
}

/// Why a batch could not be settled.
enum Failure {
    /// The channel or connection is gone: end the session and reconnect (the broker redelivers
    /// everything unacked).
    Broken(BrokerError),
    /// The batch failed; the message says why.
    Failed(String),
}

/// Runs the handler and publishes its output, retrying transient failures in place (bounded,
/// with back-off). Returns the last failure when it gives up or the failure is not transient.
async fn handle_with_retries(
    spec: &ConsumerSpec,
    handler: &Handler,
    conn: &lapin::Connection,
    publisher: &mut Publisher,
    inputs: &[Incoming],
) -> Result<HandlerOutput, Failure> {
    let mut backoff = Backoff::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (failure, transient) = match handler(inputs.to_vec()).await {
            Ok(out) => match publisher.publish_all(&out.publish).await {
                Ok(()) => return Ok(out),
                // A dead channel will not come back: reconnect rather than retry on it.
                Err(e @ BrokerError::Amqp(_)) if !publisher.channel().status().connected() => {
                    return Err(Failure::Broken(e))
                }
                // A nack or a missing confirm: in one run of the cluster tests, after a node
                // died and its quorum queues elected new leaders elsewhere, RabbitMQ 3.10 went
                // on nacking a long-lived channel's publishes for a minute while the pipeline's
                // other channels published fine. A fresh channel costs one round trip and
                // starts without whatever state the old one kept; retry on it.
                Err(e @ (BrokerError::Nacked { .. } | BrokerError::ConfirmTimeout(_))) => {
                    match Publisher::new(conn, spec.confirm_timeout).await {
                        Ok(fresh) => {
                            let stale = std::mem::replace(publisher, fresh);
                            // Bounded: a channel whose publishes go unconfirmed may not
                            // confirm its close either.
                            let closing = stale.channel().close(200, "renewed".into());
                            let _ = tokio::time::timeout(spec.confirm_timeout, closing).await;
                        }
                        Err(broken) => return Err(Failure::Broken(broken)),
                    }
                    (e.to_string(), true)
                }
                // The broker refusing is about the broker, not the batch.
                Err(e) => (e.to_string(), true),
            },
            Err(Retry { why, transient }) => (why, transient),
        };
        crate::metrics::batch_retried(spec.stage);
        if !transient || attempt > IN_PLACE_RETRIES {
            return Err(Failure::Failed(failure));
        }
        let delay = backoff.next_delay();
        log::warn!(
            "{}: batch of {} failed ({failure}); retry in {delay:?}",
            spec.stage,
            inputs.len()
        );
        tokio::time::sleep(delay).await;
    }
}

/// Handles one batch to the end: every delivery is acked, dead-lettered or handed back.
async fn settle_batch(
    spec: &ConsumerSpec,
    handler: &Handler,
    conn: &lapin::Connection,
    publisher: &mut Publisher,
    batch: Vec<Delivery>,
) -> Result<(), BrokerError> {
    let started = std::time::Instant::now();
    let inputs: Vec<Incoming> = batch.iter().map(incoming).collect();
    let output = match handle_with_retries(spec, handler, conn, publisher, &inputs).await {
        Ok(out) => out,
        Err(Failure::Broken(e)) => return Err(e),
        Err(Failure::Failed(failure)) if batch.len() > 1 => {
            // Something in the batch fails whatever we do: settle each delivery on its own, so
            // one poison message cannot hold back the others.
            log::warn!(
                "{}: batch of {} keeps failing ({failure}); isolating its messages",
                spec.stage,
                batch.len()
            );
            for d in batch {
                Box::pin(settle_batch(spec, handler, conn, publisher, vec![d])).await?;
            }
            return Ok(());
        }
        Err(Failure::Failed(failure)) => {
            log::error!(
                "{}: a message from {} keeps failing ({failure}); handing it back to the broker \
                 (dead-lettered after {} deliveries)",
                spec.stage,
                inputs.first().map(|i| i.routing_key.as_str()).unwrap_or(""),
                super::topology::DELIVERY_LIMIT
            );
            for d in &batch {
                d.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await?;
            }
            return Ok(());
        }
    };
    debug_assert_eq!(output.dispositions.len(), batch.len());
    for (i, d) in batch.iter().enumerate() {
        match output.dispositions.get(i).unwrap_or(&Disposition::Ack) {
            Disposition::Ack => {}
            Disposition::DeadLetter { reason } => {
                log::warn!(
                    "{}: dead-lettering a message from {} ({reason})",
                    spec.stage,
                    inputs[i].routing_key
                );
                let mut msg = Outgoing {
                    exchange: DEAD.into(),
                    routing_key: spec.stage.into(),
                    body: inputs[i].body.clone(),
                    content_type: "application/octet-stream",
                    headers: vec![],
                }
                .with_header("x-campuspay-stage", spec.stage)
                .with_header("x-campuspay-reason", reason)
                .with_header("x-campuspay-queue", &spec.queue)
                .with_header("x-original-exchange", &inputs[i].exchange)
                .with_header("x-original-routing-key", &inputs[i].routing_key)
                // The broker stamps nothing on enqueue (3.10), so `admin dead list` could not
                // tell the age of a dead letter without this.
                .with_header(
                    "x-campuspay-dead-lettered-at",
                    &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                );
                // A replayed dead letter that fails again keeps its replay count, so the
                // operator sees it is not its first failure (`admin dead replay`).
                if let Some(n) = replayed_count(d) {
                    msg = msg.with_header(REPLAYED_HEADER, &n.to_string());
                }
                publisher.publish(msg).await?;
            }
        }
    }
    // One ack for the whole batch: this channel's deliveries are settled strictly batch after
    // batch, so everything up to the last tag of this batch is ours to ack.
    if let Some(last) = batch.last() {
        last.acker.ack(BasicAckOptions { multiple: true }).await?;
    }
    let dead = output
        .dispositions
        .iter()
        .filter(|d| matches!(d, Disposition::DeadLetter { .. }))
        .count();
    crate::metrics::batch_done(
        spec.stage,
        batch.len(),
        dead,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Linger;
    use std::time::{Duration, Instant};

    /// Batches of `n` every `gap`, as the consumer records them.
    fn fed(window_ms: u64, gap: Duration, n: usize, batches: u32) -> Linger {
        let mut l = Linger::new(Duration::from_millis(window_ms));
        let start = Instant::now();
        for i in 0..batches {
            l.record(start + gap * i, n);
        }
        l
    }

    #[test]
    fn lingers_only_when_more_is_expected_within_the_window() {
        // 200 requests a second, one at a time: a 10 ms window expects two more.
        let busy = fed(10, Duration::from_millis(5), 1, 50);
        assert_eq!(busy.wait_for(1), Duration::from_millis(10));
        // A batch as large as the window would bring is not held back.
        assert_eq!(busy.wait_for(2), Duration::ZERO);
        // A trickle (a payment every second) never waits.
        let quiet = fed(10, Duration::from_secs(1), 1, 50);
        assert_eq!(quiet.wait_for(1), Duration::ZERO);
        // Under load the queue holds big batches already.
        let loaded = fed(10, Duration::from_millis(100), 300, 50);
        assert_eq!(loaded.wait_for(300), Duration::ZERO);
        // Off, and before anything was seen.
        assert_eq!(
            fed(0, Duration::from_millis(5), 1, 50).wait_for(1),
            Duration::ZERO
        );
        assert_eq!(
            Linger::new(Duration::from_millis(10)).wait_for(1),
            Duration::ZERO
        );
    }
}
