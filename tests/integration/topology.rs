//! The topology in code, the committed `rabbitmq/definitions.json`, and what the broker holds
//! after `campuspay topology` all agree; the queues' limits are policies an operator can change.

use crate::helpers::*;
use campuspay::admin::queues::{set_up, ExistingPolicies};
use campuspay::broker::topology::{
    provision_result_queue, result_queue_policy, topology, Shards, Topology, STAGE,
};
use campuspay::broker::{BrokerError, Outgoing, Publisher};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[test]
fn committed_definitions_match_the_code() {
    assert_eq!(
        definitions_file(),
        topology(Shards::DEFAULT).definitions_json(),
        "rabbitmq/definitions.json is stale: regenerate with `campuspay topology --print-definitions`"
    );
}

fn names(v: &Value, key: &str, f: impl Fn(&Value) -> String) -> BTreeSet<String> {
    v[key].as_array().unwrap().iter().map(f).collect()
}

#[actix_rt::test]
async fn the_broker_holds_exactly_the_declared_topology() {
    let env = TestEnv::empty().await;
    let vhost = env.vhost.clone();
    let m = env.mgmt().clone();
    let live = tokio::task::spawn_blocking(move || m.definitions(&vhost))
        .await
        .unwrap()
        .unwrap();
    let file = definitions_file();
    let queue = |q: &Value| format!("{} {}", q["name"], q["arguments"]);
    let exchange = |e: &Value| {
        format!(
            "{} {} {} {}",
            e["name"], e["type"], e["durable"], e["arguments"]
        )
    };
    let binding = |b: &Value| format!("{} {} {}", b["source"], b["destination"], b["routing_key"]);
    assert_eq!(names(&live, "queues", queue), names(&file, "queues", queue));
    assert_eq!(
        names(&live, "exchanges", exchange),
        names(&file, "exchanges", exchange)
    );
    assert_eq!(
        names(&live, "bindings", binding),
        names(&file, "bindings", binding)
    );
    let policy = |p: &Value| {
        format!(
            "{} {} {} {} {}",
            p["name"], p["pattern"], p["apply-to"], p["priority"], p["definition"]
        )
    };
    assert_eq!(
        names(&live, "policies", policy),
        names(&file, "policies", policy)
    );
    // Stage queues are durable quorum queues.
    for q in live["queues"].as_array().unwrap() {
        let name = q["name"].as_str().unwrap();
        assert_eq!(q["durable"], true, "{name}");
        if name.starts_with("campuspay.") {
            assert_eq!(q["arguments"]["x-queue-type"], "quorum", "{name}");
        }
    }
}

/// The management API's view of the vhost's queues, by name.
async fn queues_by_name(env: &TestEnv) -> BTreeMap<String, Value> {
    let (m, vhost) = (env.mgmt().clone(), env.vhost.clone());
    tokio::task::spawn_blocking(move || m.queues(&vhost))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|q| (q["name"].as_str().unwrap().to_owned(), q))
        .collect()
}

#[actix_rt::test]
async fn every_queue_runs_under_its_policy_and_carries_no_limit_of_its_own() {
    let env = TestEnv::empty().await;
    // A terminal's result queue, provisioned like `admin terminal add` does.
    provision_result_queue(&env.conn, "pos.m1.t1")
        .await
        .unwrap();
    let code = topology(env.config.settlement_shards);
    let mut expected: BTreeMap<String, String> = code
        .queues
        .iter()
        .map(|q| (q.name.clone(), q.policy.clone()))
        .collect();
    expected.insert("pos.m1.t1".into(), result_queue_policy());
    let live = eventually(
        "every queue shows its policy",
        WAIT,
        Duration::from_millis(200),
        || async {
            let live = queues_by_name(&env).await;
            let found: BTreeMap<String, String> = live
                .iter()
                .map(|(n, q)| (n.clone(), q["policy"].as_str().unwrap_or("none").to_owned()))
                .collect();
            if found == expected {
                Ok(live)
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await;
    for (name, q) in &live {
        let effective = &q["effective_policy_definition"];
        assert_eq!(effective["overflow"], "reject-publish", "{name}");
        assert!(effective["max-length"].as_u64().unwrap() > 0, "{name}");
        assert!(
            q["arguments"]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| k == "x-queue-type" || k == "x-single-active-consumer"),
            "{name}: {}",
            q["arguments"]
        );
        if name.starts_with("campuspay.") {
            assert_eq!(effective["delivery-limit"], 10, "{name}");
            assert_eq!(effective["dead-letter-exchange"], "pay.dead", "{name}");
            assert_eq!(effective["dead-letter-strategy"], "at-least-once", "{name}");
        }
    }
    assert_eq!(
        live["campuspay.settlement.3"]["effective_policy_definition"]["dead-letter-routing-key"],
        "settlement"
    );
}

/// The fee stage's policy with another `max-length`, every other key kept.
fn fee_policy_with_max_length(code: &Topology, vhost: &str, max: u64) -> Value {
    let mut p = code
        .policies_json(vhost)
        .into_iter()
        .find(|p| p["name"] == "campuspay-stage-fee")
        .unwrap();
    p["definition"]["max-length"] = json!(max);
    p
}

/// Waits until the fee queue's policy in effect limits it to `max` messages.
async fn fee_queue_max_length_becomes(env: &TestEnv, max: u64) {
    eventually(
        &format!("the fee queue's max-length in effect is {max}"),
        WAIT,
        Duration::from_millis(200),
        || async {
            let q = &queues_by_name(env).await["campuspay.fee"];
            match q["effective_policy_definition"]["max-length"].as_u64() {
                Some(n) if n == max => Ok(()),
                other => Err(format!("max-length {other:?}")),
            }
        },
    )
    .await
}

#[actix_rt::test]
async fn an_operator_changes_a_limit_with_a_policy_and_no_queue_is_redeclared() {
    let env = TestEnv::empty().await;
    let code = topology(env.config.settlement_shards);
    let tuned = fee_policy_with_max_length(&code, &env.vhost, 2);
    let (m, vhost) = (env.mgmt().clone(), env.vhost.clone());
    tokio::task::spawn_blocking(move || m.put_policy(&vhost, &tuned))
        .await
        .unwrap()
        .unwrap();
    fee_queue_max_length_becomes(&env, 2).await;
    // No stage runs: the queue fills and then refuses (nacks) rather than drops. A quorum
    // queue refuses once it is over its limit, so it takes one message more than the limit.
    let publisher = Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap();
    let msg = |i: u8| Outgoing::binary(STAGE, "fee".into(), vec![i]);
    publisher.publish(msg(1)).await.unwrap();
    publisher.publish(msg(2)).await.unwrap();
    let mut refused = None;
    for i in 3..=4 {
        if let Err(e) = publisher.publish(msg(i)).await {
            refused = Some((i, e));
            break;
        }
    }
    assert!(
        matches!(refused, Some((_, BrokerError::Nacked { .. }))),
        "{refused:?}"
    );

    // A tuned value is the operator's: a note, not drift.
    let mgmt = env.mgmt().clone();
    let r = env.check_topology().await;
    assert!(r.ok, "{:?}", r.drift);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("campuspay-stage-fee") && n.contains("max-length: 2")),
        "{:?}",
        r.notes
    );

    // Running the set-up again keeps it; --reset-policies puts the code's back.
    let again = set_up(&env.conn, &mgmt, &env.vhost, &code, ExistingPolicies::Keep)
        .await
        .unwrap();
    assert!(again.policies_set.is_empty(), "{again:?}");
    assert!(again
        .policies_kept
        .contains(&"campuspay-stage-fee".to_owned()));
    assert!(again.queues_kept_with_arguments.is_empty(), "{again:?}");
    let reset = set_up(&env.conn, &mgmt, &env.vhost, &code, ExistingPolicies::Reset)
        .await
        .unwrap();
    assert_eq!(reset.policies_set.len(), code.policies.len());
    fee_queue_max_length_becomes(&env, 1_000_000).await;
    publisher.publish(msg(5)).await.unwrap();
}

#[actix_rt::test]
async fn a_queue_an_earlier_version_declared_with_limits_is_kept_and_reported() {
    let env = TestEnv::empty().await;
    let channel = env.conn.create_channel().await.unwrap();
    channel
        .queue_delete("campuspay.order".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let mut old = FieldTable::default();
    old.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    old.insert("x-max-length".into(), AMQPValue::LongLongInt(1_000_000));
    old.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            "campuspay.order".into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            old,
        )
        .await
        .unwrap();
    let code = topology(env.config.settlement_shards);
    let mgmt = env.mgmt().clone();
    // Declaring again does not fail on it: it keeps it (and declares everything else).
    let done = set_up(&env.conn, &mgmt, &env.vhost, &code, ExistingPolicies::Keep)
        .await
        .unwrap();
    assert_eq!(done.queues_kept_with_arguments, ["campuspay.order"]);
    // The binding deleted with the queue is back.
    let r = env.check_topology().await;
    assert!(!r.ok);
    assert_eq!(
        drift_found(&r),
        [("different", "queue", "campuspay.order")],
        "{:?}",
        r.drift
    );
    assert!(
        r.drift[0].detail.contains(
            "x-max-length: expected none, found 1000000 (a limit set as a queue argument"
        ),
        "{}",
        r.drift[0].detail
    );
}

#[actix_rt::test]
async fn campuspay_topology_keeps_a_tuned_policy_and_reset_policies_puts_the_codes_back() {
    let env = TestEnv::empty().await;
    let code = topology(env.config.settlement_shards);
    let mgmt = env.mgmt().clone();
    let vhost = env.vhost.clone();
    let fee_max_length = || {
        let (m, v) = (mgmt.clone(), vhost.clone());
        async move {
            let policies = tokio::task::spawn_blocking(move || m.policies(&v))
                .await
                .unwrap()
                .unwrap();
            policies
                .iter()
                .find(|p| p["name"] == "campuspay-stage-fee")
                .and_then(|p| p["definition"]["max-length"].as_u64())
        }
    };
    let tuned = fee_policy_with_max_length(&code, &env.vhost, 7);
    let (m, v) = (mgmt.clone(), vhost.clone());
    tokio::task::spawn_blocking(move || m.put_policy(&v, &tuned))
        .await
        .unwrap()
        .unwrap();
    let run = |reset: bool| {
        let config = env.config.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"));
            cmd.arg("topology");
            if reset {
                cmd.arg("--reset-policies");
            }
            cmd.env("CAMPUSPAY_ENV", "development")
                .env("AMQP_URL", &config.amqp_url)
                .env("RABBITMQ_MANAGEMENT_URL", &config.management_url)
                .env("RUST_LOG", "error")
                .output()
                .expect("campuspay topology runs")
        })
    };
    let n = code.policies.len();
    let kept = run(false).await.unwrap();
    let out = String::from_utf8_lossy(&kept.stdout);
    assert!(kept.status.success(), "{kept:?}");
    assert!(
        out.contains(&format!("policies: 0 set, {n} kept as they are")),
        "{out}"
    );
    assert_eq!(fee_max_length().await, Some(7));
    let reset = run(true).await.unwrap();
    let out = String::from_utf8_lossy(&reset.stdout);
    assert!(reset.status.success(), "{reset:?}");
    assert!(out.contains(&format!("policies: {n} set, 0 kept")), "{out}");
    assert_eq!(fee_max_length().await, Some(1_000_000));
}
