//! Taking dead letters from `pay.dead` without losing them, and what is done with them there:
//! `dead list`, `dead show`, `dead replay` and `dead drop` (see the module doc of `queues`).

use super::dead_letter::{
    decode_body, describe, origin, properties_json, table_to_json, DeadLetter, DeadLetterDetail,
    VOLATILE_HEADERS,
};
use super::{check_limit, connect, vhost_of, QueuesError};
use crate::broker::consumer::{replayed_count, REPLAYED_HEADER};
use crate::broker::topology::{StageName, DEAD_QUEUE};
use crate::broker::Publisher;
use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_DROP_RECORD: &str = "dead-letters-dropped.jsonl";

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
