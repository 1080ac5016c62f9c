//! Every schema in `schemas/` compiles and its examples are valid; the examples a schema
//! rejects are rejected.

use crate::helpers::schema_check;
use serde_json::Value;

#[test]
fn every_schema_has_valid_examples() {
    let dir = format!("{}/schemas", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // openapi.json and asyncapi.json describe the HTTP and AMQP APIs; they are checked
        // against the code elsewhere (openapi.rs, asyncapi.rs).
        let name = path.file_name().and_then(|n| n.to_str());
        if path.extension().and_then(|e| e.to_str()) != Some("json")
            || name == Some("openapi.json")
            || name == Some("asyncapi.json")
        {
            continue;
        }
        let kind = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let examples = schema["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} has no examples"));
        assert!(!examples.is_empty(), "{kind} has no examples");
        for ex in examples {
            schema_check(&kind, ex.to_string().as_bytes());
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "expected scan.v1, result.v1, confirmation_request.v1 and the others"
    );
}

#[test]
#[should_panic(expected = "violates the schema")]
fn a_float_amount_violates_scan_v1() {
    schema_check(
        "scan.v1",
        br#"{"type":"scan.v1","request_id":"6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10","merchant_id":"m1","terminal_id":"t1","payment_code":"280000000000000000","amount":12.5,"sent_at":"2026-11-26T12:00:00Z"}"#,
    );
}

/// Every list of decline reasons in the schemas is `DeclineReason::ALL`, in its order; every
/// list of transaction states is `TxState::ALL`: the contract and the code spell them once.
#[test]
fn the_schemas_list_every_reason_and_state_the_code_has() {
    use campuspay::domain::{DeclineReason, TxState};
    let read = |rel: &str| -> Value {
        let path = format!("{}/schemas/{rel}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let reasons: Vec<String> = DeclineReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    for rel in [
        "result.v1.json",
        "query_status.v1.json",
        "dynamic_qr_issued.v1.json",
        "http/order.response.json",
        "http/me.response.json",
        "http/error.json",
    ] {
        assert_eq!(
            names(&read(rel)["$defs"]["reason"]["enum"]),
            reasons,
            "{rel}"
        );
    }
    let openapi = read("openapi.json");
    assert_eq!(
        names(&openapi["components"]["schemas"]["Reason"]["enum"]),
        reasons
    );
    let states: Vec<String> = TxState::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(
        names(&read("http/me.response.json")["$defs"]["tx_summary"]["properties"]["state"]["enum"]),
        states
    );
    // result.v1 has the states the wire has, `pending` for one awaiting confirmation.
    let wire: Vec<String> = TxState::ALL
        .iter()
        .filter_map(|s| campuspay::messages::external::result_status::name(*s))
        .map(str::to_owned)
        .collect();
    let mut listed = names(&read("result.v1.json")["properties"]["status"]["enum"]);
    listed.sort();
    let mut wire_sorted = wire.clone();
    wire_sorted.sort();
    assert_eq!(listed, wire_sorted);
}

#[test]
#[should_panic(expected = "violates the schema")]
fn a_pending_result_without_user_confirming_violates_result_v1() {
    schema_check(
        "result.v1",
        br#"{"type":"result.v1","request_id":"3b0f5f0e-8f5c-4a5e-9d83-41d3a8b0c6a7","transaction_id":"5d3c2b8e-7c41-4f0a-b1d6-2f7e9a4c8b13","mode":"reverse_scan","status":"pending","reason":"pin_required","merchant_id":"canteen-1","terminal_id":"t2","user_id":"x001","amount":"80.00","fee":"8.00","total":"88.00","processed_at":"2026-11-26T04:20:01.125904Z"}"#,
    );
}

#[test]
#[should_panic(expected = "violates the schema")]
fn a_pending_result_with_a_balance_violates_result_v1() {
    schema_check(
        "result.v1",
        br#"{"type":"result.v1","request_id":"3b0f5f0e-8f5c-4a5e-9d83-41d3a8b0c6a7","transaction_id":"5d3c2b8e-7c41-4f0a-b1d6-2f7e9a4c8b13","mode":"reverse_scan","status":"pending","reason":"user_confirming","merchant_id":"canteen-1","terminal_id":"t2","user_id":"x001","amount":"80.00","fee":"8.00","total":"88.00","processed_at":"2026-11-26T04:20:01.125904Z","balance_after":"12.00"}"#,
    );
}

#[test]
#[should_panic(expected = "violates the schema")]
fn a_confirmation_request_without_a_deadline_violates_its_schema() {
    schema_check(
        "confirmation_request.v1",
        br#"{"type":"confirmation_request.v1","transaction_id":"5d3c2b8e-7c41-4f0a-b1d6-2f7e9a4c8b13","request_id":"3b0f5f0e-8f5c-4a5e-9d83-41d3a8b0c6a7","merchant_id":"canteen-1","merchant_name":"First Canteen","terminal_id":"t2","amount":"80.00","fee":"8.00","total":"88.00"}"#,
    );
}
