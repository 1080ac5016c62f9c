//! `campuspay admin queues`: every pipeline queue from the management API, with the warnings
//! an operator should act on.

use super::{blocking, is_result_queue, QueuesError};
use crate::admin::management::Management;
use crate::broker::topology::{self, Shards, DEAD_QUEUE, UNROUTED_QUEUE};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A stage queue with more ready messages than this, and a deliver rate not above its publish
/// rate, has a backlog that is not draining.
pub const BACKLOG_READY: u64 = 1_000;
/// A result queue this full (percent of its `x-max-length`) will soon refuse results, and
/// fan-out's publishes to it are then nacked.
const RESULT_QUEUE_FULL_PERCENT: u64 = 90;

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
            max_length: max_length(v),
            name,
        }
    }
}

/// The limit in force: a policy's `max-length`, or a queue argument left by an earlier version
/// (when both are set RabbitMQ applies the lower).
fn max_length(v: &Value) -> Option<u64> {
    let argument = v["arguments"]["x-max-length"].as_u64();
    let policy = v["effective_policy_definition"]["max-length"].as_u64();
    match (argument, policy) {
        (Some(a), Some(p)) => Some(a.min(p)),
        (a, p) => a.or(p),
    }
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
pub fn summarize(
    vhost: &str,
    api_queues: &[Value],
    list_results: bool,
    shards: Shards,
) -> QueueOverview {
    let rows: BTreeMap<String, QueueRow> = api_queues
        .iter()
        .map(QueueRow::from_api)
        .map(|r| (r.name.clone(), r))
        .collect();
    let expected: Vec<String> = topology::topology(shards)
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
            let held = r.ready.unwrap_or(0) + r.unacked.unwrap_or(0);
            if held > 0 {
                warnings.push(format!(
                    "{} holds {held} messages but is not a queue of this configuration ({} settlement shards): no consumer reads it; go back to the old shard count until it is drained",
                    r.name,
                    shards.count()
                ));
            }
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
    shards: Shards,
) -> Result<QueueOverview, QueuesError> {
    let (m, v) = (mgmt.clone(), vhost.to_owned());
    let queues = blocking(move || m.queues(&v)).await?;
    Ok(summarize(vhost, &queues, list_results, shards))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let o = summarize("/", &api, false, Shards::DEFAULT);
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
}
