//! Forward scan (正扫) over HTTP for the three kinds of merchant QR code, with the result pushed
//! to the POS and to the phone's event stream; and every kind of bad input refused cleanly.

use crate::helpers::*;
use campuspay::domain::campus_qr::{decode_campus, encode_campus, MerchantQr};
use campuspay::domain::{Amount, Identity, MerchantId, RequestId, TerminalId, TxState};
use campuspay::sim::phone::{Answer, Phone};
use std::io::{BufRead, BufReader};
use std::time::Duration;

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

/// Opens the SSE stream and forwards each `data:` line of a `result` event. Returns once the
/// platform has subscribed this stream (its `: connected` comment arrived), so no result sent
/// afterwards is missed.
async fn sse(base: &str, token: &str) -> tokio::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let url = format!("{base}/v1/events");
    let auth = format!("Bearer {token}");
    std::thread::spawn(move || {
        let resp = ureq::get(&url)
            .set("authorization", &auth)
            .call()
            .expect("events stream");
        let mut lines = BufReader::new(resp.into_reader()).lines();
        let mut in_result = false;
        let mut connected_tx = Some(connected_tx);
        while let Some(Ok(line)) = lines.next() {
            if line == ": connected" {
                if let Some(c) = connected_tx.take() {
                    let _ = c.send(());
                }
            } else if line == "event: result" {
                in_result = true;
            } else if let (true, Some(data)) = (in_result, line.strip_prefix("data: ")) {
                in_result = false;
                if tx
                    .blocking_send(serde_json::from_str(data).unwrap())
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    tokio::time::timeout(WAIT, connected)
        .await
        .expect("the event stream connects in time")
        .expect("the event stream connects");
    rx
}

async fn pay_flow(phone: &Phone, qr: &str, amount: Option<&str>) -> (Answer, Answer, Answer) {
    let (p, q, a) = (phone.clone(), qr.to_owned(), amount.map(str::to_owned));
    blocking(move || {
        let order = p
            .create_order(&RequestId::new_random().to_string(), &q)
            .unwrap();
        assert_eq!(order.status, 201, "{order:?}");
        let id = order.body["order_id"].as_str().unwrap().to_owned();
        let paid = p.pay(&id, a.as_deref()).unwrap();
        let done = p.wait_final(&id, Duration::from_secs(20)).unwrap();
        (order, paid, done)
    })
    .await
}

#[actix_rt::test]
async fn all_three_kinds_pay_end_to_end_with_pos_and_sse_results() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("canteen", &["t1", "counter"]).await;
    env.fee(Identity::External, "0.10", None).await;
    let user = env.card("x001", Identity::External, "100.00").await;
    let phone = env.phone(&base, &user);
    let token = env.jwt.issue_cardholder(&user, 600, 1).unwrap();
    let mut events = sse(&base, &token).await;
    let mut till = env.pos("canteen", "t1").await;
    let mut counter = env.pos("canteen", "counter").await;

    // 1. Static, merchant only: the cardholder types the amount.
    let qr = static_qr("canteen", None, "First Canteen");
    let (order, _, done) = pay_flow(&phone, &qr, Some("10.00")).await;
    assert_eq!(order.body["merchant_name"], "Merchant canteen");
    assert_eq!(order.body["qr_kind"], "static_merchant");
    assert_eq!(order.body["fee_rate"], "0.1");
    assert_eq!(done.body["status"], "approved", "{done:?}");
    assert_eq!(done.body["fee"], "1.00");
    let r = counter
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("counter result")
        .0;
    assert_eq!(
        (r.status, r.mode.as_str()),
        (TxState::Approved, "forward_scan")
    );
    let pushed = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed["status"], "approved");
    assert_eq!(pushed["balance_after"], "89.00");
    assert_eq!(pushed["transaction_id"], order.body["order_id"]);

    // 2. Static with a terminal.
    let qr = static_qr("canteen", Some("t1"), "First Canteen");
    let (_, _, done) = pay_flow(&phone, &qr, Some("5.50")).await;
    assert_eq!(done.body["status"], "approved");
    let (r, raw) = till
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("till result");
    schema_check("result.v1", &raw);
    assert_eq!(
        (r.status, r.amount.unwrap().to_string()),
        (TxState::Approved, "5.50".into())
    );
    assert_eq!(
        tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap()["amount"],
        "5.50"
    );

    // 3. Dynamic: the POS asks the gateway for a code with the amount in it.
    let issued = till
        .request_dynamic_qr(RequestId::new_random(), "8.00", WAIT)
        .await
        .unwrap();
    let payload = issued.payload.clone().expect("a payload");
    assert!(matches!(
        decode_campus(&payload),
        Ok(MerchantQr::Dynamic { .. })
    ));
    let (order, _, done) = pay_flow(&phone, &payload, None).await;
    assert_eq!(order.body["amount"], "8.00");
    assert_eq!(order.body["fee"], "0.80");
    assert_eq!(done.body["status"], "approved");
    let r = till
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("till result")
        .0;
    assert_eq!(r.total.unwrap().to_string(), "8.80");

    // 10 + 1 + 5.50 + 0.55 + 8 + 0.80
    assert_eq!(env.balance(&user).await, money("74.15"));
    assert_eq!(
        env.account_balance("merchant", "canteen").await,
        money("23.50")
    );
    let me = blocking(move || phone.me().unwrap()).await;
    assert_eq!(me.body["balance"], "74.15");
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn bad_forward_scan_input_is_refused_and_moves_nothing() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("shop", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let other = env.card("s002", Identity::Student, "100.00").await;
    let phone = env.phone(&base, &user);
    let stranger = env.phone(&base, &other);
    let mut till = env.pos("shop", "t1").await;
    let good = static_qr("shop", Some("t1"), "Shop");

    let issued = till
        .request_dynamic_qr(RequestId::new_random(), "8.00", WAIT)
        .await
        .unwrap();
    let dynamic = issued.payload.unwrap();
    let expired = till
        .request_dynamic_qr(RequestId::new_random(), "3.00", WAIT)
        .await
        .unwrap();
    let expired = expired.payload.unwrap();
    env.sql(&format!(
        "UPDATE dynamic_qr_codes SET expires_at = now() - interval '1 second' WHERE payload = '{expired}'"
    ))
    .await;
    // A dynamic code with its amount changed and the CRC recomputed: only the signature and the
    // stored record can tell.
    let tampered = match decode_campus(&dynamic).unwrap() {
        MerchantQr::Dynamic {
            merchant_id,
            terminal_id,
            reference,
            signature,
            ..
        } => encode_campus(
            &MerchantQr::Dynamic {
                merchant_id,
                terminal_id,
                amount: Amount::parse("0.80").unwrap(),
                reference,
                signature,
            },
            "Shop",
        )
        .unwrap(),
        other => panic!("{other:?}"),
    };
    let bad_crc = format!("{}0000", &good[..good.len() - 4]);
    let unknown_merchant = static_qr("ghost", None, "Ghost");
    let unknown_terminal = static_qr("shop", Some("t9"), "Shop");

    let (p, s) = (phone.clone(), stranger.clone());
    let (g, d) = (good.clone(), dynamic.clone());
    let base2 = base.clone();
    blocking(move || {
        let create = |qr: &str| {
            p.create_order(&uuid::Uuid::new_v4().to_string(), qr)
                .unwrap()
        };
        let expect = |a: Answer, status: u16, code: &str| {
            assert_eq!((a.status, a.code()), (status, code), "{a:?}");
        };
        expect(create(&bad_crc), 400, "invalid_qr");
        expect(create(&tampered), 400, "invalid_qr");
        expect(create(&expired), 410, "qr_expired");
        expect(create(&unknown_merchant), 404, "unknown_merchant");
        expect(create(&unknown_terminal), 404, "unknown_terminal");
        expect(create("hello"), 400, "invalid_qr");
        expect(
            p.call("POST", "/v1/orders", Some(serde_json::json!({"qr": g})))
                .unwrap(),
            400,
            "invalid_body",
        );

        // Static code without an amount; then a bad amount.
        let order = create(&g);
        let id = order.body["order_id"].as_str().unwrap().to_owned();
        expect(p.pay(&id, None).unwrap(), 400, "amount_required");
        // A JSON array is not an object, even if serde could read a struct from it.
        let arr = p
            .call(
                "POST",
                &format!("/v1/orders/{id}/pay"),
                Some(serde_json::json!(["3.00"])),
            )
            .unwrap();
        expect(arr, 400, "invalid_body");
        let arr = p
            .call(
                "POST",
                "/v1/orders",
                Some(serde_json::json!([uuid::Uuid::new_v4().to_string(), g])),
            )
            .unwrap();
        expect(arr, 400, "invalid_body");
        expect(p.pay(&id, Some("1e3")).unwrap(), 400, "invalid_amount");
        expect(p.pay(&id, Some("0")).unwrap(), 400, "invalid_amount");
        // Someone else's order does not exist for them.
        expect(s.order(&id).unwrap(), 404, "not_found");
        expect(s.pay(&id, Some("1.00")).unwrap(), 404, "not_found");

        // Dynamic: a different amount is refused; the code can be used once only.
        let order = create(&d);
        let did = order.body["order_id"].as_str().unwrap().to_owned();
        expect(p.pay(&did, Some("9.00")).unwrap(), 400, "amount_mismatch");
        expect(
            s.create_order(&uuid::Uuid::new_v4().to_string(), &d)
                .unwrap(),
            409,
            "qr_used",
        );

        // No token, a forged token.
        let anon = Phone::new(&base2, "");
        expect(anon.me().unwrap(), 401, "unauthorized");
        let forged = campuspay::auth::JwtKeys::new(&campuspay::keys::Keys::derive(
            b"forged-forged-forged-forged-forged-xx",
            b"forged-forged-forged-forged-forged-xx",
        ))
        .issue_cardholder(&campuspay::domain::UserId::parse("s001").unwrap(), 600, 1)
        .unwrap();
        expect(
            Phone::new(&base2, &forged).me().unwrap(),
            401,
            "unauthorized",
        );
    })
    .await;

    assert_eq!(env.balance(&user).await, money("100.00"));
    assert_eq!(env.balance(&other).await, money("100.00"));
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM transactions").await, 0);
    assert_quiet(till.results()).await;
    assert!(env.verify().await.ok);
}
