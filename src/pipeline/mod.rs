//! The five stages, each an actix actor fed by lapin consumers (see `broker::consumer`):
//!
//! ```text
//! pay.requests ─▶ qr_validation ─▶ order ─▶ fee ─▶ settlement.<shard> ─▶ fanout ─▶ pay.results
//!                       └──────────────┴───────┴── declined early ──────────▶ fanout
//! ```
//! A stage is stateless between batches; its actor holds only handles (pool, keys). Any number
//! of processes may run any subset of stages as competing consumers.

pub mod confirmation;
pub mod fanout;
pub mod fee;
pub mod order;
pub mod qr_validation;
pub mod settlement;
pub mod trace;

use crate::auth::JwtKeys;
use crate::broker::consumer::{self, ConsumerSpec, Disposition, HandlerOutput, Incoming, Retry};
use crate::broker::topology::{self, StageName, STAGE};
use crate::broker::topology::{settlement_key, Shards};
use crate::broker::{Outgoing, PublisherSlot};
use crate::config::{Config, Secret};
use crate::db::{self, DbError, Pool};
use crate::keys::Keys;
use crate::messages::external::DeadReason;
use crate::messages::internal::{
    DecodeError, EncodeError, PaymentItem, StageBatch, MAX_BATCH_ITEMS,
};
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::watch;
pub use trace::Trace;

/// The errors a stage can meet while handling a batch. Per-message problems (bad input) are not
/// errors: they become declines or dead letters inside the output.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Only where a stage's process publishes by itself (the confirmation sweeper); a stage's
    /// own output is published by its consumer.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
}

impl StageError {
    /// What the consumer does with the batch. Exhaustive on purpose: a new error kind must
    /// decide here whether it is retried.
    pub fn retry(self) -> Retry {
        match self {
            // The database may be restarting, a connection may have been killed, a
            // serialisation conflict may have aborted the transaction: all worth retrying.
            // A permanent database error fails again, and after the in-place retries and the
            // queue's delivery limit the batch is dead-lettered by the broker.
            StageError::Db(e) => Retry {
                transient: e.is_transient(),
                why: e.to_string(),
            },
            // Encoding our own types cannot fail short of a bug; retrying bounds the damage and
            // the delivery limit dead-letters it.
            StageError::Encode(e) => Retry {
                why: e.to_string(),
                transient: false,
            },
            // The broker going away and coming back.
            StageError::Broker(e) => Retry {
                why: e.to_string(),
                transient: true,
            },
        }
    }
}

/// What every stage may need. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub pool: Pool,
    pub jwt: Arc<JwtKeys>,
    pub keys: Keys,
    /// The pipeline's own broker user: requests it published are trusted like the pipeline.
    pub broker_user: String,
    pub max_message_bytes: usize,
    pub dynamic_qr_ttl: std::time::Duration,
    pub campus_offset: chrono::FixedOffset,
    pub reversal_window: crate::domain::refund::ReversalWindow,
    pub settlement_shards: topology::Shards,
    /// How long a payment waits for its cardholder's confirmation.
    pub confirmation_timeout: chrono::Duration,
    /// The campus's payment-code prefix (codes with the legacy one are accepted too).
    pub code_prefix: crate::domain::CodePrefix,
}

impl Deps {
    pub fn new(config: &Config, pool: Pool) -> Deps {
        Deps {
            pool,
            jwt: Arc::new(JwtKeys::new(&config.keys)),
            keys: config.keys.clone(),
            broker_user: config.broker_user.clone(),
            max_message_bytes: config.max_message_bytes,
            dynamic_qr_ttl: config.dynamic_qr_ttl,
            code_prefix: config.code_prefix,
            campus_offset: config.campus_offset,
            reversal_window: config.reversal_window,
            settlement_shards: config.settlement_shards,
            // The setting is at most 600 s, well within chrono's range.
            confirmation_timeout: chrono::Duration::from_std(config.confirmation_timeout)
                .unwrap_or(chrono::Duration::seconds(60)),
        }
    }
}

pub type StageFuture = LocalBoxFuture<'static, Result<HandlerOutput, StageError>>;

/// One pipeline stage: turns a batch of deliveries into messages to publish and a disposition
/// per delivery.
pub trait Stage: 'static {
    const NAME: StageName;
    fn handle(&self, batch: Vec<Incoming>) -> StageFuture;
}

/// The actor that owns a stage. Its mailbox is small because each consumer waits for its batch
/// to finish before taking the next: the bound is never reached in normal operation.
pub struct StageActor<S: Stage> {
    stage: Rc<S>,
}

impl<S: Stage> Actor for StageActor<S> {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16);
    }
}

pub struct ProcessBatch(pub Vec<Incoming>);

impl Message for ProcessBatch {
    type Result = Result<HandlerOutput, StageError>;
}

impl<S: Stage> Handler<ProcessBatch> for StageActor<S> {
    type Result = ResponseFuture<Result<HandlerOutput, StageError>>;
    fn handle(&mut self, msg: ProcessBatch, _: &mut Context<Self>) -> Self::Result {
        self.stage.handle(msg.0)
    }
}

/// Starts a stage's actor and one consumer per queue of the stage. Must run inside an actix
/// system. The returned handles finish after `shutdown` turns true and in-flight work is done.
pub fn start_stage<S: Stage>(
    stage: S,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
    consumers: &crate::health::Consumers,
) -> Vec<tokio::task::JoinHandle<()>> {
    let addr = StageActor {
        stage: Rc::new(stage),
    }
    .start();
    S::NAME
        .queues(config.settlement_shards)
        .into_iter()
        .enumerate()
        .map(|(index, queue)| {
            // Settlement queues are listed in shard order.
            let standby = match &config.preferred_shards {
                Some(preferred)
                    if S::NAME == StageName::Settlement
                        && !preferred.iter().any(|&s| s as usize == index) =>
                {
                    config.standby_delay
                }
                _ => std::time::Duration::ZERO,
            };
            let spec = ConsumerSpec {
                amqp_url: config.amqp_url.clone(),
                queue: queue.clone(),
                stage: S::NAME.as_str(),
                prefetch: config.prefetch,
                confirm_timeout: config.confirm_timeout,
                standby,
                health: consumers.probe(&queue),
                // Only the request queue carries one message per payment; the stages behind
                // it receive whole batches, which the linger there has gathered already.
                linger: if S::NAME == StageName::QrValidation {
                    config.linger
                } else {
                    std::time::Duration::ZERO
                },
            };
            let addr = addr.clone();
            let handler: consumer::Handler = Box::new(move |batch| {
                let addr = addr.clone();
                Box::pin(async move {
                    match addr.send(ProcessBatch(batch)).await {
                        Ok(Ok(out)) => Ok(out),
                        Ok(Err(e)) => Err(e.retry()),
                        Err(mailbox) => Err(Retry {
                            why: format!("stage actor: {mailbox}"),
                            transient: true,
                        }),
                    }
                })
            });
            actix_rt::spawn(consumer::run(spec, handler, shutdown.clone()))
        })
        .collect()
}

/// How long a graceful shutdown waits for in-flight batches. A batch takes milliseconds; this
/// is for one stuck on an unanswering broker or database, and leaves room for the HTTP server's
/// own drain within the 60 s the deploy units give a stop (`TimeoutStopSec`).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// A running set of stages.
pub struct Pipeline {
    shutdown: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    consumers: crate::health::Consumers,
}

impl Pipeline {
    /// Starts the chosen stages in the current actix system.
    pub fn start(config: &Config, pool: Pool, stages: &[StageName]) -> Pipeline {
        Pipeline::start_reporting(config, pool, stages, crate::health::Consumers::default())
    }

    /// `start`, its consumers reporting their states to `consumers` (`/readyz`).
    pub fn start_reporting(
        config: &Config,
        pool: Pool,
        stages: &[StageName],
        consumers: crate::health::Consumers,
    ) -> Pipeline {
        let (tx, rx) = watch::channel(false);
        let deps = Deps::new(config, pool);
        let mut handles = Vec::new();
        let c = &consumers;
        if stages.contains(&StageName::Settlement) {
            let publisher = PublisherSlot::new(
                &config.amqp_url,
                "campuspay confirmation sweeper",
                config.confirm_timeout,
            );
            handles.push(actix_rt::spawn(confirmation::run(
                deps.clone(),
                publisher,
                rx.clone(),
            )));
        }
        for stage in stages {
            handles.extend(match stage {
                StageName::QrValidation => start_stage(
                    qr_validation::QrValidation::new(deps.clone()),
                    config,
                    &rx,
                    c,
                ),
                StageName::Order => start_stage(order::Order::new(deps.clone()), config, &rx, c),
                StageName::Fee => start_stage(fee::Fee::new(deps.clone()), config, &rx, c),
                StageName::Settlement => {
                    start_stage(settlement::Settlement::new(deps.clone()), config, &rx, c)
                }
                StageName::Fanout => start_stage(fanout::Fanout::new(deps.clone()), config, &rx, c),
            });
        }
        Pipeline {
            shutdown: tx,
            handles,
            consumers,
        }
    }

    /// The states of this pipeline's consumers (`/readyz`).
    pub fn consumers(&self) -> crate::health::Consumers {
        self.consumers.clone()
    }

    /// Graceful shutdown: stop consuming, finish and ack in-flight batches, close; within
    /// `SHUTDOWN_GRACE`. What has not finished by then is abandoned: its database transaction
    /// rolls back with its connection and the broker hands its unacknowledged deliveries to
    /// another consumer, so nothing is lost or applied twice by not waiting longer.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut abandoned = 0;
        for mut h in self.handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
                abandoned += 1;
            }
        }
        if abandoned > 0 {
            log::warn!(
                "shutdown: {abandoned} consumer(s) had not finished within {SHUTDOWN_GRACE:?}; \
                 their unacknowledged messages go back to their queues"
            );
        }
    }
}

/// Decodes every delivery of an internal stage. One whose MAC does not verify (forged or
/// altered) or that does not decode is dead-lettered with the reason, and nothing of it is
/// acted on.
pub fn decode_batches(
    key: &Secret,
    batch: &[Incoming],
) -> (Vec<PaymentItem>, Vec<Disposition>, Trace) {
    let mut items = Vec::new();
    let mut dispositions = Vec::with_capacity(batch.len());
    for inc in batch {
        match StageBatch::decode(&inc.body, key.expose()) {
            Ok(b) => {
                items.extend(b.items);
                dispositions.push(Disposition::Ack);
            }
            Err(e) => {
                let reason = match e {
                    DecodeError::BadMac => DeadReason::UnauthenticatedStageMessage,
                    DecodeError::Empty
                    | DecodeError::Version(_)
                    | DecodeError::Bincode(_)
                    | DecodeError::TooManyItems(_) => DeadReason::UndecodableStageMessage,
                };
                log::error!(
                    "{} on {} (published by {}): {e}",
                    reason.as_str(),
                    inc.routing_key,
                    inc.user_id.as_deref().unwrap_or("an unnamed user")
                );
                dispositions.push(Disposition::DeadLetter {
                    reason: format!("{}: {e}", reason.as_str()),
                });
            }
        }
    }
    (items, dispositions, Trace::from_headers(batch))
}

/// Encodes items for the stage bound to `routing_key`, in chunks of at most MAX_BATCH_ITEMS,
/// each tagged with the stage MAC.
pub fn to_stage(
    key: &Secret,
    routing_key: &str,
    items: Vec<PaymentItem>,
    trace: &Trace,
) -> Result<Vec<Outgoing>, EncodeError> {
    items
        .chunks(MAX_BATCH_ITEMS)
        .map(|chunk| {
            let body = StageBatch {
                items: chunk.to_vec(),
            }
            .encode(key.expose())?;
            Ok(trace.stamp(Outgoing::binary(STAGE, routing_key.to_owned(), body), chunk))
        })
        .collect()
}

/// Encodes pending items for the settlement shards of their cards (an item without a card is
/// a bug upstream and goes to fan-out, which reports it).
pub fn to_settlement(
    key: &Secret,
    shard_count: Shards,
    items: Vec<PaymentItem>,
    trace: &Trace,
) -> Result<Vec<Outgoing>, EncodeError> {
    let mut shards: Vec<Vec<PaymentItem>> = vec![Vec::new(); shard_count.count() as usize];
    let mut lost = Vec::new();
    for item in items {
        match &item.card {
            Some(card) => shards[shard_count.of(card.card_id) as usize].push(item),
            None => lost.push(item),
        }
    }
    let mut out = Vec::new();
    for (shard, items) in shards.into_iter().enumerate() {
        if !items.is_empty() {
            out.extend(to_stage(key, &settlement_key(shard as u32), items, trace)?);
        }
    }
    if !lost.is_empty() {
        out.extend(to_stage(key, StageName::Fanout.as_str(), lost, trace)?);
    }
    Ok(out)
}

/// Sends decided items to fan-out and pending ones to `next` (a routing key on `pay.stage`).
pub fn route(
    key: &Secret,
    items: Vec<PaymentItem>,
    next: &str,
    trace: &Trace,
) -> Result<Vec<Outgoing>, EncodeError> {
    let (pending, done): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i.is_pending());
    let mut out = Vec::new();
    if !pending.is_empty() {
        out.extend(to_stage(key, next, pending, trace)?);
    }
    if !done.is_empty() {
        out.extend(to_stage(key, StageName::Fanout.as_str(), done, trace)?);
    }
    Ok(out)
}

/// Runs a repository function over the items on the blocking pool.
pub async fn with_db<F>(
    pool: &Pool,
    items: Vec<PaymentItem>,
    f: F,
) -> Result<Vec<PaymentItem>, StageError>
where
    F: FnOnce(&mut diesel::PgConnection, Vec<PaymentItem>) -> Result<Vec<PaymentItem>, DbError>
        + Send
        + 'static,
{
    if items.is_empty() {
        return Ok(items);
    }
    Ok(db::run(pool, move |conn| f(conn, items)).await?)
}
