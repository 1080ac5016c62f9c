//! Hostile input: a table of malformed, oversized and sneaky messages, and every way a JWT can
//! be wrong. Each is dead-lettered (with its reason) or declined (with its reason), nothing
//! changes a balance, and valid payments keep being served throughout.

use crate::helpers::*;
use campuspay::auth::{Claims, JwtKeys, Role};
use campuspay::domain::{DeclineReason, Identity, RequestId, TxState};
use campuspay::sim::pos::Pos;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
enum Expect {
    Dead(&'static str),
    Declined(DeclineReason),
}
use Expect::*;

fn scan(rid: &str, code: &str) -> Value {
    json!({
        "type": "scan.v1", "request_id": rid, "merchant_id": "m1", "terminal_id": "TERMINAL",
        "payment_code": code, "amount": "1.00", "sent_at": "2026-11-26T12:00:00+08:00"
    })
}

fn with(mut v: Value, key: &str, value: Value) -> String {
    v[key] = value;
    v.to_string()
}

fn without(mut v: Value, key: &str) -> String {
    v.as_object_mut().unwrap().remove(key);
    v.to_string()
}

/// (description, body, expectation). `TERMINAL` is replaced by the till that sends it.
fn table(rid: &str, code: &str) -> Vec<(&'static str, String, Expect)> {
    let base = || scan(rid, code);
    let luhn_wrong = {
        let last = code.as_bytes()[17] - b'0';
        format!("{}{}", &code[..17], (last + 1) % 10)
    };
    vec![
        ("not JSON", "this is not json".into(), Dead("not_json")),
        (
            "truncated JSON",
            base().to_string()[..40].to_string(),
            Dead("not_json"),
        ),
        ("a JSON array", "[1,2,3]".into(), Dead("not_json")),
        ("a JSON string", "\"scan.v1\"".into(), Dead("not_json")),
        ("JSON null", "null".into(), Dead("not_json")),
        (
            "invalid UTF-8",
            String::from_utf8_lossy(&[0xff, 0xfe, b'{']).into_owned(),
            Dead("not_json"),
        ),
        (
            "nested 200 deep",
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
            Dead("not_json"),
        ),
        ("empty object", "{}".into(), Dead("unknown_type")),
        ("no type", without(base(), "type"), Dead("unknown_type")),
        (
            "wrong version",
            with(base(), "type", json!("scan.v2")),
            Dead("unknown_type"),
        ),
        (
            "type in capitals",
            with(base(), "type", json!("SCAN.V1")),
            Dead("unknown_type"),
        ),
        (
            "type is a number",
            with(base(), "type", json!(1)),
            Dead("unknown_type"),
        ),
        (
            "a query on the scan key",
            with(base(), "type", json!("query.v1")),
            Dead("unknown_type"),
        ),
        (
            "no request id",
            without(base(), "request_id"),
            Dead("no_request_id"),
        ),
        (
            "request id not a UUID",
            with(base(), "request_id", json!("abc")),
            Dead("no_request_id"),
        ),
        (
            "request id a number",
            with(base(), "request_id", json!(123)),
            Dead("no_request_id"),
        ),
        (
            "SQL in request id",
            with(
                base(),
                "request_id",
                json!("'; DROP TABLE transactions; --"),
            ),
            Dead("no_request_id"),
        ),
        (
            "amount -1",
            with(base(), "amount", json!("-1")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount 0",
            with(base(), "amount", json!("0")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount 0.001",
            with(base(), "amount", json!("0.001")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount 1e3",
            with(base(), "amount", json!("1e3")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount NaN",
            with(base(), "amount", json!("NaN")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount with a space",
            with(base(), "amount", json!(" 1.00")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "full-width digits",
            with(base(), "amount", json!("１２.００")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "huge amount",
            with(base(), "amount", json!("99999999999999999999999")),
            Declined(DeclineReason::InvalidAmount),
        ),
        (
            "amount a float",
            with(base(), "amount", json!(12.5)),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "amount null",
            with(base(), "amount", Value::Null),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "no amount",
            without(base(), "amount"),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "an extra field",
            with(base(), "tip", json!("1.00")),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "a duplicate key",
            base().to_string().replacen('}', r#","amount":"2.00"}"#, 1),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "merchant id a number",
            with(base(), "merchant_id", json!(7)),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "sent_at not a time",
            with(base(), "sent_at", json!("yesterday")),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "no sent_at",
            without(base(), "sent_at"),
            Declined(DeclineReason::InvalidMessage),
        ),
        (
            "code with letters",
            with(base(), "payment_code", json!("88abcdefghijklmnop")),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "code with a wrong check digit",
            with(base(), "payment_code", json!(luhn_wrong)),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "code of 17 digits",
            with(base(), "payment_code", json!(&code[..17])),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "code of 19 digits",
            with(base(), "payment_code", json!(format!("{code}0"))),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "code with another prefix",
            with(base(), "payment_code", json!(format!("29{}", &code[2..]))),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "SQL in the code",
            with(base(), "payment_code", json!("880000' OR '1'='1")),
            Declined(DeclineReason::UnknownCode),
        ),
        (
            "NUL in merchant id",
            with(base(), "merchant_id", json!("m1\u{0}")),
            Declined(DeclineReason::Unauthorized),
        ),
        (
            "newline in terminal id",
            with(base(), "terminal_id", json!("TERMINAL\n")),
            Declined(DeclineReason::Unauthorized),
        ),
        (
            "SQL in merchant id",
            with(base(), "merchant_id", json!("m1' OR 1=1 --")),
            Declined(DeclineReason::Unauthorized),
        ),
        ("oversized garbage", "x".repeat(20_000), Dead("too_large")),
        (
            "oversized valid JSON",
            with(base(), "padding", json!("p".repeat(17_000))),
            Dead("too_large"),
        ),
    ]
}

async fn dead_letters(env: &TestEnv, n: usize) -> Vec<String> {
    take_dead_letters(env, n, WAIT)
        .await
        .iter()
        .map(|d| header(d, "x-campuspay-reason").expect("a reason header"))
        .collect()
}

#[actix_rt::test]
async fn forty_hostile_messages_change_nothing_and_valid_payments_go_on() {
    let env = TestEnv::start().await;
    let tills: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = tills.iter().map(String::as_str).collect();
    env.merchant("m1", &refs).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let codes = env.codes(&user).await;
    let mut poss: Vec<Pos> = Vec::new();
    for t in &tills {
        poss.push(env.pos("m1", t).await);
    }
    let n = table("", &codes[9]).len();
    assert!(n >= 40, "{n} cases");
    let mut expected_dead = Vec::new();
    let mut valid_paid = 0;
    for i in 0..n {
        let pos = &mut poss[i % tills.len()];
        // Each case its own request id, so every decline is told apart.
        let rid = RequestId::new_random();
        let (what, body, expect) = table(&rid.to_string(), &codes[9]).swap_remove(i);
        let body = body.replace("TERMINAL", pos.terminal.as_str());
        pos.publish_raw(&pos.routing_key("scan"), body.into_bytes(), None)
            .await
            .unwrap();
        match expect {
            Dead(reason) => expected_dead.push(reason.to_string()),
            Declined(reason) => {
                let r = pos
                    .results()
                    .next_raw(WAIT)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("{what}: no result"))
                    .0;
                assert_eq!(
                    (r.status, r.reason),
                    (TxState::Declined, Some(reason)),
                    "{what}"
                );
            }
        }
        if i % 10 == 9 {
            let ok = pos
                .pay(RequestId::new_random(), &codes[valid_paid], "2.00", WAIT)
                .await
                .unwrap();
            assert_eq!(ok.status, TxState::Approved, "valid payment after case {i}");
            valid_paid += 1;
        }
    }
    let mut got = dead_letters(&env, expected_dead.len()).await;
    got.sort();
    expected_dead.sort();
    assert_eq!(got, expected_dead);
    for pos in poss.iter_mut() {
        assert_quiet(pos.results()).await;
    }
    let spent = rust_decimal::Decimal::from(2 * valid_paid as i64);
    assert_eq!(
        env.balance(&user).await.value(),
        rust_decimal::Decimal::from(100) - spent
    );
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM transactions").await,
        valid_paid as i64
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn every_bad_token_is_declined_unauthorized() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1", "t2"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let codes = env.codes(&user).await;
    let mut pos = env.pos("m1", "t1").await;
    let secret = env.config.keys.terminal_tokens.expose().to_vec();
    let now = chrono::Utc::now().timestamp();
    let claims = |role: Role, terminal: &str, exp: i64| Claims {
        iss: campuspay::auth::ISSUER.into(),
        aud: Role::Terminal.audience().into(),
        sub: "x".into(),
        role,
        merchant_id: Some("m1".into()),
        terminal_id: Some(terminal.into()),
        user_id: None,
        ver: 1,
        iat: now,
        exp,
    };
    let sign = |c: &Claims, alg: jsonwebtoken::Algorithm, key: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            c,
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(serde_json::to_value(claims(Role::Terminal, "t1", now + 600)).unwrap())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("not a bearer", Some("Basic Z3Vlc3Q6Z3Vlc3Q=".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "forged signature",
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(Role::Terminal, "t1", now + 600),
                    jsonwebtoken::Algorithm::HS256,
                    b"another-secret-another-secret-xx"
                )
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(Role::Terminal, "t1", now - 3600),
                    jsonwebtoken::Algorithm::HS256,
                    &secret
                )
            )),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "wrong algorithm (HS512)",
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(Role::Terminal, "t1", now + 600),
                    jsonwebtoken::Algorithm::HS512,
                    &secret
                )
            )),
        ),
        (
            "wrong role",
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(Role::Cardholder, "t1", now + 600),
                    jsonwebtoken::Algorithm::HS256,
                    &secret
                )
            )),
        ),
        (
            "another terminal's token",
            Some(format!(
                "Bearer {}",
                JwtKeys::new(&env.config.keys)
                    .issue_terminal(
                        &pos.merchant,
                        &campuspay::domain::TerminalId::parse("t2").unwrap(),
                        1
                    )
                    .unwrap()
            )),
        ),
    ];
    for (what, header) in cases {
        let rid = RequestId::new_random();
        pos.publish_raw(
            &pos.routing_key("scan"),
            pos.scan_body(rid, &codes[0], "5.00"),
            Some(header),
        )
        .await
        .unwrap();
        let r = pos.wait(rid, WAIT).await.unwrap();
        assert_eq!(
            (r.status, r.reason),
            (TxState::Declined, Some(DeclineReason::Unauthorized)),
            "{what}"
        );
    }
    // A valid token of t2 used on t1's routing key with a body naming t2: the route rules.
    let mut t2 = env.pos("m1", "t2").await;
    let rid = RequestId::new_random();
    let body = String::from_utf8(t2.scan_body(rid, &codes[0], "5.00")).unwrap();
    t2.publish_raw("pos.m1.t1.scan", body.into_bytes(), None)
        .await
        .unwrap();
    let r = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(r.reason, Some(DeclineReason::Unauthorized));
    assert_quiet(t2.results()).await;
    assert_eq!(env.balance(&user).await, money("100.00"));
    // The code was never spent.
    assert_eq!(
        pos.pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
            .await
            .unwrap()
            .status,
        TxState::Approved
    );
}

#[actix_rt::test]
async fn a_guessing_terminal_is_throttled() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1", "t2"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let codes = env.codes(&user).await;
    let mut guesser = env.pos("m1", "t1").await;
    let mut honest = env.pos("m1", "t2").await;
    let mut rng = rand::rngs::OsRng;
    let mut reasons = Vec::new();
    for _ in 0..(campuspay::db::validation::FAILURE_LIMIT + 3) {
        let guess = campuspay::domain::PaymentCode::generate(&mut rng, env.config.code_prefix);
        let r = guesser
            .pay(RequestId::new_random(), guess.expose(), "1.00", WAIT)
            .await
            .unwrap();
        reasons.push(r.reason.unwrap());
    }
    let limit = campuspay::db::validation::FAILURE_LIMIT as usize;
    assert!(
        reasons[..limit]
            .iter()
            .all(|r| *r == DeclineReason::UnknownCode),
        "{reasons:?}"
    );
    assert!(
        reasons[limit..]
            .iter()
            .all(|r| *r == DeclineReason::RateLimited),
        "{reasons:?}"
    );
    // Even a real code is refused at the throttled terminal (no lookup is made there) …
    let r = guesser
        .pay(RequestId::new_random(), &codes[0], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::RateLimited));
    // … while other terminals are unaffected.
    let r = honest
        .pay(RequestId::new_random(), &codes[0], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
}
