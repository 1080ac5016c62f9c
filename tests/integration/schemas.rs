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
    assert!(checked >= 2, "expected at least scan.v1 and result.v1");
}

#[test]
#[should_panic(expected = "violates the schema")]
fn a_float_amount_violates_scan_v1() {
    schema_check(
        "scan.v1",
        br#"{"type":"scan.v1","request_id":"6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10","merchant_id":"m1","terminal_id":"t1","payment_code":"280000000000000000","amount":12.5,"sent_at":"2026-11-26T12:00:00Z"}"#,
    );
}
