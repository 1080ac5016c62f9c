//! The confirmation routes (`GET /v1/confirmations`, `POST /v1/confirmations/{id}/confirm`
//! and `/decline`) against `schemas/openapi.json`: every answer and error the real platform
//! gives validates against the document, the body schema file and its component. The
//! behaviour itself is tested in `confirm`.

use crate::helpers::*;
use crate::openapi::{check_answer, check_component, check_file, expect_error, openapi};
use campuspay::domain::{Identity, RequestId};
use serde_json::{json, Value};

#[actix_rt::test]
async fn the_confirmation_routes_and_their_errors_match_the_document() {
    use campuspay::db::{self, cards};
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("canteen-1", &["t1"]).await;
    let mut users = Vec::new();
    for u in ["x001", "y001"] {
        let user = env.card(u, Identity::External, "200.00").await;
        let (uu, key) = (user.clone(), env.config.keys.pin_hashes.expose().to_vec());
        db::run(&env.pool, move |c| {
            cards::set_pin_hash(c, &uu, &campuspay::tsm::pin_hash(&key, &uu, "135790"))
        })
        .await
        .unwrap()
        .unwrap();
        users.push(user);
    }
    let mut pos = env.pos("canteen-1", "t1").await;
    let codes = env.codes(&users[0]).await;
    let other_codes = env.codes(&users[1]).await;
    // Three payments above the password-free amount: two of x001, one of y001.
    let mut pending = Vec::new();
    for code in [&codes[0], &codes[1], &other_codes[0]] {
        let rid = RequestId::new_random();
        let r = pos.pay(rid, code, "80.00", WAIT).await.unwrap();
        assert_eq!(
            r.reason.map(|r| r.as_str()),
            Some("user_confirming"),
            "{r:?}"
        );
        pending.push((rid, r.transaction_id.unwrap().to_string()));
    }
    let phone = env.phone(&base, &users[0]);
    let other = env.phone(&base, &users[1]);
    let doc = openapi();
    let confirm = "/v1/confirmations/{id}/confirm";
    let decline = "/v1/confirmations/{id}/decline";
    let (p, d, ids) = (phone.clone(), doc.clone(), pending.clone());
    blocking(move || {
        let doc = &d;
        let (first, second, theirs) = (&ids[0].1, &ids[1].1, &ids[2].1);
        let listed = p.confirmations().unwrap();
        assert_eq!(listed.status, 200, "{listed:?}");
        check_answer(doc, "GET", "/v1/confirmations", &listed);
        check_file("http/confirmations.response.json", &listed.body);
        check_component(doc, "ConfirmationList", &listed.body);
        let listed: Vec<&str> = listed.body["confirmations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["transaction_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed,
            vec![second.as_str(), first.as_str()],
            "newest first, only mine"
        );

        // Errors, each documented for its route.
        let path = |id: &str| format!("/v1/confirmations/{id}/confirm");
        for body in [
            json!({}),
            json!({"pin": 135790}),
            json!({"pin": "135790", "x": 1}),
        ] {
            let a = p.call("POST", &path(first), Some(body)).unwrap();
            expect_error(doc, "POST", confirm, &a, 400, "invalid_body");
        }
        let a = p.call("POST", &path(first), Some(json!([]))).unwrap();
        expect_error(doc, "POST", confirm, &a, 400, "invalid_body");
        let a = p.confirm(first, "12345").unwrap();
        expect_error(doc, "POST", confirm, &a, 403, "pin_invalid");
        assert_eq!(a.body["tries_left"], Value::Null);
        let a = p.confirm(first, "000000").unwrap();
        expect_error(doc, "POST", confirm, &a, 403, "pin_invalid");
        assert_eq!(a.body["tries_left"], 4);
        for missing in [
            theirs.as_str(),
            "6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10",
            "nope",
        ] {
            let a = p.confirm(missing, "135790").unwrap();
            expect_error(doc, "POST", confirm, &a, 404, "not_found");
            let a = p.decline(missing).unwrap();
            expect_error(doc, "POST", decline, &a, 404, "not_found");
        }
        // y001 locks their PIN.
        for pin in ["000001", "000002", "000003", "000004"] {
            let a = other.confirm(theirs, pin).unwrap();
            expect_error(doc, "POST", confirm, &a, 403, "pin_invalid");
        }
        let a = other.confirm(theirs, "000005").unwrap();
        expect_error(doc, "POST", confirm, &a, 403, "pin_locked");
        assert!(a.body["locked_until"].is_string());

        // Confirm one, decline the other.
        let a = p.confirm(first, "135790").unwrap();
        assert_eq!(a.status, 202, "{a:?}");
        check_answer(doc, "POST", confirm, &a);
        check_file("http/confirmation.response.json", &a.body);
        check_component(doc, "ConfirmationAnswer", &a.body);
        let a = p.decline(second).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        check_answer(doc, "POST", decline, &a);
        check_file("http/confirmation.response.json", &a.body);
        check_component(doc, "ConfirmationAnswer", &a.body);
    })
    .await;

    // Once final: both routes answer 409 with where the payment stands.
    let (first_rid, first) = pending[0].clone();
    let (second_rid, second) = pending[1].clone();
    assert_eq!(pos.wait(first_rid, WAIT).await.unwrap().reason, None);
    assert_eq!(
        pos.wait(second_rid, WAIT)
            .await
            .unwrap()
            .reason
            .map(|r| r.as_str()),
        Some("user_declined")
    );
    blocking(move || {
        let a = phone.decline(&first).unwrap();
        expect_error(&doc, "POST", decline, &a, 409, "not_awaiting_confirmation");
        assert_eq!(
            (&a.body["status"], &a.body["reason"]),
            (&json!("approved"), &Value::Null)
        );
        let a = phone.confirm(&second, "135790").unwrap();
        expect_error(&doc, "POST", confirm, &a, 409, "not_awaiting_confirmation");
        assert_eq!(
            (&a.body["status"], &a.body["reason"]),
            (&json!("declined"), &json!("user_declined"))
        );
        let listed = phone.confirmations().unwrap();
        check_answer(&doc, "GET", "/v1/confirmations", &listed);
        assert_eq!(listed.body["confirmations"], json!([]));
    })
    .await;
}
