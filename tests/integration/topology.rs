//! The topology in code, the committed `rabbitmq/definitions.json`, and what the broker holds
//! after `campuspay topology` all agree.

use crate::helpers::*;
use campuspay::broker::topology::{topology, Shards};
use serde_json::Value;
use std::collections::BTreeSet;

fn definitions_file() -> Value {
    let path = format!("{}/rabbitmq/definitions.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("definitions.json")).unwrap()
}

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
    // Stage queues are durable quorum queues.
    for q in live["queues"].as_array().unwrap() {
        let name = q["name"].as_str().unwrap();
        assert_eq!(q["durable"], true, "{name}");
        if name.starts_with("campuspay.") {
            assert_eq!(q["arguments"]["x-queue-type"], "quorum", "{name}");
        }
    }
}
