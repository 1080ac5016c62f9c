//! `campuspay admin topology check`: the broker's live definitions, and the committed
//! definitions file, compared with the code's topology.

use super::{blocking, is_result_queue, QueuesError};
use crate::admin::management::Management;
use crate::broker::topology::{self, Arg, Shards, Topology, POLICY_PREFIX, RESULTS};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The definitions file as committed, relative to the repository root.
pub const DEFINITIONS_FILE: &str = "rabbitmq/definitions.json";
/// The committed definitions as they were when this binary was built: used when the command
/// does not run from a checkout.
const BUILT_IN_DEFINITIONS: &str = include_str!("../../../rabbitmq/definitions.json");

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    /// `broker` or the definitions file compared with the code.
    pub source: String,
    /// `missing`, `extra`, `different`, or `tuned` (a policy value other than the code's,
    /// which on a broker is an operator's choice and reported as a note).
    pub problem: &'static str,
    /// `exchange`, `queue`, `binding` or `policy`.
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
    /// Not drift, but worth knowing: limits an operator tuned in a policy.
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
    /// name → {pattern, apply-to, priority, definition}
    policies: BTreeMap<String, Value>,
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
        // Older definitions files have no policies.
        for p in v["policies"].as_array().into_iter().flatten() {
            d.policies.insert(
                s(p, "name"),
                json!({"pattern": p["pattern"], "apply-to": p["apply-to"],
                       "priority": p["priority"], "definition": p["definition"]}),
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
                    let why = if x.is_none() && POLICY_KEYS.contains(&key.as_str()) {
                        " (a limit set as a queue argument by an earlier version overrides the \
                         policy: drain the queue, delete it and run campuspay topology)"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "{key}: expected {}, found {}{why}",
                        show(x),
                        show(y)
                    ));
                }
            }
        } else if ev != av {
            out.push(format!("{k}: expected {ev}, found {av}"));
        }
    }
    out
}

/// Queue arguments that a policy now sets.
const POLICY_KEYS: [&str; 7] = [
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-overflow",
    "x-delivery-limit",
    "x-max-length",
    "x-message-ttl",
];

/// A policy of `actual` against the code's: its reach (pattern, apply-to, priority) and every
/// key the code sets must be there; other values are `tuned`.
fn policy_differences(expected: &Value, actual: &Value) -> (Vec<String>, Vec<String>) {
    let mut broken = Vec::new();
    let mut tuned = Vec::new();
    for k in ["pattern", "apply-to", "priority"] {
        if expected[k] != actual[k] {
            broken.push(format!(
                "{k}: expected {}, found {}",
                expected[k], actual[k]
            ));
        }
    }
    let empty = Map::new();
    let ed = expected["definition"].as_object().unwrap_or(&empty);
    let ad = actual["definition"].as_object().unwrap_or(&empty);
    for (k, ev) in ed {
        match ad.get(k) {
            None => broken.push(format!("{k}: expected {ev}, found none")),
            Some(av) if av != ev => tuned.push(format!("{k}: {av} (the code's is {ev})")),
            Some(_) => {}
        }
    }
    for (k, av) in ad {
        if !ed.contains_key(k) {
            tuned.push(format!("{k}: {av} (not set by the code)"));
        }
    }
    (broken, tuned)
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
    for (name, ev) in &e.policies {
        match a.policies.get(name) {
            None => push(
                "missing",
                "policy",
                name,
                "its queues have no limits: run campuspay topology".into(),
            ),
            Some(av) => {
                let (broken, tuned) = policy_differences(ev, av);
                if !broken.is_empty() {
                    push("different", "policy", name, broken.join("; "));
                }
                if !tuned.is_empty() {
                    push("tuned", "policy", name, tuned.join("; "));
                }
            }
        }
    }
    for name in a.policies.keys() {
        if name.starts_with(POLICY_PREFIX) && !e.policies.contains_key(name) {
            push("extra", "policy", name, "not in the code's topology".into());
        }
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
    shards: Shards,
) -> Result<TopologyReport, QueuesError> {
    let (m, v) = (mgmt.clone(), vhost.to_owned());
    let (live, queues) = blocking(move || Ok((m.definitions(&v)?, m.queues(&v)?))).await?;
    let code = topology::topology(shards);
    let mut drift = compare(&code.definitions_json(), &live, "broker")?;
    for d in policies_in_effect(&code, &queues) {
        // One entry per queue: its arguments and its policy together.
        match drift
            .iter_mut()
            .find(|e| e.object == "queue" && e.name == d.name && e.problem == d.problem)
        {
            Some(e) => e.detail = format!("{}; {}", e.detail, d.detail),
            None => drift.push(d),
        }
    }
    // A tuned policy on the broker is the operator's choice: a note, not drift.
    let (tuned, mut drift): (Vec<Drift>, Vec<Drift>) =
        drift.into_iter().partition(|d| d.problem == "tuned");
    let notes = tuned
        .iter()
        .map(|d| format!("policy {} is tuned: {}", d.name, d.detail))
        .collect();
    // The committed file is rendered with the default shard count, whatever this deployment
    // uses.
    let rendered = topology::topology(Shards::DEFAULT).definitions_json();
    drift.extend(compare(&rendered, committed, committed_name)?);
    Ok(TopologyReport {
        vhost: vhost.to_owned(),
        definitions_file: committed_name.to_owned(),
        ok: drift.is_empty(),
        drift,
        notes,
    })
}

/// Each of the code's queues, and every result queue, must have the code's policy in effect:
/// another policy of higher priority replaces it whole (policies do not merge), and a queue with
/// none has no limits. `queues` is the management API's queue list.
fn policies_in_effect(code: &Topology, queues: &[Value]) -> Vec<Drift> {
    let mut expected: BTreeMap<&str, String> = code
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.policy.clone()))
        .collect();
    let results = topology::result_queue_policy();
    let mut drift = Vec::new();
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        let want = match expected.remove(name) {
            Some(p) => p,
            None if is_result_queue(name) => results.clone(),
            None => continue,
        };
        // The management API shows a new queue's policy only with its first statistics, some
        // seconds after it was declared: no key is "not known yet", null is "none".
        let Some(found) = q.get("policy") else {
            continue;
        };
        let found = found.as_str().unwrap_or("none");
        if found != want {
            drift.push(Drift {
                source: "broker".into(),
                problem: "different",
                object: "queue",
                name: name.to_owned(),
                detail: format!("policy in effect: {found}, expected {want}"),
            });
        }
    }
    drift
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_has_no_drift_against_itself_and_changes_are_reported() {
        let code = topology::topology(Shards::DEFAULT).definitions_json();
        assert_eq!(compare(&code, &code, "same").unwrap(), vec![]);
        let mut live = code.clone();
        // A result queue and a server-named queue with their bindings are not drift.
        live["queues"].as_array_mut().unwrap().push(json!({
            "name": "pos.m1.t1", "durable": true, "auto_delete": false,
            "arguments": {"x-queue-type": "quorum"}}));
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
        // Policies: one gone, one lost a key the code sets, one tuned by an operator.
        let policies = live["policies"].as_array_mut().unwrap();
        policies.retain(|p| p["name"] != "campuspay-dead");
        for p in policies.iter_mut() {
            if p["name"] == "campuspay-stage-fee" {
                p["definition"]
                    .as_object_mut()
                    .unwrap()
                    .remove("delivery-limit");
            }
            if p["name"] == "campuspay-results" {
                p["definition"]["max-length"] = json!(500);
            }
        }
        // A terminal's result queue made by an earlier version (classic: one node's loss
        // takes it away) is reported.
        live["queues"].as_array_mut().unwrap().push(json!({
            "name": "pos.m1.t2", "durable": true, "auto_delete": false,
            "arguments": {"x-queue-type": "classic", "x-message-ttl": 86_400_000,
                          "x-max-length": 10_000, "x-overflow": "reject-publish"}}));
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
        assert!(
            summary.contains(&("different", "queue", "pos.m1.t2")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("missing", "policy", "campuspay-dead")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("different", "policy", "campuspay-stage-fee")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("tuned", "policy", "campuspay-results")),
            "{summary:?}"
        );
        assert_eq!(drift.len(), 8, "{drift:?}");
        let t2 = drift.iter().find(|d| d.name == "pos.m1.t2").unwrap();
        assert!(
            t2.detail
                .contains("x-max-length: expected none, found 10000 (a limit"),
            "{}",
            t2.detail
        );
        let fanout = drift.iter().find(|d| d.name == "campuspay.fanout").unwrap();
        assert!(fanout
            .detail
            .contains("x-queue-type: expected \"quorum\", found \"classic\""));
    }
}
