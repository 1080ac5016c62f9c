//! The back office's half of the HTTP contract (schemas/openapi.json, `/admin/v1`): every route
//! the platform registers — read from its source — is documented and nothing else is; every
//! back-office operation refuses other roles as documented; and an operator's real session,
//! through every operation and every refusal the document lists, answers with documented
//! statuses and bodies valid against the document's schemas.

use crate::helpers::*;
use crate::openapi::{check_answer, concrete, documented, openapi};
use campuspay::domain::{Identity, RequestId, UserId};
use campuspay::sim::phone::{Answer, Phone};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The body of each `fn routes(` in a source file, line comments dropped.
fn routes_bodies(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("fn routes(") {
        let after = &rest[i..];
        let open = after.find('{').expect("a function body");
        let mut depth = 0;
        let mut end = None;
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.expect("the body closes");
        out.push(after[open..=end].to_owned());
        rest = &after[end..];
    }
    out
}

/// A string literal at the start of `s` (after spaces): its contents and what follows.
fn literal(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let end = s.find('"')?;
    Some((&s[..end], &s[end + 1..]))
}

/// `web::get()` and friends at the start of `s` (after spaces).
fn method_at(s: &str) -> Option<String> {
    let s = s.trim_start().strip_prefix("web::")?;
    ["get", "post", "put", "patch", "delete"]
        .into_iter()
        .find(|m| s.starts_with(&format!("{m}()")))
        .map(str::to_ascii_uppercase)
}

/// (METHOD, path) of every route in an actix `routes` body: `web::scope("…")` prefixes the
/// `.route("…", web::m())` chained on it until the call that holds the scope closes;
/// `web::resource("…")` gives its path to the `.route(web::m())` chained on it.
fn routes_of(body: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    // (prefix or resource path, paren depth where it was opened)
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut resource: Option<(String, usize)> = None;
    let mut depth = 0usize;
    let mut i = 0;
    let prefix =
        |scopes: &[(String, usize)]| scopes.iter().map(|(p, _)| p.as_str()).collect::<String>();
    while i < body.len() {
        let rest = &body[i..];
        if let Some(args) = rest.strip_prefix("web::scope(") {
            let (p, _) = literal(args).expect("a scope with a literal path");
            scopes.push((p.to_owned(), depth));
        } else if let Some(args) = rest.strip_prefix("web::resource(") {
            let (p, _) = literal(args).expect("a resource with a literal path");
            resource = Some((format!("{}{p}", prefix(&scopes)), depth));
        } else if let Some(args) = rest.strip_prefix(".route(") {
            if let Some((p, after)) = literal(args) {
                let after = after
                    .trim_start()
                    .strip_prefix(',')
                    .expect("a method after the path");
                let m = method_at(after).expect("a web::<method>() route");
                found.push((m, format!("{}{p}", prefix(&scopes))));
            } else {
                let m = method_at(args).expect("a web::<method>() route");
                let (p, _) = resource.clone().expect(".route(web::m()) on a resource");
                found.push((m, p));
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            '"' => {
                // Skip the literal: its parentheses are not code.
                let end = rest[1..].find('"').expect("a closed string") + 1;
                i += end + 1;
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                scopes.retain(|(_, d)| *d <= depth);
                if resource.as_ref().is_some_and(|(_, d)| *d > depth) {
                    resource = None;
                }
            }
            _ => {}
        }
        i += c.len_utf8();
    }
    found
}

/// Every (METHOD, path) registered by a `fn routes` under src/platform.
fn registered() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/platform");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // The browser pages and the sign-in routes are not part of the API document (the
        // README lists them; tests/integration/sessions.rs and wallet.rs test them).
        let page_routes = ["pages.rs", "session.rs"]
            .iter()
            .any(|f| path.file_name().is_some_and(|n| n == *f));
        if path.extension().is_some_and(|e| e == "rs") && !page_routes {
            for body in routes_bodies(&std::fs::read_to_string(&path).unwrap()) {
                out.extend(routes_of(&body));
            }
        }
    }
    out
}

#[test]
fn the_route_reader_reads_scopes_resources_and_plain_routes() {
    let body = r#"{
        cfg.service(
            web::scope("/a")
                .route("/x", web::get().to(x))
                .service(web::resource("/r").app_data(Cfg::new(8 << 20)).route(web::post().to(r)))
                .route("/y/{id}", web::put().to(y)),
        )
        .route("/top", web::get().to(top))
        .configure(other);
    }"#;
    let got: BTreeSet<(String, String)> = routes_of(body).into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("GET", "/a/x"),
        ("POST", "/a/r"),
        ("PUT", "/a/y/{id}"),
        ("GET", "/top"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn every_route_the_platform_registers_is_documented_and_nothing_else_is() {
    let registered = registered();
    // The reader found the routes (and did not silently find nothing).
    for known in [
        ("GET", "/v1/me"),
        ("POST", "/admin/v1/subsidies"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            registered.contains(&(known.0.to_owned(), known.1.to_owned())),
            "{known:?} not found among {registered:?}"
        );
    }
    let doc = openapi();
    let documented: BTreeSet<(String, String)> = documented(&doc)
        .into_iter()
        .flat_map(|(t, ms)| ms.into_iter().map(move |m| (m, t.clone())))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "registered but not in schemas/openapi.json: {undocumented:?}; documented but not \
         registered: {unregistered:?}"
    );
}

/// The operator's session so far: each answer checked against the document and remembered.
struct Session {
    doc: Value,
    admin: Phone,
    base: String,
    token: String,
    seen: BTreeSet<(String, String, u16)>,
}

impl Session {
    /// Calls `path` (an instance of `template`), checks the answer against the document and
    /// that it has the expected status (and error code).
    fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        want: (u16, &str),
    ) -> Answer {
        let a = self.admin.call(method, path, body).unwrap();
        self.check(method, template, a, want)
    }

    fn check(&mut self, method: &str, template: &str, a: Answer, want: (u16, &str)) -> Answer {
        let code = if a.status >= 400 { a.code() } else { "" };
        assert_eq!((a.status, code), want, "{method} {template}: {a:?}");
        check_answer(&self.doc, method, template, &a);
        self.seen
            .insert((method.to_owned(), template.to_owned(), a.status));
        a
    }

    /// A GET whose success is not JSON (an image, a CSV file): its status and content type.
    fn raw(&mut self, template: &str, path: &str, content_type: &str) -> Vec<u8> {
        let resp = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(15))
            .build()
            .get(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), 200, "GET {path}");
        assert!(
            resp.header("content-type")
                .unwrap_or("")
                .starts_with(content_type),
            "GET {path}: {:?}",
            resp.header("content-type")
        );
        let op = &self.doc["paths"][template]["get"]["responses"]["200"]["content"];
        assert!(
            op[content_type].is_object(),
            "GET {template} documents no {content_type}"
        );
        self.seen.insert(("GET".into(), template.to_owned(), 200));
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
        body
    }

    /// A subsidy upload: the body is a CSV file, not JSON.
    fn upload(&mut self, query: &str, body: &[u8], want: (u16, &str)) -> Answer {
        let resp = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(15))
            .build()
            .post(&format!("{}/admin/v1/subsidies{query}", self.base))
            .set("authorization", &format!("Bearer {}", self.token))
            .set("content-type", "text/csv")
            .send_bytes(body);
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("subsidies: {e}"),
        };
        let status = resp.status();
        let body: Value = resp.into_json().expect("a JSON answer");
        self.check("POST", "/admin/v1/subsidies", Answer { status, body }, want)
    }
}

#[actix_rt::test]
async fn every_back_office_operation_refuses_other_roles_as_documented() {
    let mut env = TestEnv::empty().await;
    let base = env.start_platform().await;
    let doc = openapi();
    let cardholder = env.phone(&base, &UserId::parse("s001").unwrap());
    let terminal = Phone::new(
        &base,
        &env.jwt
            .issue_terminal(
                &campuspay::domain::MerchantId::parse("m1").unwrap(),
                &campuspay::domain::TerminalId::parse("t1").unwrap(),
                1,
            )
            .unwrap(),
    );
    blocking(move || {
        let mut n = 0;
        for (template, methods) in documented(&doc) {
            if !template.starts_with("/admin/") {
                continue;
            }
            for method in methods {
                for who in [&cardholder, &terminal] {
                    let a = who
                        .call(&method, &concrete(&template), Some(json!({})))
                        .unwrap();
                    assert_eq!(
                        (a.status, a.code()),
                        (403, "forbidden"),
                        "{method} {template}: {a:?}"
                    );
                    check_answer(&doc, &method, &template, &a);
                }
                n += 1;
            }
        }
        assert_eq!(n, 32, "the thirty-two /admin/v1 operations");
    })
    .await;
}

#[actix_rt::test]
async fn an_operators_session_answers_as_documented() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let codes = env.codes(&user).await;
    let mut pos = env.pos("m1", "t1").await;
    let paid = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    let tx = paid.transaction_id.unwrap().to_string();
    // Two requests nobody can answer: dead letters to list, replay and drop.
    for body in [&b"not json"[..], br#"{"type":"scan.v1"}"#] {
        pos.publish_raw(&pos.routing_key("scan"), body.to_vec(), None)
            .await
            .unwrap();
    }
    let token = env.jwt.issue_admin("ops", 600).unwrap();
    let admin = Phone::new(&base, &token);
    let probe = admin.clone();
    eventually("two dead letters", WAIT, Duration::from_millis(200), || {
        let probe = probe.clone();
        async move {
            let a =
                blocking(move || probe.call("GET", "/admin/v1/dead?limit=10", None).unwrap()).await;
            match a.body["letters"].as_array().map(Vec::len) {
                Some(2) => Ok(()),
                _ => Err(format!("{a:?}")),
            }
        }
    })
    .await;
    let mut s = Session {
        doc: openapi(),
        admin,
        base,
        token,
        seen: BTreeSet::new(),
    };
    let s = blocking(move || {
        let uuid = || uuid::Uuid::new_v4().to_string();
        // Broker views and reports.
        s.call("GET", "/admin/v1/queues", "/admin/v1/queues", None, (200, ""));
        let v = s.call("GET", "/admin/v1/verify", "/admin/v1/verify", None, (200, ""));
        assert_eq!(v.body["ok"], true, "{v:?}");
        s.call("GET", "/admin/v1/topology/check", "/admin/v1/topology/check", None, (200, ""));
        let t = "/admin/v1/reports/daily";
        s.call("GET", t, t, None, (200, ""));
        s.call("GET", t, &format!("{t}?date=2026-11-26"), None, (200, ""));
        s.call("GET", t, &format!("{t}?date=yesterday"), None, (400, "invalid_query"));

        // The console's views.
        let t = "/admin/v1/dashboard";
        let a = s.call("GET", t, t, None, (200, ""));
        assert_eq!(a.body["payments"]["approved"], 1, "{a:?}");
        s.call("GET", t, "/admin/v1/dashboard?minutes=0", None, (400, "invalid_query"));
        let t = "/admin/v1/merchants";
        let a = s.call("GET", t, t, None, (200, ""));
        assert_eq!(a.body["merchants"][0]["terminals"][0]["terminal_id"], "t1", "{a:?}");
        for (ext, ctype) in [("png", "image/png"), ("svg", "image/svg+xml")] {
            let t = format!("/admin/v1/merchants/{{id}}/qr.{ext}");
            let body = s.raw(&t, &format!("/admin/v1/merchants/m1/qr.{ext}?terminal=t1"), ctype);
            assert!(body.len() > 100);
            s.call("GET", &t, &format!("/admin/v1/merchants/m1/qr.{ext}?terminal=t%201"), None, (400, "invalid_query"));
            s.call("GET", &t, &format!("/admin/v1/merchants/m404/qr.{ext}"), None, (404, "not_found"));
        }
        let t = "/admin/v1/terminals/{merchant}/{terminal}/rotate";
        let a = s.call("POST", t, "/admin/v1/terminals/m1/t1/rotate", None, (200, ""));
        assert_eq!(a.body["token_version"], 2, "{a:?}");
        s.call("POST", t, "/admin/v1/terminals/m1/t9/rotate", None, (404, "not_found"));
        let t = "/admin/v1/cards";
        let a = s.call("GET", t, "/admin/v1/cards?q=s00", None, (200, ""));
        assert_eq!(a.body["cards"][0]["user_id"], "s001", "{a:?}");
        s.call("GET", t, "/admin/v1/cards?q=", None, (400, "invalid_query"));
        let t = "/admin/v1/cards/{user}/pin";
        s.call("PUT", t, "/admin/v1/cards/s001/pin", Some(json!({"pin": "135790"})), (200, ""));
        s.call("PUT", t, "/admin/v1/cards/s001/pin", Some(json!({"pin": "12"})), (400, "invalid_body"));
        s.call("PUT", t, "/admin/v1/cards/s404/pin", Some(json!({"pin": "135790"})), (404, "not_found"));
        let t = "/admin/v1/cards/{user}/pin/unlock";
        s.call("POST", t, "/admin/v1/cards/s001/pin/unlock", None, (200, ""));
        s.call("POST", t, "/admin/v1/cards/s404/pin/unlock", None, (404, "not_found"));
        let t = "/admin/v1/fee-rules";
        s.call("GET", t, t, None, (200, ""));
        let t = "/admin/v1/reports/daily.csv";
        let csv = s.raw(t, t, "text/csv");
        assert!(String::from_utf8(csv).unwrap().contains("m1"));
        s.call("GET", t, "/admin/v1/reports/daily.csv?date=yesterday", None, (400, "invalid_query"));

        // Cards.
        let t = "/admin/v1/cards/{user}";
        s.call("GET", t, "/admin/v1/cards/s001", None, (200, ""));
        s.call("GET", t, "/admin/v1/cards/s404", None, (404, "not_found"));
        let t = "/admin/v1/cards/{user}/topup";
        let top = |amount: &str| json!({"amount": amount, "request_id": uuid()});
        let a = s.call("POST", t, "/admin/v1/cards/s001/topup", Some(top("10.00")), (200, ""));
        assert_eq!(a.body["balance"], "55.00", "{a:?}");
        s.call("POST", t, "/admin/v1/cards/s001/topup", Some(top("1e3")), (400, "invalid_amount"));
        s.call("POST", t, "/admin/v1/cards/s001/topup", Some(json!({"amt": "1.00"})), (400, "invalid_body"));
        s.call("POST", t, "/admin/v1/cards/s404/topup", Some(top("1.00")), (404, "not_found"));
        let t = "/admin/v1/cards/{user}/limits";
        let a = s.call("PUT", t, "/admin/v1/cards/s001/limits", Some(json!({"per_txn": "200.00"})), (200, ""));
        assert_eq!(a.body["per_txn_limit"], "200.00", "{a:?}");
        s.call("PUT", t, "/admin/v1/cards/s001/limits", Some(json!({})), (200, ""));
        s.call("PUT", t, "/admin/v1/cards/s001/limits", Some(json!({"daily": "-1"})), (400, "invalid_amount"));
        s.call("PUT", t, "/admin/v1/cards/s404/limits", Some(json!({})), (404, "not_found"));
        for (t, p) in [("/admin/v1/cards/{user}/freeze", "freeze"), ("/admin/v1/cards/{user}/unfreeze", "unfreeze")] {
            s.call("POST", t, &format!("/admin/v1/cards/s001/{p}"), None, (200, ""));
            s.call("POST", t, &format!("/admin/v1/cards/s404/{p}"), None, (404, "not_found"));
        }
        let t = "/admin/v1/cards/{user}/sign-in-links";
        let a = s.call("POST", t, "/admin/v1/cards/s001/sign-in-links", None, (201, ""));
        assert!(a.body["url"].as_str().unwrap_or("").contains("/signin/"), "{a:?}");
        s.call("POST", t, "/admin/v1/cards/s001/sign-in-links", Some(json!({"ttl_secs": 5})), (400, "invalid_body"));
        s.call("POST", t, "/admin/v1/cards/s404/sign-in-links", None, (404, "not_found"));

        // Refunds.
        let t = "/admin/v1/refunds";
        let refund = |amount: &str| json!({"transaction_id": tx, "amount": amount, "request_id": uuid(), "reason": "wrong dish"});
        let a = s.call("POST", t, t, Some(refund("2.00")), (200, ""));
        assert_eq!(a.body["remaining"], "3.00", "{a:?}");
        s.call("POST", t, t, Some(refund("9.00")), (422, "rejected"));
        s.call("POST", t, t, Some(refund("1e3")), (400, "invalid_amount"));
        s.call("POST", t, t, Some(json!({"transaction_id": tx})), (400, "invalid_body"));
        s.call("POST", t, t, Some(json!({"transaction_id": uuid(), "request_id": uuid()})), (404, "not_found"));

        // Dead letters: list, replay one, drop the other (its record written, then removed).
        let t = "/admin/v1/dead";
        let dead = s.call("GET", t, "/admin/v1/dead?limit=10", None, (200, ""));
        s.call("GET", t, "/admin/v1/dead?limit=x", None, (400, "invalid_query"));
        let ids: Vec<Value> = dead.body["letters"].as_array().unwrap().iter().map(|l| l["id"].clone()).collect();
        let t = "/admin/v1/dead/letters/{id}";
        let a = s.call("GET", t, &format!("/admin/v1/dead/letters/{}", ids[1].as_str().unwrap()), None, (200, ""));
        assert_eq!(a.body["copies"].as_array().map(Vec::len), Some(1), "{a:?}");
        s.call("GET", t, "/admin/v1/dead/letters/nope", None, (404, "not_found"));
        let t = "/admin/v1/dead/replay";
        let a = s.call("POST", t, t, Some(json!({"ids": [ids[0]]})), (200, ""));
        assert_eq!(a.body["replayed"].as_array().map(Vec::len), Some(1), "{a:?}");
        let a = s.call("POST", t, t, Some(json!({"ids": ["nope"]})), (200, ""));
        assert_eq!(a.body["not_found"], json!(["nope"]), "{a:?}");
        s.call("POST", t, t, Some(json!({})), (400, "invalid_body"));
        s.call("POST", t, t, Some(json!({"all": true, "stage": "billing"})), (400, "invalid_body"));
        let t = "/admin/v1/dead/drop";
        s.call("POST", t, t, Some(json!({"ids": [ids[1]], "reason": ""})), (400, "invalid_body"));
        let record = std::env::current_dir().unwrap().join("dead-letters-dropped.jsonl");
        let existed = record.exists();
        let a = s.call("POST", t, t, Some(json!({"ids": [ids[1]], "reason": "openapi test"})), (200, ""));
        assert_eq!(a.body["dropped"].as_array().map(Vec::len), Some(1), "{a:?}");
        let kept = std::fs::read_to_string(&record).unwrap();
        assert!(kept.contains(ids[1].as_str().unwrap()), "{kept}");
        if !existed {
            std::fs::remove_file(&record).unwrap();
        }

        // Purges.
        let t = "/admin/v1/queues/{name}/purge";
        s.call("POST", t, "/admin/v1/queues/pay.unrouted/purge?yes=true", None, (200, ""));
        s.call("POST", t, "/admin/v1/queues/pay.unrouted/purge", None, (409, "refused"));
        s.call("POST", t, "/admin/v1/queues/campuspay.fee/purge?yes=true", None, (409, "refused"));
        s.call("POST", t, "/admin/v1/queues/nope/purge?yes=true", None, (404, "not_found"));
        s.call("POST", t, "/admin/v1/queues/pay.unrouted/purge?yes=maybe", None, (400, "invalid_query"));

        // Setting up a merchant, its till, a cardholder and a fee.
        let t = "/admin/v1/merchants";
        s.call("POST", t, t, Some(json!({"id": "m9", "name": "Noodle Bar"})), (201, ""));
        s.call("POST", t, t, Some(json!({"id": "m9", "name": "Noodle Bar"})), (409, "conflict"));
        s.call("POST", t, t, Some(json!({"id": "m8", "name": ""})), (400, "invalid_body"));
        let t = "/admin/v1/terminals";
        let a = s.call("POST", t, t, Some(json!({"merchant_id": "m9", "terminal_id": "t1"})), (201, ""));
        assert_eq!(a.body["result_queue"], "pos.m9.t1", "{a:?}");
        let t2 = "/admin/v1/terminals/{merchant}/{terminal}/sign-in-links";
        let a = s.call("POST", t2, "/admin/v1/terminals/m9/t1/sign-in-links", None, (201, ""));
        assert_eq!((a.body["role"].as_str(), a.body["terminal_id"].as_str()), (Some("terminal"), Some("t1")), "{a:?}");
        s.call("POST", t2, "/admin/v1/terminals/m9/t1/sign-in-links", Some(json!({"ttl_secs": 86_401})), (400, "invalid_body"));
        s.call("POST", t2, "/admin/v1/terminals/m9/t404/sign-in-links", None, (404, "not_found"));
        s.call("POST", t2, "/admin/v1/terminals/m9/t%201/sign-in-links", None, (404, "not_found"));
        s.call("POST", t, t, Some(json!({"merchant_id": "m9", "terminal_id": "t1"})), (409, "conflict"));
        s.call("POST", t, t, Some(json!({"merchant_id": "nope", "terminal_id": "t1"})), (404, "not_found"));
        s.call("POST", t, t, Some(json!({"merchant_id": "m9", "terminal_id": "t 1"})), (400, "invalid_body"));
        let t = "/admin/v1/cards";
        let visitor = json!({"user_id": "x9", "name": "Visitor", "identity": "external"});
        s.call("POST", t, t, Some(visitor.clone()), (201, ""));
        s.call("POST", t, t, Some(visitor), (409, "conflict"));
        s.call("POST", t, t, Some(json!({"user_id": "x8", "name": "V", "identity": "alien"})), (400, "invalid_body"));
        let t = "/admin/v1/fee-rules";
        s.call("POST", t, t, Some(json!({"identity": "external", "rate": "0.15", "merchant_id": "m9"})), (201, ""));
        s.call("POST", t, t, Some(json!({"identity": "temporary", "rate": "0.1"})), (201, ""));
        s.call("POST", t, t, Some(json!({"identity": "external", "rate": "1.5"})), (400, "invalid_body"));
        s.call("POST", t, t, Some(json!({"identity": "external", "rate": "0.1", "merchant_id": "nope"})), (404, "not_found"));

        // A subsidy file.
        let a = s.upload("?batch=api-test", b"user_id,amount\ns001,10.00\nnobody,1.00\n", (200, ""));
        assert_eq!((a.body["credited"].as_u64(), a.body["rejected"][0]["line"].as_u64()), (Some(1), Some(3)), "{a:?}");
        s.upload("", b"user_id,amount\ns001,10.00\n", (400, "invalid_body"));
        s.upload("?batch=latin1", b"user_id,amount\n\xe9,1.00\n", (400, "invalid_body"));
        s
    })
    .await;

    // Every back-office operation was seen succeeding and refusing in each way the document
    // lists, except what this machine cannot cause: a role (the other test), an outage (503), a
    // failure (500).
    let mut missing = Vec::new();
    for (template, methods) in documented(&s.doc) {
        if !template.starts_with("/admin/") {
            continue;
        }
        for method in methods {
            let op = &s.doc["paths"][&template][method.to_ascii_lowercase()];
            for status in op["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap();
                if [401, 403, 500, 503].contains(&status) {
                    continue;
                }
                if !s.seen.contains(&(method.clone(), template.clone(), status)) {
                    missing.push(format!("{method} {template} {status}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "documented but never seen: {missing:?}");
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}
