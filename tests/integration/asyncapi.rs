//! The AMQP contract, schemas/asyncapi.json: a valid AsyncAPI 3.0.0 document (checked against
//! the official JSON Schema, vendored and pinned in schemas/vendor/), whose messages are the
//! ones the code reads and writes, each with its payload schema file; whose channels are the
//! exchanges, routing keys and queues the code declares and builds; and whose examples are
//! valid. Reads files only; needs no services.

use campuspay::broker::topology::{self, DEAD, DEAD_QUEUE, REQUESTS, RESULTS};
use campuspay::domain::{MerchantId, TerminalId, UserId};
use campuspay::messages::external::{pos_result_key, user_result_key, PosRoute};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The vendored schema's sha256 (schemas/vendor/README.md says where it comes from).
const ASYNCAPI_SCHEMA_SHA256: &str =
    "d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626";

fn path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Value {
    let p = path(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p} is not JSON: {e}"))
}

fn doc() -> Value {
    read_json("schemas/asyncapi.json")
}

/// Violations of `instance` against the AsyncAPI 3.0.0 JSON Schema.
fn asyncapi_violations(instance: &Value) -> Vec<String> {
    let schema = read_json("schemas/vendor/asyncapi-3.0.0.schema.json");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the AsyncAPI schema does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// Violations of `instance` against one of our message schemas (draft 2020-12).
fn payload_violations(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// Follows a local `#/…` reference.
fn resolve<'a>(doc: &'a Value, r: &str) -> &'a Value {
    let pointer = r
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("{r} is not local"));
    // JSON pointer: `~1` is `/`, `~0` is `~`; our keys use neither, but a `.` is fine.
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{r} does not resolve"))
}

/// Every `$ref` in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push((at.to_owned(), x.as_str().unwrap().to_owned()));
                } else {
                    refs(x, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The message types the code reads and writes: every `pub const …: &str = "<name>.v<N>";` of
/// src/messages/external.rs.
fn message_types_in_code() -> BTreeSet<String> {
    let text = std::fs::read_to_string(path("src/messages/external.rs")).unwrap();
    let found: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": &str = \""))
        .filter_map(|(_, v)| v.strip_suffix("\";"))
        .filter(|v| {
            v.rsplit_once(".v")
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok())
        })
        .map(str::to_owned)
        .collect();
    // The reader finds the constants (and did not silently find nothing).
    use campuspay::messages::external as x;
    for known in [
        x::SCAN_V1,
        x::QUERY_V1,
        x::REVERSAL_V1,
        x::DYNAMIC_QR_V1,
        x::RESULT_V1,
        x::QUERY_STATUS_V1,
        x::DYNAMIC_QR_ISSUED_V1,
    ] {
        assert!(found.contains(known), "{known} not found in {found:?}");
    }
    found
}

#[test]
fn the_vendored_asyncapi_schema_is_the_pinned_one_and_has_its_licence() {
    let bytes = std::fs::read(path("schemas/vendor/asyncapi-3.0.0.schema.json")).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        ASYNCAPI_SCHEMA_SHA256,
        "schemas/vendor/asyncapi-3.0.0.schema.json changed: update it only with its pin"
    );
    let readme = std::fs::read_to_string(path("schemas/vendor/README.md")).unwrap();
    assert!(readme.contains(ASYNCAPI_SCHEMA_SHA256));
    let licence = std::fs::read_to_string(path("schemas/vendor/asyncapi-specs.LICENSE")).unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
    assert!(std::path::Path::new(&path("schemas/vendor/asyncapi-specs.NOTICE")).exists());
}

#[test]
fn the_document_is_valid_asyncapi_3() {
    let d = doc();
    assert_eq!(d["asyncapi"], "3.0.0");
    let errors = asyncapi_violations(&d);
    assert!(errors.is_empty(), "schemas/asyncapi.json: {errors:#?}");
    // The validator does validate: an AsyncAPI 2 word, an unknown AMQP binding field and a
    // delivery mode AMQP does not have are each refused.
    let mut old = d.clone();
    old["operations"]["sendScan"]["action"] = json!("publish");
    let mut binding = d.clone();
    binding["channels"]["posScan"]["bindings"]["amqp"]["routingKey"] = json!("x");
    let mut mode = d.clone();
    mode["operations"]["sendScan"]["bindings"]["amqp"]["deliveryMode"] = json!(3);
    for (what, bad) in [
        ("action", old),
        ("binding", binding),
        ("deliveryMode", mode),
    ] {
        assert!(!asyncapi_violations(&bad).is_empty(), "{what} accepted");
    }
}

#[test]
fn every_reference_resolves_and_every_operation_uses_its_channels_messages() {
    let d = doc();
    let mut all = Vec::new();
    refs(&d, "", &mut all);
    assert!(all.len() > 50, "only {} references", all.len());
    for (at, r) in &all {
        if let Some(file) = r.strip_prefix("./") {
            assert!(
                std::path::Path::new(&path(&format!("schemas/{file}"))).exists(),
                "{at}: {r} does not exist"
            );
        } else {
            resolve(&d, r);
        }
    }
    for (id, op) in d["operations"].as_object().unwrap() {
        let channel = op["channel"]["$ref"].as_str().unwrap();
        for m in op["messages"].as_array().unwrap() {
            let m = m["$ref"].as_str().unwrap();
            assert!(
                m.starts_with(&format!("{channel}/messages/")),
                "{id}: {m} is not a message of {channel}"
            );
        }
        if let Some(reply) = op.get("reply") {
            let channel = reply["channel"]["$ref"].as_str().unwrap();
            for m in reply["messages"].as_array().unwrap() {
                assert!(m["$ref"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{channel}/messages/")));
            }
        }
    }
}

#[test]
fn every_message_the_code_reads_or_writes_is_documented_with_its_payload_schema() {
    let d = doc();
    let messages = d["components"]["messages"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (key, m) in messages {
        if key == "deadLetter" {
            // Any body: what could not be read.
            assert_eq!(m["payload"]["$ref"], "#/components/schemas/AnyBody");
            continue;
        }
        let name = m["name"].as_str().unwrap();
        documented.insert(name.to_owned());
        // The payload is the message's own schema file, and that file is about this type.
        let file = format!("./{name}.json");
        assert_eq!(m["payload"]["$ref"], json!(file), "{key}");
        let schema = read_json(&format!("schemas/{name}.json"));
        assert_eq!(schema["properties"]["type"]["const"], json!(name), "{key}");
        assert_eq!(m["contentType"], "application/json", "{key}");
        // Its examples are valid payloads (and headers).
        let examples = m["examples"].as_array().unwrap();
        assert!(!examples.is_empty(), "{key} has no examples");
        for ex in examples {
            let errors = payload_violations(&schema, &ex["payload"]);
            assert!(
                errors.is_empty(),
                "{key} example {}: {errors:?}",
                ex["name"]
            );
            if let Some(h) = m.get("headers") {
                let headers = resolve(&d, h["$ref"].as_str().unwrap()).clone();
                let errors = payload_violations(&headers, &ex["headers"]);
                assert!(errors.is_empty(), "{key} example headers: {errors:?}");
            }
        }
    }
    // Whatever the code gains (e.g. confirmation_request.v1) must be documented here, and
    // nothing here is unknown to the code.
    assert_eq!(documented, message_types_in_code());
    // The cardholder's copy is the one with the balance.
    let user = &messages["result.v1.cardholder"]["examples"];
    assert!(user
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["payload"]["balance_after"].is_string()));
    let pos = &messages["result.v1"]["examples"];
    assert!(pos
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["payload"].get("balance_after").is_none()));
}

#[test]
fn the_channels_are_the_exchanges_routing_keys_and_queues_of_the_code() {
    let d = doc();
    let channels = d["channels"].as_object().unwrap();
    let (m, t, u) = (
        MerchantId::parse("canteen-1").unwrap(),
        TerminalId::parse("t2").unwrap(),
        UserId::parse("s001").unwrap(),
    );
    let address = |c: &Value| {
        c["address"]
            .as_str()
            .unwrap()
            .replace("{merchant_id}", m.as_str())
            .replace("{terminal_id}", t.as_str())
            .replace("{user_id}", u.as_str())
    };
    let exchanges = topology::topology(topology::Shards::DEFAULT).exchanges;
    let declared = |name: &str| {
        exchanges
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no exchange {name} in the topology"))
            .kind
    };
    // The verbs the gateway binds (`pos.*.*.<verb>`) are the request channels.
    let bound: BTreeSet<String> = topology::topology(topology::Shards::DEFAULT)
        .bindings
        .iter()
        .filter(|b| b.exchange == REQUESTS)
        .map(|b| b.routing_key.rsplit('.').next().unwrap().to_owned())
        .collect();
    let mut verbs = BTreeSet::new();
    for (id, c) in channels {
        let amqp = &c["bindings"]["amqp"];
        assert_eq!(amqp["bindingVersion"], "0.3.0", "{id}");
        let addr = address(c);
        match amqp["is"].as_str().unwrap() {
            "routingKey" => {
                let ex = amqp["exchange"]["name"].as_str().unwrap();
                assert_eq!(amqp["exchange"]["type"], declared(ex), "{id}");
                assert_eq!(
                    (
                        &amqp["exchange"]["durable"],
                        &amqp["exchange"]["autoDelete"]
                    ),
                    (&json!(true), &json!(false)),
                    "{id}"
                );
                if ex == REQUESTS {
                    let route = PosRoute::parse(&addr).unwrap_or_else(|| panic!("{id}: {addr}"));
                    assert_eq!(route.result_key(), pos_result_key(&m, &t));
                    verbs.insert(route.verb);
                } else {
                    assert_eq!(ex, RESULTS, "{id}");
                    assert!(
                        addr == pos_result_key(&m, &t) || addr == user_result_key(&u),
                        "{id}: {addr}"
                    );
                }
            }
            "queue" => {
                let q = &amqp["queue"];
                assert_eq!(q["name"], c["address"], "{id}");
                assert_eq!(
                    (&q["durable"], &q["exclusive"], &q["autoDelete"]),
                    (&json!(true), &json!(false), &json!(false)),
                    "{id}"
                );
                assert!(
                    addr == pos_result_key(&m, &t)
                        || addr == user_result_key(&u)
                        || addr == DEAD_QUEUE,
                    "{id}: {addr}"
                );
            }
            other => panic!("{id}: {other}"),
        }
    }
    assert_eq!(verbs, bound, "request channels vs the gateway's bindings");
    assert_eq!(declared(DEAD), "topic");
    // The terminal's result queue carries what the terminal's result key carries.
    assert_eq!(
        channels["posResultQueue"]["messages"],
        channels["posResults"]["messages"]
    );
    // A cardholder has no queue of their own: the platform reads the routing key.
    assert!(channels.get("userResultQueue").is_none());
}

#[test]
fn a_terminal_publishes_as_itself_persistently_and_mandatory_with_its_token() {
    let d = doc();
    let mut sends = 0;
    for (id, op) in d["operations"].as_object().unwrap() {
        if op["action"] != "send" {
            assert_eq!(op["action"], "receive", "{id}");
            continue;
        }
        sends += 1;
        let amqp = &op["bindings"]["amqp"];
        assert_eq!(
            (&amqp["deliveryMode"], &amqp["mandatory"], &amqp["userId"]),
            (
                &json!(2),
                &json!(true),
                &json!("pos.{merchant_id}.{terminal_id}")
            ),
            "{id}"
        );
        assert_eq!(
            op["security"],
            json!([{"$ref": "#/components/securitySchemes/terminalToken"}]),
            "{id}"
        );
        assert_eq!(op["reply"]["channel"]["$ref"], "#/channels/posResultQueue");
        for m in op["messages"].as_array().unwrap() {
            let msg = resolve(
                &d,
                resolve(&d, m["$ref"].as_str().unwrap())["$ref"]
                    .as_str()
                    .unwrap(),
            );
            assert_eq!(
                msg["headers"]["$ref"], "#/components/schemas/RequestHeaders",
                "{id}"
            );
        }
    }
    assert_eq!(sends, 4, "scan, query, reversal, dynamic_qr");
    let scheme = &d["components"]["securitySchemes"]["terminalToken"];
    assert_eq!(
        (&scheme["name"], &scheme["in"]),
        (&json!("authorization"), &json!("header"))
    );
}
