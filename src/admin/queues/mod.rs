//! Operating the queues: `campuspay admin queues`, `admin queue purge`, `admin dead
//! list|show|replay|drop` and `admin topology check`.
//!
//! Reading dead letters never loses them. They are taken from `pay.dead` with manual acks
//! (`basic.get`), and every one that is not replayed or dropped is nacked back with requeue; if
//! the command dies half-way, the broker requeues whatever it still held when the connection
//! closes. A dead letter leaves `pay.dead` only after its replay was confirmed by the broker
//! (persistent, `mandatory`, publisher confirm), or after its drop was recorded and fsync'd in
//! the drop record file. A crash between the two steps leaves the dead letter in place: a
//! replay may then be published twice (the stages are idempotent), a drop recorded twice.
//!
//! Everything here takes the URLs (or a `Management` client) as parameters, so the integration
//! tests drive it against their own vhost; `run` is the command-line front end.

use crate::admin::management::{Management, ManagementError};
use crate::broker::connection::connect_retrying;
use crate::broker::consumer::{replayed_count, REPLAYED_HEADER};
use crate::broker::topology::{self, Arg, StageName, DEAD, DEAD_QUEUE, RESULTS, UNROUTED_QUEUE};
use crate::broker::{BrokerError, Publisher};
use crate::config::Config;
use crate::messages::internal::{self, StageBatch};
use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How many dead letters one command reads by default, and at most. Every one read is held
/// unacked by this process until the command ends, so the ceiling bounds memory and the
/// number of messages invisible to other readers meanwhile.
pub const DEFAULT_DEAD_LIMIT: usize = 100;
pub const MAX_DEAD_LIMIT: usize = 10_000;
/// A stage queue with more ready messages than this, and a deliver rate not above its publish
/// rate, has a backlog that is not draining.
pub const BACKLOG_READY: u64 = 1_000;
/// A result queue this full (percent of its `x-max-length`) will soon refuse results, and
/// fan-out's publishes to it are then nacked.
const RESULT_QUEUE_FULL_PERCENT: u64 = 90;
pub const DEFAULT_DROP_RECORD: &str = "dead-letters-dropped.jsonl";
/// The definitions file as committed, relative to the repository root.
pub const DEFINITIONS_FILE: &str = "rabbitmq/definitions.json";
/// The committed definitions as they were when this binary was built: used when the command
/// does not run from a checkout.
const BUILT_IN_DEFINITIONS: &str = include_str!("../../../rabbitmq/definitions.json");
const CONNECT_ATTEMPTS: u32 = 3;
/// Bodies larger than this are shown truncated by `dead show` (hex doubles them).
const SHOW_MAX_BYTES: usize = 4096;
/// Headers a dead letter's identity must not depend on: quorum queues rewrite
/// `x-delivery-count` every time a message is requeued, which listing does.
const VOLATILE_HEADERS: [&str; 1] = ["x-delivery-count"];

#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP_URL: {0}")]
    BadAmqpUrl(&'static str),
    #[error("refusing to purge {queue}: pass --yes to confirm; nothing was purged")]
    NotConfirmed { queue: String },
    #[error("refusing to purge {queue}: {why}. Pass --force as well if you really mean it; nothing was purged")]
    Protected { queue: String, why: &'static str },
    #[error("no queue {queue:?} in vhost {vhost:?}")]
    NoSuchQueue { queue: String, vhost: String },
    #[error("--limit {0} is out of range 1..={MAX_DEAD_LIMIT}")]
    BadLimit(usize),
    #[error(
        "no dead letter with id {id} among the {examined} read from pay.dead (raise --limit?)"
    )]
    NotFound { id: String, examined: usize },
    #[error("nothing selected: give dead-letter ids, or --all")]
    NothingSelected,
    #[error("unknown stage {0:?}: expected qr_validation, order, fee, settlement or fanout")]
    UnknownStage(String),
    #[error("--reason must say why the dead letters are dropped")]
    NoReason,
    #[error("drop record {}: {source}; nothing was dropped", path.display())]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("definitions {source_name}: {why}")]
    Definitions { source_name: String, why: String },
    #[error("background task: {0}")]
    Task(String),
}

// ---------------------------------------------------------------------------------------------
// Small pure helpers
// ---------------------------------------------------------------------------------------------

/// The vhost an AMQP URL names: its path, percent-decoded (`%2f` is `/`); no path is `/`.
pub fn vhost_of(amqp_url: &str) -> Result<String, QueuesError> {
    let rest = amqp_url
        .strip_prefix("amqp://")
        .or_else(|| amqp_url.strip_prefix("amqps://"))
        .ok_or(QueuesError::BadAmqpUrl(
            "must start with amqp:// or amqps://",
        ))?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
    if path.is_empty() {
        return Ok("/".into());
    }
    percent_decode(path).ok_or(QueuesError::BadAmqpUrl(
        "the vhost is not valid percent-encoded UTF-8",
    ))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The queues of the stages that move money. What sits in them was accepted: QR validation
/// passed, and from `fee` on a transaction row exists and the payment code is spent. Purging
/// them leaves those payments without a result, stuck in `created`.
fn money_moving_queues() -> Vec<String> {
    [StageName::Order, StageName::Fee, StageName::Settlement]
        .into_iter()
        .flat_map(StageName::queues)
        .collect()
}

/// Why a queue must not be purged without `--force`, if it must not.
pub fn purge_protection(queue: &str) -> Option<&'static str> {
    if money_moving_queues().iter().any(|q| q == queue) {
        Some("it feeds a money-moving stage: purging would lose accepted payments (stuck in `created`, no result to the POS or the phone)")
    } else if queue == DEAD_QUEUE {
        Some("dead letters are kept for replay; `campuspay admin dead drop` removes chosen ones and records why")
    } else {
        None
    }
}

fn check_limit(limit: usize) -> Result<usize, QueuesError> {
    if (1..=MAX_DEAD_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(QueuesError::BadLimit(limit))
    }
}

/// "45s", "3m12s", "2h05m", "3d04h".
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ManagementError> + Send + 'static,
) -> Result<T, QueuesError> {
    // ureq blocks: keep it off the thread that drives AMQP.
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueuesError::Task(e.to_string()))?
        .map_err(QueuesError::from)
}

async fn connect(amqp_url: &str, what: &str) -> Result<Connection, QueuesError> {
    Ok(connect_retrying(
        amqp_url,
        &format!("campuspay admin {what}"),
        CONNECT_ATTEMPTS,
    )
    .await?)
}

// ---------------------------------------------------------------------------------------------
// admin queues
// ---------------------------------------------------------------------------------------------

/// One queue as the management API reports it. Counts and rates are `None` until the broker
/// has emitted statistics for the queue (every few seconds) or, for rates, while there is no
/// traffic at all.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueRow {
    pub name: String,
    /// `stage`, `dead`, `unrouted`, `result` or `other`.
    pub role: &'static str,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub state: Option<String>,
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
    pub consumers: Option<u64>,
    /// Messages per second published into the queue.
    pub publish_rate: Option<f64>,
    /// Messages per second delivered (to consumers or `basic.get`).
    pub deliver_rate: Option<f64>,
    /// Messages a quorum queue still holds because their at-least-once dead-lettering to
    /// `pay.dead` is not confirmed yet.
    pub awaiting_dead_letter: Option<u64>,
    pub max_length: Option<u64>,
}

fn rate(v: &Value, stat: &str) -> Option<f64> {
    v.get("message_stats")?
        .get(format!("{stat}_details"))?
        .get("rate")?
        .as_f64()
}

impl QueueRow {
    pub fn from_api(v: &Value) -> QueueRow {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        QueueRow {
            role: role_of(&name),
            kind: v["type"].as_str().map(str::to_owned),
            state: v["state"].as_str().map(str::to_owned),
            ready: n("messages_ready"),
            unacked: n("messages_unacknowledged"),
            consumers: n("consumers"),
            publish_rate: rate(v, "publish"),
            deliver_rate: rate(v, "deliver_get"),
            awaiting_dead_letter: n("messages_dlx"),
            max_length: v["arguments"]["x-max-length"].as_u64(),
            name,
        }
    }
}

fn is_result_queue(name: &str) -> bool {
    name.starts_with("pos.") || name.starts_with("user.")
}

fn role_of(name: &str) -> &'static str {
    if name == DEAD_QUEUE {
        "dead"
    } else if name == UNROUTED_QUEUE {
        "unrouted"
    } else if name.starts_with("campuspay.") {
        "stage"
    } else if is_result_queue(name) {
        "result"
    } else {
        "other"
    }
}

/// The warnings for one queue. The rules:
/// - a stage queue with no consumer: nothing processes it;
/// - a stage queue with more than `BACKLOG_READY` ready messages whose deliver rate is not
///   above its publish rate (a missing rate counts as 0): the backlog is not draining;
/// - any queue not in state `running`;
/// - any quorum queue holding messages for at-least-once dead-lettering (pay.dead refuses them);
/// - `pay.dead` holding dead letters;
/// - a result queue at 90 % of its max length: fan-out's results to it will be refused.
pub fn warnings_for(row: &QueueRow) -> Vec<String> {
    let mut w = Vec::new();
    let name = &row.name;
    if let Some(state) = &row.state {
        if state != "running" {
            w.push(format!("{name} is {state}, not running"));
        }
    }
    if row.role == "stage" {
        if row.consumers == Some(0) {
            w.push(format!(
                "{name} has no consumer: nothing processes it (is `campuspay run` up with this stage?)"
            ));
        }
        let ready = row.ready.unwrap_or(0);
        let publish = row.publish_rate.unwrap_or(0.0);
        let deliver = row.deliver_rate.unwrap_or(0.0);
        if ready > BACKLOG_READY && deliver <= publish {
            w.push(format!(
                "{name} backlog is not draining: {ready} ready, publish {publish:.1}/s, deliver {deliver:.1}/s"
            ));
        }
    }
    if let Some(n) = row.awaiting_dead_letter.filter(|n| *n > 0) {
        w.push(format!(
            "{name} holds {n} messages waiting to be dead-lettered (is pay.dead full or missing?)"
        ));
    }
    if row.role == "dead" {
        let n = row.ready.unwrap_or(0) + row.unacked.unwrap_or(0);
        if n > 0 {
            w.push(format!(
                "{name} holds {n} dead letters: see `campuspay admin dead list`"
            ));
        }
    }
    if row.role == "result" {
        if let (Some(ready), Some(max)) = (row.ready, row.max_length) {
            if max > 0 && ready * 100 >= max * RESULT_QUEUE_FULL_PERCENT {
                w.push(format!(
                    "{name} holds {ready} of at most {max} results: when full, fan-out's results to it are refused"
                ));
            }
        }
    }
    w
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultGroup {
    pub prefix: &'static str,
    pub queues: usize,
    pub ready: u64,
    pub unacked: u64,
    pub with_consumers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueOverview {
    pub vhost: String,
    /// The stage queues, `pay.dead` and `pay.unrouted`, in pipeline order.
    pub pipeline: Vec<QueueRow>,
    /// Queues of the topology that the broker does not have.
    pub missing: Vec<String>,
    /// Terminal (`pos.*`) and cardholder (`user.*`) result queues, summarized.
    pub results: Vec<ResultGroup>,
    /// Every result queue, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_queues: Option<Vec<QueueRow>>,
    pub warnings: Vec<String>,
}

/// Builds the overview from `GET /api/queues/{vhost}`.
pub fn summarize(vhost: &str, api_queues: &[Value], list_results: bool) -> QueueOverview {
    let rows: BTreeMap<String, QueueRow> = api_queues
        .iter()
        .map(QueueRow::from_api)
        .map(|r| (r.name.clone(), r))
        .collect();
    let expected: Vec<String> = topology::topology()
        .queues
        .into_iter()
        .map(|q| q.name)
        .collect();
    let mut pipeline = Vec::new();
    let mut missing = Vec::new();
    let mut warnings = Vec::new();
    for name in &expected {
        match rows.get(name) {
            Some(r) => pipeline.push(r.clone()),
            None => {
                warnings.push(format!(
                    "{name} is missing: declare the topology (`campuspay topology`)"
                ));
                missing.push(name.clone());
            }
        }
    }
    // Stage-like queues that the code does not know (a leftover shard, a typo) still show.
    for r in rows.values() {
        if r.role == "stage" && !expected.contains(&r.name) {
            pipeline.push(r.clone());
        }
    }
    for r in &pipeline {
        warnings.extend(warnings_for(r));
    }
    let mut results = Vec::new();
    let mut listed = Vec::new();
    for prefix in ["pos.", "user."] {
        let mut g = ResultGroup {
            prefix,
            queues: 0,
            ready: 0,
            unacked: 0,
            with_consumers: 0,
        };
        for r in rows.values().filter(|r| r.name.starts_with(prefix)) {
            g.queues += 1;
            g.ready += r.ready.unwrap_or(0);
            g.unacked += r.unacked.unwrap_or(0);
            if r.consumers.unwrap_or(0) > 0 {
                g.with_consumers += 1;
            }
            warnings.extend(warnings_for(r));
            listed.push(r.clone());
        }
        results.push(g);
    }
    QueueOverview {
        vhost: vhost.to_owned(),
        pipeline,
        missing,
        results,
        result_queues: list_results.then_some(listed),
        warnings,
    }
}

/// `campuspay admin queues`: every queue of the pipeline from the management API.
pub async fn queue_overview(
    mgmt: &Management,
    vhost: &str,
    list_results: bool,
) -> Result<QueueOverview, QueuesError> {
    let (m, v) = (mgmt.clone(), vhost.to_owned());
    let queues = blocking(move || m.queues(&v)).await?;
    Ok(summarize(vhost, &queues, list_results))
}

// ---------------------------------------------------------------------------------------------
// admin queue purge
// ---------------------------------------------------------------------------------------------

/// What the operator confirmed on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurgeConfirm {
    /// `--yes`: required for every purge.
    pub yes: bool,
    /// `--force`: required as well for the queues of `purge_protection`.
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub vhost: String,
    pub queue: String,
    /// Ready messages dropped, as counted by the broker (`purge-ok`).
    pub purged: u32,
}

/// Purges the ready messages of a queue (unacked ones stay with their consumer). The broker's
/// AMQP `queue.purge` is used rather than the management API's `DELETE .../contents`, because
/// only its reply says exactly how many messages went (the management statistics lag by
/// seconds).
pub async fn purge(
    amqp_url: &str,
    queue: &str,
    confirm: PurgeConfirm,
) -> Result<Purged, QueuesError> {
    if !confirm.yes {
        return Err(QueuesError::NotConfirmed {
            queue: queue.to_owned(),
        });
    }
    if let Some(why) = purge_protection(queue) {
        if !confirm.force {
            return Err(QueuesError::Protected {
                queue: queue.to_owned(),
                why,
            });
        }
    }
    let vhost = vhost_of(amqp_url)?;
    let conn = connect(amqp_url, "queue purge").await?;
    let result = purge_on(&conn, queue, &vhost).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(Purged {
        purged: result?,
        vhost,
        queue: queue.to_owned(),
    })
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if a.get_id() == 404)
}

async fn purge_on(conn: &Connection, queue: &str, vhost: &str) -> Result<u32, QueuesError> {
    let channel = conn.create_channel().await?;
    // A passive declare tells "no such queue" apart from other failures.
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    if let Err(e) = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        return Err(if is_not_found(&e) {
            QueuesError::NoSuchQueue {
                queue: queue.to_owned(),
                vhost: vhost.to_owned(),
            }
        } else {
            e.into()
        });
    }
    let purged = channel
        .queue_purge(queue.into(), Default::default())
        .await?;
    let _ = channel.close(200, "done".into()).await;
    Ok(purged)
}

// ---------------------------------------------------------------------------------------------
// Dead letters: decoding
// ---------------------------------------------------------------------------------------------

/// One dead letter in `pay.dead`, decoded from its headers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    /// The message's `message_id` if it has one, else a hash of its headers and body.
    pub id: String,
    pub stage: String,
    /// A stage's reason (`not_json`, …) or the broker's (`delivery_limit`, `rejected`, …).
    pub reason: String,
    /// `stage` (it published the dead letter itself), `broker` (`x-death`), or `unknown`.
    pub dead_lettered_by: &'static str,
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub age_secs: Option<i64>,
    /// How many times `dead replay` has re-published it.
    pub replayed: u32,
    pub body_bytes: usize,
}

fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header(h: &FieldTable, key: &str) -> Option<String> {
    h.inner().get(key).and_then(as_text)
}

/// The most recent broker dead-lettering (RabbitMQ puts it first in `x-death`).
fn first_death(h: &FieldTable) -> Option<&FieldTable> {
    match h.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn timestamp(v: &AMQPValue) -> Option<DateTime<Utc>> {
    let secs = match v {
        AMQPValue::Timestamp(t) => i64::try_from(*t).ok()?,
        AMQPValue::LongLongInt(t) => *t,
        _ => return None,
    };
    DateTime::from_timestamp(secs, 0)
}

fn stage_of_queue(queue: &str) -> Option<&'static str> {
    StageName::ALL
        .into_iter()
        .find(|s| s.queues().iter().any(|q| q == queue))
        .map(StageName::as_str)
}

fn hash_value(h: &mut Sha256, v: &AMQPValue) {
    // A canonical, type-tagged encoding: FieldTable is ordered by key, so equal headers hash
    // equally whatever the JSON map implementation of the build.
    match v {
        AMQPValue::FieldTable(t) => {
            h.update(b"T");
            h.update((t.inner().len() as u64).to_be_bytes());
            for (k, v) in t.inner() {
                h.update((k.as_str().len() as u64).to_be_bytes());
                h.update(k.as_str().as_bytes());
                hash_value(h, v);
            }
        }
        AMQPValue::FieldArray(a) => {
            h.update(b"A");
            h.update((a.as_slice().len() as u64).to_be_bytes());
            for v in a.as_slice() {
                hash_value(h, v);
            }
        }
        AMQPValue::LongString(s) => {
            h.update(b"S");
            h.update((s.as_bytes().len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        AMQPValue::ShortString(s) => {
            h.update(b"S");
            h.update((s.as_str().len() as u64).to_be_bytes());
            h.update(s.as_str().as_bytes());
        }
        AMQPValue::ByteArray(b) => {
            h.update(b"B");
            h.update((b.as_slice().len() as u64).to_be_bytes());
            h.update(b.as_slice());
        }
        other => {
            // Scalars: their JSON rendering is unambiguous.
            h.update(b"N");
            let s = amqp_to_json(other).to_string();
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// A short, stable id: the `message_id` property if set, else 12 hex digits of SHA-256 over
/// the headers (without those the broker rewrites on requeue) and the body. Identical dead
/// letters share an id; commands act on every copy of it.
pub fn dead_letter_id(properties: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = properties.message_id().as_ref() {
        if !id.as_str().trim().is_empty() {
            return id.as_str().to_owned();
        }
    }
    let mut h = Sha256::new();
    let mut stable = FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (k, v) in headers.inner() {
            if !VOLATILE_HEADERS.contains(&k.as_str()) {
                stable.insert(k.clone(), v.clone());
            }
        }
    }
    hash_value(&mut h, &AMQPValue::FieldTable(stable));
    h.update(b"body");
    h.update(body);
    hex::encode(&h.finalize()[..6])
}

/// Decodes what `pay.dead` knows about one message. `routing_key` is the key it was
/// dead-lettered with: the stage name, for both kinds of dead letter.
pub fn describe(
    routing_key: &str,
    properties: &BasicProperties,
    body: &[u8],
    now: DateTime<Utc>,
) -> DeadLetter {
    let empty = FieldTable::default();
    let h = properties.headers().as_ref().unwrap_or(&empty);
    let replayed = match h.inner().get(REPLAYED_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(v) => as_text(v).and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        None => 0,
    };
    // `x-death` means the broker dead-lettered it last: a stage's dead letter is a fresh
    // message that never carries one, while a replayed one keeps its old `x-campuspay-*`
    // headers, which are then stale.
    let (by, stage, reason, queue, exchange, key, at) = if let Some(d) = first_death(h) {
        let queue = header(d, "queue");
        let key = match d.inner().get("routing-keys") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().first().and_then(as_text),
            _ => None,
        };
        (
            "broker",
            queue
                .as_deref()
                .and_then(stage_of_queue)
                .map(str::to_owned)
                .unwrap_or_else(|| routing_key.to_owned()),
            header(d, "reason").unwrap_or_else(|| "unknown".into()),
            queue,
            header(d, "exchange"),
            key,
            d.inner().get("time").and_then(timestamp),
        )
    } else if let Some(reason) = header(h, "x-campuspay-reason") {
        (
            "stage",
            header(h, "x-campuspay-stage").unwrap_or_else(|| routing_key.to_owned()),
            reason,
            header(h, "x-campuspay-queue"),
            header(h, "x-original-exchange"),
            header(h, "x-original-routing-key"),
            header(h, "x-campuspay-dead-lettered-at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        )
    } else {
        (
            "unknown",
            routing_key.to_owned(),
            "unknown".into(),
            None,
            None,
            None,
            None,
        )
    };
    let at = at.or_else(|| {
        (*properties.timestamp()).and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0))
    });
    DeadLetter {
        id: dead_letter_id(properties, body),
        stage,
        reason,
        dead_lettered_by: by,
        queue,
        original_exchange: exchange,
        original_routing_key: key,
        age_secs: at.map(|t| (now - t).num_seconds().max(0)),
        dead_lettered_at: at,
        replayed,
        body_bytes: body.len(),
    }
}

/// Header values as JSON, for `dead show`.
pub fn amqp_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!({"value": d.value, "scale": d.scale}),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => json!(t),
            Err(_) => json!({ "hex": hex::encode(s.as_bytes()) }),
        },
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!({ "hex": hex::encode(b.as_slice()) }),
        AMQPValue::Void => Value::Null,
    }
}

fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| {
                // A terminal's token is a credential: never print it.
                let v = if k.as_str().eq_ignore_ascii_case("authorization") {
                    json!("Bearer ***")
                } else {
                    amqp_to_json(v)
                };
                (k.as_str().to_owned(), v)
            })
            .collect(),
    )
}

/// Payment codes are one-time credentials (DESIGN.md §6): mask them wherever they appear.
fn mask_codes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match (k.as_str(), &*v) {
                    ("payment_code", Value::String(s)) => {
                        *v = json!(crate::domain::payment_code::mask(s))
                    }
                    // HMACs of codes are not secrets, but a list of numbers helps nobody.
                    ("code_hash", Value::Array(a)) => {
                        let bytes: Option<Vec<u8>> = a
                            .iter()
                            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect();
                        if let Some(b) = bytes {
                            *v = json!(hex::encode(b));
                        }
                    }
                    _ => mask_codes(v),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_codes),
        _ => {}
    }
}

/// A dead letter's body, decoded as far as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Body {
    Json {
        value: Value,
    },
    StageBatch {
        version: u8,
        items: Value,
    },
    Hex {
        hex: String,
        /// The same bytes as text, when they are UTF-8.
        text: Option<String>,
        truncated: bool,
        note: Option<String>,
    },
}

pub fn decode_body(body: &[u8]) -> Body {
    if let Ok(mut value) = serde_json::from_slice::<Value>(body) {
        mask_codes(&mut value);
        return Body::Json { value };
    }
    let mut note = None;
    if let Some(&version) = body.first() {
        // Internal stage messages start with their format version (1, 2, …): small bytes that
        // no JSON or text starts with.
        if (1..=internal::VERSION).contains(&version) {
            match StageBatch::decode(body) {
                Ok(batch) => {
                    let mut items = serde_json::to_value(&batch.items).unwrap_or(Value::Null);
                    mask_codes(&mut items);
                    return Body::StageBatch { version, items };
                }
                Err(e) => note = Some(format!("looks like a stage batch but {e}")),
            }
        }
    }
    let shown = &body[..body.len().min(SHOW_MAX_BYTES)];
    Body::Hex {
        hex: hex::encode(shown),
        text: std::str::from_utf8(shown).ok().map(str::to_owned),
        truncated: shown.len() < body.len(),
        note,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub letter: DeadLetter,
    pub properties: Value,
    pub headers: Value,
    pub body: Body,
}

fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    if let Some(v) = p.content_type() {
        m.insert("content_type".into(), json!(v.as_str()));
    }
    if let Some(v) = p.message_id() {
        m.insert("message_id".into(), json!(v.as_str()));
    }
    if let Some(v) = p.correlation_id() {
        m.insert("correlation_id".into(), json!(v.as_str()));
    }
    if let Some(v) = p.timestamp() {
        m.insert("timestamp".into(), json!(v));
    }
    if let Some(v) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(v));
    }
    if let Some(v) = p.app_id() {
        m.insert("app_id".into(), json!(v.as_str()));
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Dead letters: taking them from pay.dead without losing them
// ---------------------------------------------------------------------------------------------

struct Held {
    delivery: Delivery,
    letter: DeadLetter,
}

/// Takes up to `limit` dead letters with manual acks. Returns them and whether more were left.
async fn take(channel: &Channel, limit: usize) -> Result<(Vec<Held>, bool), QueuesError> {
    let now = Utc::now();
    let mut held = Vec::new();
    let mut more = false;
    while held.len() < limit {
        let Some(m) = channel
            .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            more = false;
            break;
        };
        more = m.message_count > 0;
        let d = m.delivery;
        let letter = describe(d.routing_key.as_str(), &d.properties, &d.data, now);
        held.push(Held {
            delivery: d,
            letter,
        });
    }
    Ok((held, more))
}

async fn give_back(d: &Delivery) -> Result<(), QueuesError> {
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await?;
    Ok(())
}

/// Runs `work` on a fresh connection and always closes it; closing requeues whatever `work`
/// left unacked, so an error half-way loses nothing.
async fn with_dead<T>(
    amqp_url: &str,
    what: &str,
    limit: usize,
    work: impl AsyncFnOnce(&Connection, Vec<Held>, bool) -> Result<T, QueuesError>,
) -> Result<T, QueuesError> {
    let limit = check_limit(limit)?;
    let conn = connect(amqp_url, what).await?;
    let result = async {
        let channel = conn.create_channel().await?;
        let (held, more) = take(&channel, limit).await?;
        let result = work(&conn, held, more).await;
        // Closing the channel first keeps lapin from logging the connection close as an error.
        let _ = channel.close(200, "done".into()).await;
        result
    }
    .await;
    let _ = conn.close(200, "done".into()).await;
    result
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadListing {
    pub vhost: String,
    pub letters: Vec<DeadLetter>,
    /// True when `pay.dead` held more than the limit.
    pub more: bool,
}

/// `dead list`: the first `limit` dead letters, all given back.
pub async fn dead_list(amqp_url: &str, limit: usize) -> Result<DeadListing, QueuesError> {
    let vhost = vhost_of(amqp_url)?;
    with_dead(amqp_url, "dead list", limit, async |_, held, more| {
        for h in &held {
            give_back(&h.delivery).await?;
        }
        Ok(DeadListing {
            vhost,
            letters: held.into_iter().map(|h| h.letter).collect(),
            more,
        })
    })
    .await
}

/// `dead show`: every copy of the dead letter with this id, decoded, all given back.
pub async fn dead_show(
    amqp_url: &str,
    id: &str,
    limit: usize,
) -> Result<Vec<DeadLetterDetail>, QueuesError> {
    with_dead(amqp_url, "dead show", limit, async |_, held, _| {
        let examined = held.len();
        let mut found = Vec::new();
        for h in held {
            give_back(&h.delivery).await?;
            if h.letter.id == id {
                let d = &h.delivery;
                found.push(DeadLetterDetail {
                    properties: properties_json(&d.properties),
                    headers: d
                        .properties
                        .headers()
                        .as_ref()
                        .map(table_to_json)
                        .unwrap_or_else(|| json!({})),
                    body: decode_body(&d.data),
                    letter: h.letter,
                });
            }
        }
        if found.is_empty() {
            return Err(QueuesError::NotFound {
                id: id.to_owned(),
                examined,
            });
        }
        Ok(found)
    })
    .await
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<String>),
    /// Every one read (up to the limit), or those of one stage.
    All {
        stage: Option<String>,
    },
}

impl Selection {
    fn validate(&self) -> Result<(), QueuesError> {
        match self {
            Selection::Ids(ids) if ids.is_empty() => Err(QueuesError::NothingSelected),
            Selection::All { stage: Some(s) } if StageName::parse(s).is_none() => {
                Err(QueuesError::UnknownStage(s.clone()))
            }
            _ => Ok(()),
        }
    }

    fn selects(&self, l: &DeadLetter) -> bool {
        match self {
            Selection::Ids(ids) => ids.contains(&l.id),
            Selection::All { stage } => stage.as_ref().is_none_or(|s| *s == l.stage),
        }
    }

    fn not_found(&self, held: &[Held]) -> Vec<String> {
        match self {
            Selection::Ids(ids) => {
                let seen: BTreeSet<&str> = held.iter().map(|h| h.letter.id.as_str()).collect();
                let mut missing: Vec<String> = ids
                    .iter()
                    .filter(|i| !seen.contains(i.as_str()))
                    .cloned()
                    .collect();
                missing.dedup();
                missing
            }
            Selection::All { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub id: String,
    pub stage: String,
    pub exchange: String,
    pub routing_key: String,
    /// The new `x-campuspay-replayed` count.
    pub replayed: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotDone {
    pub id: String,
    pub stage: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub vhost: String,
    pub examined: usize,
    pub more: bool,
    pub replayed: Vec<Replayed>,
    /// Selected but still in pay.dead: no known origin, or the publish failed.
    pub failed: Vec<NotDone>,
    /// Ids asked for that were not among those read.
    pub not_found: Vec<String>,
}

impl ReplayReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.not_found.is_empty()
    }
}

/// Where a dead letter came from: the stage's `x-original-*` headers, or for a broker dead
/// letter the first `x-death` entry (classified by `describe`).
fn origin(l: &DeadLetter) -> Result<(String, String), String> {
    match (&l.original_exchange, &l.original_routing_key) {
        (Some(e), _) if e == DEAD => {
            Err("its origin is pay.dead itself; replaying would dead-letter it again".into())
        }
        (Some(e), Some(k)) => Ok((e.clone(), k.clone())),
        _ => Err(
            "unknown origin: neither x-original-exchange/x-original-routing-key nor x-death".into(),
        ),
    }
}

/// The dead letter's properties for re-publishing: everything kept (the dead-letter headers
/// too, so its history stays visible), the broker's delivery counter dropped, and the replay
/// count raised.
fn replay_properties(d: &Delivery, count: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(h) = d.properties.headers() {
        for (k, v) in h.inner() {
            if !VOLATILE_HEADERS.contains(&k.as_str()) && k.as_str() != REPLAYED_HEADER {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers.insert(
        REPLAYED_HEADER.into(),
        AMQPValue::LongString(count.to_string().into()),
    );
    d.properties.clone().with_headers(headers)
}

/// `dead replay`: re-publishes the selected dead letters where they came from, each acked
/// from pay.dead only after its publish is confirmed. Everything else goes back.
pub async fn dead_replay(
    amqp_url: &str,
    selection: &Selection,
    limit: usize,
    confirm_timeout: Duration,
) -> Result<ReplayReport, QueuesError> {
    selection.validate()?;
    let vhost = vhost_of(amqp_url)?;
    with_dead(amqp_url, "dead replay", limit, async |conn, held, more| {
        let publisher = Publisher::new(conn, confirm_timeout).await?;
        let mut report = ReplayReport {
            vhost,
            examined: held.len(),
            more,
            replayed: Vec::new(),
            failed: Vec::new(),
            not_found: selection.not_found(&held),
        };
        for h in held {
            let l = &h.letter;
            if !selection.selects(l) {
                give_back(&h.delivery).await?;
                continue;
            }
            let (exchange, key) = match origin(l) {
                Ok(o) => o,
                Err(why) => {
                    give_back(&h.delivery).await?;
                    report.failed.push(NotDone {
                        id: l.id.clone(),
                        stage: l.stage.clone(),
                        why,
                    });
                    continue;
                }
            };
            let count = replayed_count(&h.delivery).unwrap_or(0).saturating_add(1);
            let props = replay_properties(&h.delivery, count);
            match publisher
                .publish_with_properties(&exchange, &key, &h.delivery.data, props)
                .await
            {
                Ok(()) => {
                    h.delivery.acker.ack(BasicAckOptions::default()).await?;
                    report.replayed.push(Replayed {
                        id: l.id.clone(),
                        stage: l.stage.clone(),
                        exchange,
                        routing_key: key,
                        replayed: count,
                    });
                }
                Err(e) => {
                    give_back(&h.delivery).await?;
                    report.failed.push(NotDone {
                        id: l.id.clone(),
                        stage: l.stage.clone(),
                        why: e.to_string(),
                    });
                }
            }
        }
        let _ = publisher.channel().close(200, "done".into()).await;
        Ok(report)
    })
    .await
}

/// One line of the drop record file (JSON Lines).
#[derive(Debug, Clone, Serialize)]
pub struct DropRecord {
    pub id: String,
    pub vhost: String,
    pub stage: String,
    /// Why it was dead-lettered.
    pub dead_reason: String,
    pub dead_lettered_by: &'static str,
    /// Why the operator dropped it.
    pub drop_reason: String,
    pub queue: Option<String>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub body_bytes: usize,
    /// Identifies the body without keeping it (it may hold a payment code).
    pub body_sha256: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub dropped_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DropReport {
    pub vhost: String,
    pub examined: usize,
    pub record_file: String,
    pub dropped: Vec<DropRecord>,
    pub not_found: Vec<String>,
}

fn append_records(path: &Path, records: &[DropRecord]) -> Result<(), std::io::Error> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    // The record must be on disk before the dead letter goes.
    f.sync_all()
}

/// `dead drop`: removes the dead letters with these ids after appending a record of each to
/// `record` (and fsyncing it). Everything else goes back.
pub async fn dead_drop(
    amqp_url: &str,
    ids: &[String],
    reason: &str,
    record: &Path,
    limit: usize,
) -> Result<DropReport, QueuesError> {
    if ids.is_empty() {
        return Err(QueuesError::NothingSelected);
    }
    if reason.trim().is_empty() {
        return Err(QueuesError::NoReason);
    }
    let vhost = vhost_of(amqp_url)?;
    let selection = Selection::Ids(ids.to_vec());
    with_dead(amqp_url, "dead drop", limit, async |_, held, _| {
        let examined = held.len();
        let not_found = selection.not_found(&held);
        let now = Utc::now();
        let (chosen, rest): (Vec<Held>, Vec<Held>) =
            held.into_iter().partition(|h| selection.selects(&h.letter));
        for h in &rest {
            give_back(&h.delivery).await?;
        }
        let records: Vec<DropRecord> = chosen
            .iter()
            .map(|h| {
                let l = &h.letter;
                DropRecord {
                    id: l.id.clone(),
                    vhost: vhost.clone(),
                    stage: l.stage.clone(),
                    dead_reason: l.reason.clone(),
                    dead_lettered_by: l.dead_lettered_by,
                    drop_reason: reason.to_owned(),
                    queue: l.queue.clone(),
                    original_exchange: l.original_exchange.clone(),
                    original_routing_key: l.original_routing_key.clone(),
                    body_bytes: l.body_bytes,
                    body_sha256: hex::encode(Sha256::digest(&h.delivery.data)),
                    dead_lettered_at: l.dead_lettered_at,
                    dropped_at: now,
                }
            })
            .collect();
        if !records.is_empty() {
            if let Err(source) = append_records(record, &records) {
                for h in &chosen {
                    give_back(&h.delivery).await?;
                }
                return Err(QueuesError::Record {
                    path: record.to_owned(),
                    source,
                });
            }
        }
        for h in &chosen {
            h.delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        Ok(DropReport {
            vhost,
            examined,
            record_file: record.display().to_string(),
            dropped: records,
            not_found,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// admin topology check
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    /// `broker` or the definitions file compared with the code.
    pub source: String,
    /// `missing`, `extra` or `different`.
    pub problem: &'static str,
    /// `exchange`, `queue` or `binding`.
    pub object: &'static str,
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopologyReport {
    pub vhost: String,
    pub definitions_file: String,
    pub ok: bool,
    pub drift: Vec<Drift>,
    /// Not drift, but worth knowing (policies can change queue arguments).
    pub notes: Vec<String>,
}

/// JSON with object keys sorted, whatever the map implementation: for set keys.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let parts: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", json!(k)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[derive(Debug, Default)]
struct Defs {
    exchanges: BTreeMap<String, Value>,
    queues: BTreeMap<String, Value>,
    /// (source, destination type, destination, routing key, canonical arguments)
    bindings: BTreeSet<(String, String, String, String, String)>,
}

fn args_of(v: &Value) -> Value {
    match v.get("arguments") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => json!({}),
    }
}

impl Defs {
    fn parse(v: &Value, source: &str) -> Result<Defs, QueuesError> {
        let list = |key: &str| -> Result<&Vec<Value>, QueuesError> {
            v.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| QueuesError::Definitions {
                    source_name: source.to_owned(),
                    why: format!("no {key} array"),
                })
        };
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let mut d = Defs::default();
        for e in list("exchanges")? {
            d.exchanges.insert(
                s(e, "name"),
                json!({
                    "type": e["type"], "durable": e["durable"], "auto_delete": e["auto_delete"],
                    "internal": e["internal"], "arguments": args_of(e),
                }),
            );
        }
        for q in list("queues")? {
            d.queues.insert(
                s(q, "name"),
                json!({"durable": q["durable"], "auto_delete": q["auto_delete"], "arguments": args_of(q)}),
            );
        }
        for b in list("bindings")? {
            d.bindings.insert((
                s(b, "source"),
                s(b, "destination_type"),
                s(b, "destination"),
                s(b, "routing_key"),
                canonical(&args_of(b)),
            ));
        }
        Ok(d)
    }
}

/// Names this system owns: drift when the code does not declare them.
fn ours(name: &str) -> bool {
    name.starts_with("pay.") || name.starts_with("campuspay.")
}

fn server_named(name: &str) -> bool {
    name.starts_with("amq.gen-")
}

fn differences(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(e), Some(a)) = (expected.as_object(), actual.as_object()) else {
        return out;
    };
    for (k, ev) in e {
        let av = a.get(k).unwrap_or(&Value::Null);
        if k == "arguments" {
            let empty = Map::new();
            let ea = ev.as_object().unwrap_or(&empty);
            let aa = av.as_object().unwrap_or(&empty);
            let keys: BTreeSet<&String> = ea.keys().chain(aa.keys()).collect();
            for key in keys {
                let (x, y) = (ea.get(key), aa.get(key));
                if x != y {
                    let show =
                        |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or("none".into());
                    out.push(format!("{key}: expected {}, found {}", show(x), show(y)));
                }
            }
        } else if ev != av {
            out.push(format!("{k}: expected {ev}, found {av}"));
        }
    }
    out
}

fn arg_json(a: &Arg) -> Value {
    match a {
        Arg::Str(s) => json!(s),
        Arg::Int(i) => json!(i),
        Arg::Bool(b) => json!(b),
    }
}

/// Compares two topologies in RabbitMQ's definitions format: what the code declares and what
/// `source` holds. Result queues (`pos.*`, `user.*`) and server-named queues are not drift,
/// but a result queue with other arguments than the code gives them is (re-provisioning it
/// then fails), and so is a result queue bound to `pay.results` with another key than its
/// name (it would receive other terminals' or cardholders' results).
pub fn compare(expected: &Value, actual: &Value, source: &str) -> Result<Vec<Drift>, QueuesError> {
    let e = Defs::parse(expected, "the code")?;
    let a = Defs::parse(actual, source)?;
    let mut drift = Vec::new();
    let mut push = |problem, object, name: &str, detail: String| {
        drift.push(Drift {
            source: source.to_owned(),
            problem,
            object,
            name: name.to_owned(),
            detail,
        })
    };
    for (object, exp, act) in [
        ("exchange", &e.exchanges, &a.exchanges),
        ("queue", &e.queues, &a.queues),
    ] {
        for (name, ev) in exp {
            match act.get(name) {
                None => push("missing", object, name, String::new()),
                Some(av) => {
                    let diffs = differences(ev, av);
                    if !diffs.is_empty() {
                        push("different", object, name, diffs.join("; "));
                    }
                }
            }
        }
        for name in act.keys() {
            if ours(name) && !exp.contains_key(name) {
                push("extra", object, name, "not in the code's topology".into());
            }
        }
    }
    let result_args = Value::Object(
        topology::result_queue_args()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), arg_json(v)))
            .collect(),
    );
    for (name, av) in &a.queues {
        if is_result_queue(name) {
            let diffs = differences(&json!({"arguments": result_args}), av);
            if !diffs.is_empty() {
                push("different", "queue", name, diffs.join("; "));
            }
        }
    }
    let show = |b: &(String, String, String, String, String)| {
        format!("{} -> {} {} key {:?}", b.0, b.1, b.2, b.3)
    };
    for b in e.bindings.difference(&a.bindings) {
        push("missing", "binding", &show(b), String::new());
    }
    let our_exchanges: BTreeSet<&String> = e.exchanges.keys().collect();
    for b in a.bindings.difference(&e.bindings) {
        let (src, _, dest, key, _) = b;
        if server_named(dest) {
            continue;
        }
        if is_result_queue(dest) {
            if src == RESULTS && key == dest {
                continue;
            }
            push(
                "extra",
                "binding",
                &show(b),
                "a result queue receives only results routed with its own name".into(),
            );
        } else if our_exchanges.contains(src) || ours(src) || ours(dest) {
            push(
                "extra",
                "binding",
                &show(b),
                "not in the code's topology".into(),
            );
        }
    }
    Ok(drift)
}

/// `admin topology check`: the broker against the code, and the committed definitions file
/// against the code.
pub async fn topology_check(
    mgmt: &Management,
    vhost: &str,
    committed: &Value,
    committed_name: &str,
) -> Result<TopologyReport, QueuesError> {
    let (m, v) = (mgmt.clone(), vhost.to_owned());
    let live = blocking(move || m.definitions(&v)).await?;
    let expected = topology::topology().definitions_json();
    let mut drift = compare(&expected, &live, "broker")?;
    drift.extend(compare(&expected, committed, committed_name)?);
    let mut notes = Vec::new();
    for p in live["policies"].as_array().into_iter().flatten() {
        notes.push(format!(
            "policy {} (pattern {}, apply-to {}) may change arguments the code sets: {}",
            p["name"], p["pattern"], p["apply-to"], p["definition"]
        ));
    }
    Ok(TopologyReport {
        vhost: vhost.to_owned(),
        definitions_file: committed_name.to_owned(),
        ok: drift.is_empty(),
        drift,
        notes,
    })
}

/// The committed definitions: `path`, else `rabbitmq/definitions.json` in the working
/// directory, else the copy built into this binary.
pub fn committed_definitions(path: Option<&Path>) -> Result<(Value, String), QueuesError> {
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| QueuesError::Definitions {
                source_name: p.display().to_string(),
                why: e.to_string(),
            })?,
            p.display().to_string(),
        ),
        None => match std::fs::read_to_string(DEFINITIONS_FILE) {
            Ok(t) => (t, DEFINITIONS_FILE.to_owned()),
            Err(_) => (
                BUILT_IN_DEFINITIONS.to_owned(),
                format!("{DEFINITIONS_FILE} (as built into this binary)"),
            ),
        },
    };
    let v = serde_json::from_str(&text).map_err(|e| QueuesError::Definitions {
        source_name: name.clone(),
        why: e.to_string(),
    })?;
    Ok((v, name))
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

fn parse_limit(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    check_limit(n).map_err(|e| e.to_string())
}

/// `campuspay admin …` commands that need only the broker (no database): flattened into
/// `AdminCommand`, so they read `admin queues`, `admin queue purge`, `admin dead …`,
/// `admin topology check`.
#[derive(Debug, clap::Subcommand)]
pub enum BrokerAdminCommand {
    /// Every pipeline queue: type, ready, unacked, consumers, publish/deliver rates, warnings.
    ///
    /// Warnings: a stage queue with no consumer; a stage queue with more than 1000 ready
    /// messages whose deliver rate is not above its publish rate (backlog not draining); a
    /// queue not running; messages waiting to be dead-lettered; dead letters in pay.dead; a
    /// result queue at 90% of its max length. Rates and counts come from the management API's
    /// statistics, which lag by a few seconds.
    Queues {
        /// List every result queue (pos.*, user.*) instead of a summary.
        #[arg(long)]
        results: bool,
        #[arg(long)]
        json: bool,
    },
    /// Operate on one queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The dead letters in pay.dead: list, show, replay, drop.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// The broker topology.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Drop every ready message of a queue and print how many went.
    ///
    /// Refuses without --yes. Refuses the queues of the money-moving stages (order, fee,
    /// settlement.N) and pay.dead without --force as well: their messages are accepted
    /// payments (or dead letters kept for replay).
    Purge {
        name: String,
        /// Confirm the purge.
        #[arg(long)]
        yes: bool,
        /// Purge even a money-moving stage queue or pay.dead.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadCommand {
    /// The dead letters with their id, stage, reason, origin and age; nothing is removed.
    List {
        /// Read at most this many dead letters (1..=10000).
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One dead letter decoded: headers, and the body as JSON, a stage batch, or hex.
    Show {
        id: String,
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Re-publish dead letters where they came from (confirmed), then remove them.
    ///
    /// Each gets `x-campuspay-replayed: <count>`, so one that fails again shows it.
    Replay {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every dead letter read (up to --limit).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With --all: only those of this stage.
        #[arg(long, requires = "all")]
        stage: Option<String>,
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Remove dead letters for good, recording each drop first.
    ///
    /// Each drop (id, stage, reasons, origin, body size and SHA-256, times) is appended as a
    /// JSON line to --record (default: dead-letters-dropped.jsonl in the current directory)
    /// and fsync'd before the dead letter is removed. The body itself is not kept.
    Drop {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Why they are dropped (recorded).
        #[arg(long)]
        reason: String,
        /// The JSON Lines file the drops are appended to.
        #[arg(long, default_value = DEFAULT_DROP_RECORD)]
        record: PathBuf,
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TopologyCommand {
    /// Compare the broker (and the committed definitions file) with the code's topology;
    /// exits non-zero on drift.
    Check {
        /// The committed definitions (default: rabbitmq/definitions.json, else the copy built
        /// into this binary).
        #[arg(long)]
        definitions: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human(value));
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

fn opt_rate(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into())
}

fn overview_text(o: &QueueOverview) -> String {
    let mut s = format!(
        "{:<28} {:<8} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
        "QUEUE", "TYPE", "READY", "UNACKED", "CONSUMERS", "PUBLISH/s", "DELIVER/s"
    );
    let row = |r: &QueueRow| {
        format!(
            "{:<28} {:<8} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
            r.name,
            opt(&r.kind),
            opt(&r.ready),
            opt(&r.unacked),
            opt(&r.consumers),
            opt_rate(r.publish_rate),
            opt_rate(r.deliver_rate)
        )
    };
    for r in &o.pipeline {
        s.push_str(&row(r));
    }
    for g in &o.results {
        s.push_str(&format!(
            "result queues {}*: {} queues, {} ready, {} unacked, {} with a consumer\n",
            g.prefix, g.queues, g.ready, g.unacked, g.with_consumers
        ));
    }
    if let Some(list) = &o.result_queues {
        for r in list {
            s.push_str(&row(r));
        }
    }
    if o.warnings.is_empty() {
        s.push_str("no warnings");
    } else {
        s.push_str("warnings:");
        for w in &o.warnings {
            s.push_str(&format!("\n  ! {w}"));
        }
    }
    s
}

fn letter_line(l: &DeadLetter) -> String {
    let origin = match (&l.original_exchange, &l.original_routing_key) {
        (Some(e), Some(k)) => format!("{} -> {k}", if e.is_empty() { "(default)" } else { e }),
        _ => "?".into(),
    };
    format!(
        "{:<14} {:>7} {:<14} {:<28} {:<40}{}",
        l.id,
        l.age_secs.map(human_age).unwrap_or_else(|| "?".into()),
        l.stage,
        format!("{} ({})", l.reason, l.dead_lettered_by),
        origin,
        if l.replayed > 0 {
            format!(" replayed {}x", l.replayed)
        } else {
            String::new()
        }
    )
}

fn listing_text(l: &DeadListing) -> String {
    if l.letters.is_empty() {
        return format!("pay.dead in vhost {} is empty", l.vhost);
    }
    let mut s = format!(
        "{:<14} {:>7} {:<14} {:<28} {:<40}\n",
        "ID", "AGE", "STAGE", "REASON (BY)", "ORIGIN (EXCHANGE -> KEY)"
    );
    for d in &l.letters {
        s.push_str(&letter_line(d));
        s.push('\n');
    }
    s.push_str(&format!(
        "{} dead letters{}",
        l.letters.len(),
        if l.more {
            "; pay.dead holds more: raise --limit to see them"
        } else {
            ""
        }
    ));
    s
}

fn detail_text(details: &[DeadLetterDetail]) -> String {
    let mut s = String::new();
    if details.len() > 1 {
        s.push_str(&format!(
            "{} identical copies of this dead letter\n",
            details.len()
        ));
    }
    for d in details.iter().take(1) {
        s.push_str(&letter_line(&d.letter));
        s.push_str(&format!(
            "\nproperties: {}\nheaders:\n{}\n",
            d.properties,
            serde_json::to_string_pretty(&d.headers).unwrap_or_default()
        ));
        match &d.body {
            Body::Json { value } => s.push_str(&format!(
                "body (JSON):\n{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            )),
            Body::StageBatch { version, items } => s.push_str(&format!(
                "body (stage batch, version {version}):\n{}",
                serde_json::to_string_pretty(items).unwrap_or_default()
            )),
            Body::Hex {
                hex,
                text,
                truncated,
                note,
            } => {
                if let Some(n) = note {
                    s.push_str(&format!("note: {n}\n"));
                }
                s.push_str(&format!(
                    "body ({} bytes{}):\n{hex}",
                    d.letter.body_bytes,
                    if *truncated { ", truncated" } else { "" }
                ));
                if let Some(t) = text {
                    s.push_str(&format!("\nas text: {t:?}"));
                }
            }
        }
    }
    s
}

fn replay_text(r: &ReplayReport) -> String {
    let mut s = String::new();
    for x in &r.replayed {
        s.push_str(&format!(
            "replayed {} ({}) to {} -> {} (replay #{})\n",
            x.id, x.stage, x.exchange, x.routing_key, x.replayed
        ));
    }
    for x in &r.failed {
        s.push_str(&format!(
            "NOT replayed {} ({}): {}; it stays in pay.dead\n",
            x.id, x.stage, x.why
        ));
    }
    for id in &r.not_found {
        s.push_str(&format!(
            "not found: {id} (among {} read; raise --limit?)\n",
            r.examined
        ));
    }
    s.push_str(&format!(
        "{} replayed, {} failed, {} not found",
        r.replayed.len(),
        r.failed.len(),
        r.not_found.len()
    ));
    s
}

fn drop_text(r: &DropReport) -> String {
    let mut s = String::new();
    for x in &r.dropped {
        s.push_str(&format!(
            "dropped {} ({}, {}, {} bytes)\n",
            x.id, x.stage, x.dead_reason, x.body_bytes
        ));
    }
    for id in &r.not_found {
        s.push_str(&format!(
            "not found: {id} (among {} read; raise --limit?)\n",
            r.examined
        ));
    }
    s.push_str(&format!(
        "{} dropped; recorded in {}",
        r.dropped.len(),
        r.record_file
    ));
    s
}

fn topology_text(r: &TopologyReport) -> String {
    let mut s = String::new();
    for d in &r.drift {
        s.push_str(&format!(
            "DRIFT [{}] {} {} {}{}\n",
            d.source,
            d.problem,
            d.object,
            d.name,
            if d.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", d.detail)
            }
        ));
    }
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    if r.ok {
        s.push_str(&format!(
            "no drift: vhost {} and {} match the code's topology",
            r.vhost, r.definitions_file
        ));
    } else {
        s.push_str(&format!("{} differences", r.drift.len()));
    }
    s
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one broker admin command; the vhost is the path of `AMQP_URL`.
pub async fn run(command: BrokerAdminCommand, config: &Config) -> Result<ExitCode, QueuesError> {
    let amqp = config.amqp_url.as_str();
    match command {
        BrokerAdminCommand::Queues { results, json } => {
            let mgmt = Management::new(&config.management_url)?;
            let o = queue_overview(&mgmt, &vhost_of(amqp)?, results).await?;
            print(json, &o, overview_text);
        }
        BrokerAdminCommand::Queue {
            command:
                QueueCommand::Purge {
                    name,
                    yes,
                    force,
                    json,
                },
        } => {
            let p = purge(amqp, &name, PurgeConfirm { yes, force }).await?;
            print(json, &p, |p| {
                format!(
                    "purged {} messages from {} (vhost {})",
                    p.purged, p.queue, p.vhost
                )
            });
        }
        BrokerAdminCommand::Dead { command } => match command {
            DeadCommand::List { limit, json } => {
                let l = dead_list(amqp, limit).await?;
                print(json, &l, listing_text);
            }
            DeadCommand::Show { id, limit, json } => {
                let d = dead_show(amqp, &id, limit).await?;
                print(json, &d, |d| detail_text(d));
            }
            DeadCommand::Replay {
                ids,
                all,
                stage,
                limit,
                json,
            } => {
                let selection = if all {
                    Selection::All { stage }
                } else {
                    Selection::Ids(ids)
                };
                let r = dead_replay(amqp, &selection, limit, config.confirm_timeout).await?;
                print(json, &r, replay_text);
                return Ok(exit(r.ok()));
            }
            DeadCommand::Drop {
                ids,
                reason,
                record,
                limit,
                json,
            } => {
                let r = dead_drop(amqp, &ids, &reason, &record, limit).await?;
                print(json, &r, drop_text);
                return Ok(exit(r.not_found.is_empty()));
            }
        },
        BrokerAdminCommand::Topology {
            command: TopologyCommand::Check { definitions, json },
        } => {
            let mgmt = Management::new(&config.management_url)?;
            let (committed, name) = committed_definitions(definitions.as_deref())?;
            let r = topology_check(&mgmt, &vhost_of(amqp)?, &committed, &name).await?;
            print(json, &r, topology_text);
            return Ok(exit(r.ok));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_is_the_decoded_path() {
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/%2f").unwrap(), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/%2F").unwrap(), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672").unwrap(), "/");
        assert_eq!(
            vhost_of("amqp://h/cp_test_1?heartbeat=10").unwrap(),
            "cp_test_1"
        );
        assert_eq!(vhost_of("amqps://h/a%20b").unwrap(), "a b");
        assert!(vhost_of("http://h/x").is_err());
        assert!(vhost_of("amqp://h/%zz").is_err());
    }

    #[test]
    fn money_moving_queues_are_protected() {
        for q in [
            "campuspay.order",
            "campuspay.fee",
            "campuspay.settlement.0",
            "campuspay.settlement.3",
            "pay.dead",
        ] {
            assert!(purge_protection(q).is_some(), "{q}");
        }
        for q in [
            "campuspay.qr_validation",
            "campuspay.fanout",
            "pay.unrouted",
            "pos.m1.t1",
        ] {
            assert!(purge_protection(q).is_none(), "{q}");
        }
    }

    fn row(name: &str) -> QueueRow {
        QueueRow {
            name: name.into(),
            role: role_of(name),
            kind: Some("quorum".into()),
            state: Some("running".into()),
            ready: Some(0),
            unacked: Some(0),
            consumers: Some(1),
            publish_rate: None,
            deliver_rate: None,
            awaiting_dead_letter: Some(0),
            max_length: Some(1_000_000),
        }
    }

    #[test]
    fn warning_rules() {
        assert!(warnings_for(&row("campuspay.fee")).is_empty());
        let mut r = row("campuspay.fee");
        r.consumers = Some(0);
        assert!(warnings_for(&r)[0].contains("no consumer"));
        // A big backlog that drains is fine; one that does not is not.
        let mut r = row("campuspay.fee");
        r.ready = Some(5_000);
        r.publish_rate = Some(100.0);
        r.deliver_rate = Some(400.0);
        assert!(warnings_for(&r).is_empty());
        r.deliver_rate = Some(50.0);
        assert!(warnings_for(&r)[0].contains("not draining"));
        r.publish_rate = None;
        r.deliver_rate = None;
        assert!(warnings_for(&r)[0].contains("not draining"));
        r.ready = Some(BACKLOG_READY);
        assert!(warnings_for(&r).is_empty());
        let mut d = row("pay.dead");
        d.consumers = Some(0);
        assert!(warnings_for(&d).is_empty());
        d.ready = Some(3);
        assert!(warnings_for(&d)[0].contains("3 dead letters"));
        let mut p = row("pos.m1.t1");
        p.max_length = Some(10_000);
        p.ready = Some(9_000);
        assert!(warnings_for(&p)[0].contains("refused"));
    }

    #[test]
    fn summary_lists_pipeline_queues_in_order_and_missing_ones() {
        let api = vec![
            json!({"name": "campuspay.fee", "type": "quorum", "consumers": 1, "messages_ready": 0}),
            json!({"name": "pos.m1.t1", "type": "classic", "consumers": 0, "messages_ready": 2}),
            json!({"name": "user.u1", "type": "classic", "consumers": 1, "messages_ready": 1}),
            json!({"name": "campuspay.qr_validation", "type": "quorum", "consumers": 0,
                   "messages_ready": 0, "message_stats": {"publish_details": {"rate": 2.5}}}),
        ];
        let o = summarize("/", &api, false);
        let names: Vec<&str> = o.pipeline.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["campuspay.qr_validation", "campuspay.fee"]);
        assert_eq!(o.pipeline[0].publish_rate, Some(2.5));
        assert!(o.missing.contains(&"campuspay.order".to_owned()));
        assert!(o.missing.contains(&"pay.dead".to_owned()));
        assert_eq!(o.results[0].queues, 1);
        assert_eq!(o.results[0].ready, 2);
        assert_eq!(o.results[1].with_consumers, 1);
        assert!(o
            .warnings
            .iter()
            .any(|w| w.starts_with("campuspay.qr_validation has no consumer")));
        assert!(o.result_queues.is_none());
    }

    fn props(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut t = FieldTable::default();
        for (k, v) in headers {
            t.insert((*k).into(), v.clone());
        }
        BasicProperties::default().with_headers(t)
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn stage_dead_letters_are_described_from_their_headers() {
        let now = Utc::now();
        let at = (now - chrono::Duration::seconds(90))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let p = props(&[
            ("x-campuspay-stage", s("qr_validation")),
            ("x-campuspay-reason", s("not_json")),
            ("x-campuspay-queue", s("campuspay.qr_validation")),
            ("x-original-exchange", s("pay.requests")),
            ("x-original-routing-key", s("pos.m1.t1.scan")),
            ("x-campuspay-dead-lettered-at", s(&at)),
        ]);
        let l = describe("qr_validation", &p, b"nope", now);
        assert_eq!(l.dead_lettered_by, "stage");
        assert_eq!(l.stage, "qr_validation");
        assert_eq!(l.reason, "not_json");
        assert_eq!(l.original_exchange.as_deref(), Some("pay.requests"));
        assert_eq!(l.original_routing_key.as_deref(), Some("pos.m1.t1.scan"));
        assert!(matches!(l.age_secs, Some(89..=91)), "{:?}", l.age_secs);
        assert_eq!(l.replayed, 0);
        assert_eq!(l.id.len(), 12);
    }

    #[test]
    fn broker_dead_letters_are_described_from_x_death() {
        let now = Utc::now();
        let mut death = FieldTable::default();
        death.insert("reason".into(), s("delivery_limit"));
        death.insert("queue".into(), s("campuspay.settlement.2"));
        death.insert("exchange".into(), s("pay.stage"));
        death.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(vec![s("settlement.2")].into()),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert(
            "time".into(),
            AMQPValue::Timestamp((now.timestamp() - 10) as u64),
        );
        // Stale headers of an earlier stage dead-lettering, kept by a replay.
        let p = props(&[
            (
                "x-death",
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
            ),
            ("x-campuspay-reason", s("not_json")),
            (REPLAYED_HEADER, s("2")),
        ]);
        let l = describe("settlement", &p, b"\x02...", now);
        assert_eq!(l.dead_lettered_by, "broker");
        assert_eq!(l.stage, "settlement");
        assert_eq!(l.reason, "delivery_limit");
        assert_eq!(l.queue.as_deref(), Some("campuspay.settlement.2"));
        assert_eq!(l.original_exchange.as_deref(), Some("pay.stage"));
        assert_eq!(l.original_routing_key.as_deref(), Some("settlement.2"));
        assert!(matches!(l.age_secs, Some(9..=11)));
        assert_eq!(l.replayed, 2);
        assert_eq!(
            origin(&l).unwrap(),
            ("pay.stage".into(), "settlement.2".into())
        );
    }

    #[test]
    fn ids_are_stable_across_requeues_and_prefer_the_message_id() {
        let a = props(&[("x-campuspay-reason", s("not_json"))]);
        let b = props(&[
            ("x-campuspay-reason", s("not_json")),
            ("x-delivery-count", AMQPValue::LongLongInt(3)),
        ]);
        assert_eq!(dead_letter_id(&a, b"x"), dead_letter_id(&b, b"x"));
        assert_ne!(dead_letter_id(&a, b"x"), dead_letter_id(&a, b"y"));
        let c = props(&[("x-campuspay-reason", s("too_large"))]);
        assert_ne!(dead_letter_id(&a, b"x"), dead_letter_id(&c, b"x"));
        let m = a.clone().with_message_id("msg-1".into());
        assert_eq!(dead_letter_id(&m, b"x"), "msg-1");
    }

    #[test]
    fn bodies_decode_as_json_batch_or_hex_and_codes_are_masked() {
        match decode_body(br#"{"type":"scan.v1","payment_code":"281234567890123456"}"#) {
            Body::Json { value } => assert_eq!(value["payment_code"], "28************3456"),
            other => panic!("{other:?}"),
        }
        let batch = StageBatch { items: vec![] }.encode().unwrap();
        assert!(matches!(decode_body(&batch), Body::StageBatch { .. }));
        match decode_body(b"not json") {
            Body::Hex { hex, text, .. } => {
                assert_eq!(hex, "6e6f74206a736f6e");
                assert_eq!(text.as_deref(), Some("not json"));
            }
            other => panic!("{other:?}"),
        }
        match decode_body(&[1, 0xff, 0xfe]) {
            Body::Hex { note, .. } => assert!(note.is_some()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_code_has_no_drift_against_itself_and_changes_are_reported() {
        let code = topology::topology().definitions_json();
        assert_eq!(compare(&code, &code, "same").unwrap(), vec![]);
        let mut live = code.clone();
        // A result queue and a server-named queue with their bindings are not drift.
        live["queues"].as_array_mut().unwrap().push(json!({
            "name": "pos.m1.t1", "durable": true, "auto_delete": false,
            "arguments": {"x-queue-type": "classic", "x-message-ttl": 86_400_000,
                          "x-max-length": 10_000, "x-overflow": "reject-publish"}}));
        live["bindings"].as_array_mut().unwrap().extend([
            json!({"source": "pay.results", "destination": "pos.m1.t1",
                   "destination_type": "queue", "routing_key": "pos.m1.t1", "arguments": {}}),
            json!({"source": "pay.results", "destination": "amq.gen-xyz",
                   "destination_type": "queue", "routing_key": "#", "arguments": {}}),
        ]);
        assert_eq!(compare(&code, &live, "broker").unwrap(), vec![]);
        // Now break things.
        live["bindings"]
            .as_array_mut()
            .unwrap()
            .retain(|b| b["routing_key"] != "fee");
        live["bindings"].as_array_mut().unwrap().push(json!({
            "source": "pay.results", "destination": "pos.m1.t1",
            "destination_type": "queue", "routing_key": "#", "arguments": {}}));
        for q in live["queues"].as_array_mut().unwrap() {
            if q["name"] == "campuspay.fanout" {
                q["arguments"]["x-queue-type"] = json!("classic");
            }
        }
        live["queues"].as_array_mut().unwrap().push(json!({
            "name": "campuspay.bogus", "durable": true, "auto_delete": false, "arguments": {}}));
        let drift = compare(&code, &live, "broker").unwrap();
        let summary: Vec<(&str, &str, &str)> = drift
            .iter()
            .map(|d| (d.problem, d.object, d.name.as_str()))
            .collect();
        assert!(
            summary.contains(&(
                "missing",
                "binding",
                "pay.stage -> queue campuspay.fee key \"fee\""
            )),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("different", "queue", "campuspay.fanout")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("extra", "queue", "campuspay.bogus")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&(
                "extra",
                "binding",
                "pay.results -> queue pos.m1.t1 key \"#\""
            )),
            "{summary:?}"
        );
        assert_eq!(drift.len(), 4, "{drift:?}");
        let fanout = drift.iter().find(|d| d.name == "campuspay.fanout").unwrap();
        assert!(fanout
            .detail
            .contains("x-queue-type: expected \"quorum\", found \"classic\""));
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(192), "3m12s");
        assert_eq!(human_age(7500), "2h05m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600), "3d04h");
    }
}
