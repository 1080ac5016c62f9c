//! The HTTP contract: `schemas/openapi.json` and the body schemas in `schemas/http/` checked
//! against each other and against the real payment platform. The document is served verbatim;
//! every route it lists exists (and needs a token), nothing else does; a real flow's answers and
//! errors validate against the document's response schemas and against the body schema files.

use crate::helpers::*;
use campuspay::domain::campus_qr::{decode_campus, encode_campus, MerchantQr};
use campuspay::domain::{
    CodePrefix, Identity, MerchantId, PaymentCode, RequestId, TerminalId, UserId,
};
use campuspay::sim::phone::{Answer, Phone};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// Each body schema file (under `schemas/`) and the component of the document that mirrors it.
const BODIES: [(&str, &str); 11] = [
    ("CreateOrder", "http/create_order.request.json"),
    ("PayOrder", "http/pay_order.request.json"),
    ("OrderView", "http/order.response.json"),
    ("IssuedCodes", "http/payment_codes.response.json"),
    ("CardView", "http/me.response.json"),
    ("ConfirmationList", "http/confirmations.response.json"),
    ("ConfirmPayment", "http/confirm.request.json"),
    ("ConfirmationAnswer", "http/confirmation.response.json"),
    ("Error", "http/error.json"),
    ("ResultV1", "result.v1.json"),
    ("ConfirmationRequestV1", "confirmation_request.v1.json"),
];

/// Methods probed on every documented path: the undocumented ones must not exist.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

pub(crate) fn schema_path(rel: &str) -> String {
    format!("{}/schemas/{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read_json(rel: &str) -> Value {
    let path = schema_path(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

pub(crate) fn openapi() -> Value {
    read_json("openapi.json")
}

pub(crate) fn violations(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

pub(crate) fn assert_valid(what: &str, schema: &Value, instance: &Value) {
    let errors = violations(schema, instance);
    assert!(
        errors.is_empty(),
        "{what}: {instance} violates the schema: {errors:?}"
    );
}

fn assert_invalid(what: &str, schema: &Value, instance: &Value) {
    assert!(
        !violations(schema, instance).is_empty(),
        "{what}: {instance} should violate the schema"
    );
}

/// Validates against a schema file under `schemas/` (like `schema_check`, for subfolders).
pub(crate) fn check_file(rel: &str, instance: &Value) {
    assert_valid(rel, &read_json(rel), instance);
}

/// A schema taken from the document, made standalone: its `#/components/...` refs resolve in a
/// copy of the document's components.
pub(crate) fn in_doc(doc: &Value, schema: &Value) -> Value {
    json!({"allOf": [schema], "components": doc["components"]})
}

pub(crate) fn component(doc: &Value, name: &str) -> Value {
    assert!(
        doc["components"]["schemas"][name].is_object(),
        "no component {name}"
    );
    in_doc(
        doc,
        &json!({"$ref": format!("#/components/schemas/{name}")}),
    )
}

pub(crate) fn check_component(doc: &Value, name: &str, instance: &Value) {
    assert_valid(name, &component(doc, name), instance);
}

pub(crate) fn operation<'a>(doc: &'a Value, method: &str, template: &str) -> &'a Value {
    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the document");
    op
}

/// What the document says of this answer: its status is listed for the operation and its body
/// validates against that response's schema. An error body also validates against error.json.
pub(crate) fn check_answer(doc: &Value, method: &str, template: &str, a: &Answer) {
    let what = format!("{method} {template} → {}", a.status);
    let response = &operation(doc, method, template)["responses"][a.status.to_string()];
    assert!(
        response.is_object(),
        "{what} is not documented (body {})",
        a.body
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{what} has no JSON schema");
    assert_valid(&what, &in_doc(doc, schema), &a.body);
    if a.status >= 400 {
        check_file("http/error.json", &a.body);
        check_component(doc, "Error", &a.body);
    }
}

pub(crate) fn expect_error(
    doc: &Value,
    method: &str,
    template: &str,
    a: &Answer,
    status: u16,
    code: &str,
) {
    assert_eq!(
        (a.status, a.code()),
        (status, code),
        "{method} {template}: {a:?}"
    );
    check_answer(doc, method, template, a);
}

/// A request without any Authorization header: (status, content type, body).
pub(crate) fn anonymous(base: &str, method: &str, path: &str) -> (u16, String, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build();
    let resp = match agent.request(method, &format!("{base}{path}")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let ctype = resp.header("content-type").unwrap_or("").to_owned();
    (status, ctype, resp.into_string().unwrap())
}

pub(crate) fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    }
}

/// Path templates and their documented methods (upper case).
pub(crate) fn documented(doc: &Value) -> Vec<(String, Vec<String>)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(template, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(|k| k.to_ascii_uppercase())
                .collect();
            (template.clone(), methods)
        })
        .collect()
}

/// A concrete path for a template: every `{param}` becomes a fresh UUID.
pub(crate) fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str(&rest[..open]);
        out.push_str(&uuid::Uuid::new_v4().to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn pascal(name: &str) -> String {
    name.split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// `#/$defs/x` → `#/components/schemas/X`, everywhere in `v`.
fn rewrite_refs(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x.as_str()) {
                        ("$ref", Some(r)) if r.starts_with("#/$defs/") => Value::String(format!(
                            "#/components/schemas/{}",
                            pascal(&r["#/$defs/".len()..])
                        )),
                        _ => rewrite_refs(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(rewrite_refs).collect()),
        other => other.clone(),
    }
}

fn static_qr(m: &str, t: Option<&str>, name: &str) -> String {
    encode_campus(
        &MerchantQr::Static {
            merchant_id: MerchantId::parse(m).unwrap(),
            terminal_id: t.map(|t| TerminalId::parse(t).unwrap()),
        },
        name,
    )
    .unwrap()
}

#[test]
fn http_body_schemas_compile_and_their_examples_are_valid() {
    let dir = schema_path("http");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.ends_with(".json"), "unexpected file {name} in {dir}");
        let rel = format!("http/{name}");
        let schema = read_json(&rel);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{rel}"
        );
        let examples = schema["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{rel} has no examples"));
        assert!(!examples.is_empty(), "{rel} has no examples");
        for ex in examples {
            assert_valid(&rel, &schema, ex);
        }
        found.insert(rel);
    }
    let expected: BTreeSet<String> = BODIES
        .iter()
        .filter(|(_, f)| f.starts_with("http/"))
        .map(|(_, f)| f.to_string())
        .collect();
    assert_eq!(found, expected);

    // The examples mean what they say: real payment codes, a real QR payload, a real UUID.
    for ex in read_json("http/payment_codes.response.json")["examples"]
        .as_array()
        .unwrap()
    {
        for code in ex["codes"].as_array().unwrap() {
            PaymentCode::parse(code.as_str().unwrap(), CodePrefix::DEFAULT)
                .unwrap_or_else(|e| panic!("example code {code}: {e}"));
        }
    }
    for ex in read_json("http/create_order.request.json")["examples"]
        .as_array()
        .unwrap()
    {
        RequestId::parse(ex["request_id"].as_str().unwrap()).unwrap();
        decode_campus(ex["qr"].as_str().unwrap()).expect("example QR payload decodes");
    }
}

#[test]
fn the_body_schemas_reject_what_the_server_never_sends_or_takes() {
    let order = read_json("http/order.response.json");
    let open = order["examples"][0].clone();
    let approved = order["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "approved")
        .unwrap()
        .clone();
    let with = |base: &Value, k: &str, v: Value| {
        let mut x = base.clone();
        x[k] = v;
        x
    };
    assert_invalid(
        "float amount",
        &order,
        &with(&approved, "amount", json!(10.0)),
    );
    assert_invalid(
        "one decimal",
        &order,
        &with(&approved, "amount", json!("10.0")),
    );
    assert_invalid("no reason field", &order, &{
        let mut x = approved.clone();
        x.as_object_mut().unwrap().remove("reason");
        x
    });
    assert_invalid("extra field", &order, &with(&open, "extra", json!(1)));
    assert_invalid(
        "open with a fee",
        &order,
        &with(&open, "fee", json!("1.00")),
    );
    assert_invalid("approved with a reason", &order, &{
        with(&approved, "reason", json!("code_used"))
    });
    assert_invalid("offset time", &order, &{
        with(&open, "created_at", json!("2026-11-26T12:12:40+08:00"))
    });

    let create = read_json("http/create_order.request.json");
    let body = create["examples"][0].clone();
    assert_invalid(
        "unknown field",
        &create,
        &with(&body, "amount", json!("1.00")),
    );
    assert_invalid(
        "missing qr",
        &create,
        &json!({"request_id": body["request_id"]}),
    );

    let pay = read_json("http/pay_order.request.json");
    assert_valid("no amount", &pay, &json!({}));
    assert_valid("null amount", &pay, &json!({"amount": null}));
    for ok in ["12", "12.5", "12.50", "0.01", "0.5", "100000", "100000.00"] {
        assert_valid(ok, &pay, &json!({ "amount": ok }));
    }
    for bad in [
        json!({"amount": 12.5}),
        json!({"amount": "0"}),
        json!({"amount": "0.00"}),
        json!({"amount": "012"}),
        json!({"amount": "1e3"}),
        json!({"amount": "100000.01"}),
        json!({"amount": "1.234"}),
        json!({"amount": "1.00", "tip": "1"}),
    ] {
        assert_invalid("bad pay body", &pay, &bad);
    }

    let codes = read_json("http/payment_codes.response.json");
    let mut nine = codes["examples"][0].clone();
    nine["codes"].as_array_mut().unwrap().pop();
    assert_invalid("nine codes", &codes, &nine);

    // The document's schemas are just as strict (and its refs resolve).
    let doc = openapi();
    assert_invalid(
        "OrderView",
        &component(&doc, "OrderView"),
        &with(&approved, "amount", json!(10.0)),
    );
    assert_valid("OrderView", &component(&doc, "OrderView"), &approved);
    let bad_request = &operation(&doc, "POST", "/v1/orders")["responses"]["400"]["content"]
        ["application/json"]["schema"];
    assert_valid(
        "400 invalid_qr",
        &in_doc(&doc, bad_request),
        &json!({"code": "invalid_qr", "message": "x"}),
    );
    assert_invalid(
        "400 with a 409 code",
        &in_doc(&doc, bad_request),
        &json!({"code": "qr_used", "message": "x"}),
    );

    let error = read_json("http/error.json");
    assert_invalid(
        "unknown code",
        &error,
        &json!({"code": "oops", "message": "x"}),
    );
    assert_invalid("no message", &error, &json!({"code": "not_found"}));
}

#[test]
fn the_document_mirrors_the_body_schemas_and_its_examples_are_valid() {
    let doc = openapi();
    assert_eq!(
        campuspay::platform::OPENAPI,
        std::fs::read_to_string(schema_path("openapi.json")).unwrap(),
        "the binary serves another document than schemas/openapi.json"
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));

    // Components are the body schema files with their $defs hoisted into components of their own.
    let components = doc["components"]["schemas"].as_object().unwrap();
    let mut mirrored = BTreeSet::new();
    for (name, rel) in BODIES {
        let file = read_json(rel);
        let mut main = file.as_object().unwrap().clone();
        for k in ["$schema", "$id", "$defs"] {
            main.remove(k);
        }
        assert_eq!(
            components[name],
            rewrite_refs(&Value::Object(main)),
            "component {name} differs from schemas/{rel}"
        );
        mirrored.insert(name.to_owned());
        if let Some(defs) = file["$defs"].as_object() {
            for (d, s) in defs {
                assert_eq!(
                    components[&pascal(d)],
                    rewrite_refs(s),
                    "component {} differs from $defs/{d} of schemas/{rel}",
                    pascal(d)
                );
                mirrored.insert(pascal(d));
            }
        }
    }
    // The back office's bodies live only in the document (`Admin…`); the phone's mirror files.
    let all: BTreeSet<String> = components
        .keys()
        .filter(|k| !k.starts_with("Admin"))
        .cloned()
        .collect();
    assert_eq!(all, mirrored, "components that mirror no schema file");

    // Security: a bearer JWT or the wallet page's session cookie everywhere but on the
    // document itself.
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );
    let cookie = &doc["components"]["securitySchemes"]["sessionCookie"];
    assert_eq!(
        (&cookie["type"], &cookie["in"], &cookie["name"]),
        (
            &json!("apiKey"),
            &json!("cookie"),
            &json!(campuspay::platform::session::COOKIE)
        )
    );
    assert_eq!(
        doc["security"],
        json!([{"bearerAuth": []}, {"sessionCookie": []}])
    );
    let scheme = &doc["components"]["securitySchemes"]["adminBearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );

    let error_codes: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut examples = 0;
    for (template, methods) in documented(&doc) {
        for method in methods {
            let op = operation(&doc, &method, &template);
            let what = format!("{method} {template}");
            assert!(op["operationId"].is_string(), "{what} has no operationId");
            let public = op["security"] == json!([]);
            assert_eq!(public, template == "/openapi.json", "{what} security");
            if !public {
                assert!(op["responses"]["401"].is_object(), "{what} lists no 401");
            }
            // The back office wants an operator's token and says what other roles get.
            if template.starts_with("/admin/") {
                assert_eq!(op["security"], json!([{"adminBearer": []}]), "{what}");
                assert!(op["responses"]["403"].is_object(), "{what} lists no 403");
            } else if template.starts_with("/pos/") {
                // The till's bridge: a till's browser session only.
                assert_eq!(op["security"], json!([{"sessionCookie": []}]), "{what}");
                assert!(op["responses"]["403"].is_object(), "{what} lists no 403");
            } else {
                assert!(op["security"].is_null() || public, "{what} security");
            }
            let mut media: Vec<(String, &Value)> = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                media.extend(c.iter().map(|(t, m)| (format!("{what} request {t}"), m)));
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{what} {status} has no description"
                );
                let content = response["content"].as_object();
                let content = content.unwrap_or_else(|| panic!("{what} {status} has no content"));
                for (t, m) in content {
                    media.push((format!("{what} {status} {t}"), m));
                }
                if status.starts_with('4') || status.starts_with('5') {
                    let codes = &response["content"]["application/json"]["schema"]["allOf"][1]
                        ["properties"]["code"]["enum"];
                    let codes = codes
                        .as_array()
                        .unwrap_or_else(|| panic!("{what} {status} names no codes"));
                    for c in codes {
                        assert!(
                            error_codes.contains(c.as_str().unwrap()),
                            "{what} {status}: {c} is not an Error code"
                        );
                    }
                }
            }
            // Every JSON body, request or response, has an example valid against its schema.
            for (at, m) in media
                .iter()
                .filter(|(at, _)| at.ends_with("application/json"))
            {
                let schema = in_doc(&doc, &m["schema"]);
                if template == "/openapi.json" {
                    assert_valid(at, &schema, &doc);
                    continue;
                }
                let named = m["examples"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{at} has no examples"));
                assert!(!named.is_empty(), "{at} has no examples");
                for (k, ex) in named {
                    assert_valid(&format!("{at} example {k}"), &schema, &ex["value"]);
                    examples += 1;
                }
            }
        }
    }
    assert!(examples >= 20, "only {examples} examples");

    // The SSE stream: its example frames carry valid result.v1 and confirmation_request.v1
    // objects, each under its event.
    let sse =
        &operation(&doc, "GET", "/v1/events")["responses"]["200"]["content"]["text/event-stream"];
    let events = [
        ("result", "result.v1", "ResultV1"),
        (
            "confirmation",
            "confirmation_request.v1",
            "ConfirmationRequestV1",
        ),
    ];
    for (event, _, component) in events {
        assert_eq!(
            sse["x-sse-events"][event]["data"]["$ref"],
            format!("#/components/schemas/{component}")
        );
    }
    let frames = sse["example"].as_str().expect("an SSE example");
    assert!(frames.starts_with(": connected\n\n"));
    let mut seen = BTreeSet::new();
    let mut lines = frames.lines();
    while let Some(line) = lines.next() {
        let Some(event) = line.strip_prefix("event: ") else {
            continue;
        };
        let (_, kind, component) = events
            .iter()
            .find(|(e, _, _)| *e == event)
            .unwrap_or_else(|| panic!("undocumented event {event}"));
        let d = lines
            .next()
            .and_then(|l| l.strip_prefix("data: "))
            .expect("a data line after the event line");
        let v: Value = serde_json::from_str(d).unwrap();
        schema_check(kind, d.as_bytes());
        check_component(&doc, component, &v);
        seen.insert(event);
    }
    assert_eq!(seen.len(), events.len(), "an example frame of each event");
}

#[actix_rt::test]
async fn every_documented_route_exists_and_nothing_else_does() {
    let mut env = TestEnv::empty().await;
    let base = env.start_platform().await;
    let doc = openapi();
    blocking(move || {
        // (a) The document is served verbatim.
        let (status, ctype, body) = anonymous(&base, "GET", "/openapi.json");
        assert_eq!(status, 200);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        assert_eq!(
            body,
            std::fs::read_to_string(schema_path("openapi.json")).unwrap()
        );

        // (b) Every documented operation exists and wants a token; no other method does.
        let mut probed = 0;
        for (template, methods) in documented(&doc) {
            let path = concrete(&template);
            for method in METHODS {
                let (status, _, body) = anonymous(&base, method, &path);
                let a = answer(status, &body);
                if !methods.iter().any(|m| m == method) {
                    expect_error_route(&a, method, &path);
                } else if template == "/openapi.json" {
                    assert_eq!(status, 200, "{method} {path}");
                } else {
                    expect_error(&doc, method, &template, &a, 401, "unauthorized");
                    probed += 1;
                }
            }
        }
        assert_eq!(
            probed,
            9 + 32 + 8,
            "the nine /v1 operations, the thirty-two /admin/v1 ones and the till's eight"
        );
        // Paths that are not in the document.
        for path in [
            "/",
            "/v1",
            "/v1/",
            "/v1/me/",
            "/v1/orders/",
            "/v1/order",
            "/v1/payment_codes",
            "/v1/orders/6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10/refund",
            "/v1/orders/6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10/pay/now",
            "/v1/confirmations/",
            "/v1/confirmations/6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10",
            "/v1/confirmations/6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10/cancel",
            "/v2/me",
            "/openapi.yaml",
            "/v1/openapi.json",
            "/admin/v1",
            "/admin/v1/",
            "/admin/v1/cards/s001/delete",
            "/admin/v1/dead/show",
            "/admin/v2/queues",
            "/admin/queues",
            "/metrics",
        ] {
            for method in ["GET", "POST"] {
                let (status, _, body) = anonymous(&base, method, path);
                expect_error_route(&answer(status, &body), method, path);
            }
        }
    })
    .await;
}

/// A route that does not exist: `404 not_found`, a valid error body.
pub(crate) fn expect_error_route(a: &Answer, method: &str, path: &str) {
    assert_eq!(
        (a.status, a.code()),
        (404, "not_found"),
        "{method} {path} is not in the document but answered {a:?}"
    );
    check_file("http/error.json", &a.body);
}

/// Opens the SSE stream; sends the content type first, then every line.
fn sse_lines(base: &str, token: &str) -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let url = format!("{base}/v1/events");
    let auth = format!("Bearer {token}");
    std::thread::spawn(move || {
        let resp = ureq::get(&url)
            .set("authorization", &auth)
            .call()
            .expect("events stream");
        let ctype = resp.header("content-type").unwrap_or("").to_owned();
        if tx.blocking_send(ctype).is_err() {
            return;
        }
        for line in BufReader::new(resp.into_reader()).lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next_line(rx: &mut tokio::sync::mpsc::Receiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an SSE line in time")
        .expect("the stream stays open")
}

#[actix_rt::test]
async fn a_real_flow_and_its_errors_match_the_document() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("canteen-1", &["t1"]).await;
    env.fee(Identity::External, "0.10", None).await;
    let user = env.card("x001", Identity::External, "100.00").await;
    let frozen = env.card("f001", Identity::Student, "0").await;
    env.sql("UPDATE cards SET status = 'frozen' WHERE user_id = 'f001'")
        .await;
    let phone = env.phone(&base, &user);
    let frozen = env.phone(&base, &frozen);
    let cardless = env.phone(&base, &UserId::parse("nobody").unwrap());
    let token = env.jwt.issue_cardholder(&user, 600, 1).unwrap();
    let mut events = sse_lines(&base, &token);
    let doc = openapi();

    // The stream: the documented content type and the `: connected` comment first.
    assert!(next_line(&mut events)
        .await
        .starts_with("text/event-stream"));
    assert_eq!(next_line(&mut events).await, ": connected");
    assert_eq!(next_line(&mut events).await, "");

    let (p, d, b) = (phone.clone(), doc.clone(), base.clone());
    let order_id = blocking(move || {
        let doc = &d;
        // Payment codes.
        let codes = p.payment_codes().unwrap();
        assert_eq!(codes.status, 201, "{codes:?}");
        check_answer(doc, "POST", "/v1/payment-codes", &codes);
        check_file("http/payment_codes.response.json", &codes.body);
        check_component(doc, "IssuedCodes", &codes.body);
        for c in codes.body["codes"].as_array().unwrap() {
            PaymentCode::parse(c.as_str().unwrap(), CodePrefix::DEFAULT).unwrap();
        }

        // An order from a printed merchant-only static code; a retry gets the same order.
        let qr = static_qr("canteen-1", None, "First Canteen");
        let rid = RequestId::new_random().to_string();
        let order = p.create_order(&rid, &qr).unwrap();
        assert_eq!(order.status, 201, "{order:?}");
        check_answer(doc, "POST", "/v1/orders", &order);
        check_file("http/order.response.json", &order.body);
        check_component(doc, "OrderView", &order.body);
        assert_eq!(
            (&order.body["status"], &order.body["amount"]),
            (&json!("open"), &Value::Null)
        );
        let again = p.create_order(&rid, &qr).unwrap();
        assert_eq!((again.status, &again.body), (201, &order.body));
        let id = order.body["order_id"].as_str().unwrap().to_owned();

        // Pay it, follow it until final, get it.
        let paid = p.pay(&id, Some("10.00")).unwrap();
        assert_eq!(paid.status, 202, "{paid:?}");
        check_answer(doc, "POST", "/v1/orders/{id}/pay", &paid);
        check_file("http/order.response.json", &paid.body);
        check_component(doc, "OrderView", &paid.body);
        let done = p.wait_final(&id, WAIT).unwrap();
        assert_eq!(done.body["status"], "approved", "{done:?}");
        let got = p.order(&id).unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        check_answer(doc, "GET", "/v1/orders/{id}", &got);
        check_file("http/order.response.json", &got.body);
        check_component(doc, "OrderView", &got.body);
        assert_eq!(
            (
                &got.body["fee"],
                &got.body["total"],
                &got.body["balance_after"]
            ),
            (&json!("1.00"), &json!("11.00"), &json!("89.00"))
        );

        // The card.
        let me = p.me().unwrap();
        assert_eq!(me.status, 200, "{me:?}");
        check_answer(doc, "GET", "/v1/me", &me);
        check_file("http/me.response.json", &me.body);
        check_component(doc, "CardView", &me.body);
        assert_eq!(me.body["balance"], "89.00");
        assert_eq!(me.body["recent"][0]["transaction_id"], json!(id));

        // (d) Errors: each one documented for its route, each body a valid error.
        let create = |qr: &str| p.create_order(&RequestId::new_random().to_string(), qr);
        let orders = "/v1/orders";
        expect_error(
            doc,
            "POST",
            orders,
            &create("hello").unwrap(),
            400,
            "invalid_qr",
        );
        let bad_crc = format!("{}0000", &qr[..qr.len() - 4]);
        expect_error(
            doc,
            "POST",
            orders,
            &create(&bad_crc).unwrap(),
            400,
            "invalid_qr",
        );
        let ghost = static_qr("ghost", None, "Ghost");
        expect_error(
            doc,
            "POST",
            orders,
            &create(&ghost).unwrap(),
            404,
            "unknown_merchant",
        );
        let t9 = static_qr("canteen-1", Some("t9"), "First Canteen");
        expect_error(
            doc,
            "POST",
            orders,
            &create(&t9).unwrap(),
            404,
            "unknown_terminal",
        );
        for body in [
            json!({"qr": qr}),
            json!({"request_id": "not-a-uuid", "qr": qr}),
            json!({"request_id": rid, "qr": qr, "amount": "1.00"}),
            json!({"request_id": rid, "qr": 42}),
            json!([]),
        ] {
            let a = p.call("POST", orders, Some(body)).unwrap();
            expect_error(doc, "POST", orders, &a, 400, "invalid_body");
        }

        let pay = "/v1/orders/{id}/pay";
        let t1 = static_qr("canteen-1", Some("t1"), "First Canteen");
        let second = create(&t1).unwrap();
        let sid = second.body["order_id"].as_str().unwrap().to_owned();
        expect_error(
            doc,
            "POST",
            pay,
            &p.pay(&sid, None).unwrap(),
            400,
            "amount_required",
        );
        let a = p.pay(&sid, Some("1e3")).unwrap();
        expect_error(doc, "POST", pay, &a, 400, "invalid_amount");
        let a = p.pay(&sid, Some("0")).unwrap();
        expect_error(doc, "POST", pay, &a, 400, "invalid_amount");
        assert_eq!(p.pay(&sid, Some("2.00")).unwrap().status, 202);
        let a = p.pay(&sid, Some("3.00")).unwrap();
        expect_error(doc, "POST", pay, &a, 409, "already_submitted");
        let nobody = uuid::Uuid::new_v4();
        let a = p.pay(&nobody.to_string(), Some("1.00")).unwrap();
        expect_error(doc, "POST", pay, &a, 404, "not_found");

        let get = "/v1/orders/{id}";
        for missing in [nobody.to_string(), "not-a-uuid".to_owned()] {
            let a = p.order(&missing).unwrap();
            expect_error(doc, "GET", get, &a, 404, "not_found");
        }

        let forged = campuspay::auth::JwtKeys::new(&campuspay::keys::Keys::derive(
            b"forged-forged-forged-forged-forged-xx",
            b"forged-forged-forged-forged-forged-xx",
        ))
        .issue_cardholder(&UserId::parse("x001").unwrap(), 600, 1)
        .unwrap();
        let a = Phone::new(&b, &forged).me().unwrap();
        expect_error(doc, "GET", "/v1/me", &a, 401, "unauthorized");

        // A frozen card gets no codes; a token for a user without a card finds nothing.
        let codes = "/v1/payment-codes";
        let a = frozen.payment_codes().unwrap();
        expect_error(doc, "POST", codes, &a, 403, "card_frozen");
        let a = cardless.payment_codes().unwrap();
        expect_error(doc, "POST", codes, &a, 404, "not_found");
        expect_error(
            doc,
            "GET",
            "/v1/me",
            &cardless.me().unwrap(),
            404,
            "not_found",
        );

        // With a valid token an unknown route is still 404, not 401.
        let a = p.call("GET", "/v1/orders", None).unwrap();
        expect_error_route(&a, "GET", "/v1/orders");
        id
    })
    .await;

    // The pushed result: `event: result`, then one `data:` line of result.v1 (the user copy).
    let mut data = None;
    while data.is_none() {
        let line = next_line(&mut events).await;
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        assert_eq!(line, "event: result");
        let d = next_line(&mut events).await;
        data = Some(
            d.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {d:?}"))
                .to_owned(),
        );
        assert_eq!(next_line(&mut events).await, "");
    }
    let data = data.unwrap();
    schema_check("result.v1", data.as_bytes());
    let pushed: Value = serde_json::from_str(&data).unwrap();
    check_component(&doc, "ResultV1", &pushed);
    assert_eq!(pushed["transaction_id"], json!(order_id));
    assert_eq!(pushed["balance_after"], "89.00");
}
