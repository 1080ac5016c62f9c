//! Operating the system: freezing cards, limits across both scan directions, the PIN,
//! refunds, subsidies and a daily report that ties out to the ledger.

use crate::helpers::*;
use campuspay::db::{self, cards, refunds, report, subsidy, DbError};
use campuspay::domain::campus_qr::{encode_campus, MerchantQr};
use campuspay::domain::{
    Amount, DeclineReason, Identity, MerchantId, RequestId, TerminalId, TxState,
};
use std::time::Duration;

fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn static_qr(m: &str, t: &str) -> String {
    encode_campus(
        &MerchantQr::Static {
            merchant_id: MerchantId::parse(m).unwrap(),
            terminal_id: Some(TerminalId::parse(t).unwrap()),
        },
        "Shop",
    )
    .unwrap()
}

#[actix_rt::test]
async fn a_frozen_card_is_declined_and_its_codes_are_revoked() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let u = user.clone();
    let out = db::run(&env.pool, move |c| cards::freeze(c, &u))
        .await
        .unwrap();
    assert_eq!(out.codes_revoked, 10);
    let r = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::CardFrozen));
    // No new codes while frozen.
    assert!(campuspay::tsm::issue(
        &env.pool,
        env.config.code_key.expose(),
        &user,
        env.config.code_ttl
    )
    .await
    .is_err());
    let u = user.clone();
    db::run(&env.pool, move |c| cards::unfreeze(c, &u))
        .await
        .unwrap();
    let fresh = env.codes(&user).await;
    // A code issued before the freeze stays revoked; a new one pays.
    let r = pos
        .pay(RequestId::new_random(), &codes[1], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::CodeRevoked));
    let r = pos
        .pay(RequestId::new_random(), &fresh[0], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
    // Frozen between issuing and scanning: card_frozen.
    let u = user.clone();
    db::run(&env.pool, move |c| cards::freeze(c, &u))
        .await
        .unwrap();
    env.sql("UPDATE payment_codes SET state = 'unused' WHERE state = 'revoked'")
        .await;
    let r = pos
        .pay(RequestId::new_random(), &fresh[1], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::CardFrozen));
    assert_eq!(env.balance(&user).await, money("45.00"));
}

#[actix_rt::test]
async fn the_daily_limit_counts_both_scan_directions_and_the_pin_guards_big_payments() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform();
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "500.00").await;
    let u = user.clone();
    db::run(&env.pool, move |c| {
        cards::set_limits(
            c,
            &u,
            Some(amount("100.00")),
            Some(amount("60.00")),
            Some(amount("25.00")),
        )
    })
    .await
    .unwrap();
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    // Reverse scan above the password-free amount: pin_required. Above the per-transaction
    // limit: limit_exceeded.
    let r = pos
        .pay(RequestId::new_random(), &codes[0], "30.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::PinRequired));
    let r = pos
        .pay(RequestId::new_random(), &codes[1], "100.01", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::LimitExceeded));
    let r = pos
        .pay(RequestId::new_random(), &codes[2], "25.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);

    // Forward scan: 25 + 25 = 50 of the 60 daily; then 15 more is over the limit.
    let phone = env.phone(&base, &user);
    let qr = static_qr("m1", "t1");
    let key = env.config.code_key.expose().to_vec();
    let u = user.clone();
    db::run(&env.pool, move |c| {
        cards::set_pin_hash(c, &u, &campuspay::tsm::pin_hash(&key, &u, "135790"))
    })
    .await
    .unwrap();
    let (p, q) = (phone.clone(), qr.clone());
    let (first, big, over) = blocking(move || {
        let pay = |amount: &str, pin: Option<&str>| {
            let o = p
                .create_order(&uuid::Uuid::new_v4().to_string(), &q)
                .unwrap();
            let id = o.body["order_id"].as_str().unwrap().to_owned();
            let mut body = serde_json::json!({ "amount": amount });
            if let Some(pin) = pin {
                body["pin"] = serde_json::json!(pin);
            }
            let a = p
                .call("POST", &format!("/v1/orders/{id}/pay"), Some(body))
                .unwrap();
            (id, a)
        };
        let (id1, _) = pay("25.00", None);
        let first = p.wait_final(&id1, Duration::from_secs(20)).unwrap();
        // 26.00 is above the password-free 25.00: PIN needed, wrong PIN refused.
        let (_, no_pin) = pay("26.00", None);
        assert_eq!(
            (no_pin.status, no_pin.code()),
            (403, "pin_required"),
            "{no_pin:?}"
        );
        let (_, wrong) = pay("26.00", Some("000000"));
        assert_eq!(
            (wrong.status, wrong.code()),
            (403, "pin_invalid"),
            "{wrong:?}"
        );
        let (id2, _) = pay("10.00", None);
        let big = p.wait_final(&id2, Duration::from_secs(20)).unwrap();
        let (id3, _) = pay("10.01", Some("135790"));
        let over = p.wait_final(&id3, Duration::from_secs(20)).unwrap();
        (first, big, over)
    })
    .await;
    assert_eq!(first.body["status"], "approved");
    assert_eq!(big.body["status"], "approved");
    // 25 (reverse) + 25 + 10 (forward) = 60: the daily limit is used up.
    assert_eq!(
        (over.body["status"].as_str(), over.body["reason"].as_str()),
        (Some("declined"), Some("limit_exceeded"))
    );
    let r = pos
        .pay(RequestId::new_random(), &codes[3], "0.01", WAIT)
        .await
        .unwrap();
    assert_eq!(
        r.reason,
        Some(DeclineReason::LimitExceeded),
        "the limit counts forward scans too"
    );
    assert_eq!(env.balance(&user).await, money("440.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn refunds_are_partial_proportional_bounded_and_idempotent() {
    let env = TestEnv::start().await;
    let (user, _pos, _, paid) = env.paid_twenty_with_fee().await;
    let tx = paid.transaction_id.unwrap().0;
    assert_eq!(env.balance(&user).await, money("78.00"));

    let refund = |a: Option<&str>, id: uuid::Uuid| {
        let a = a.map(amount);
        let pool = env.pool.clone();
        async move { db::run(&pool, move |c| refunds::refund(c, tx, a, id, "test")).await }
    };
    // More than was paid: refused, nothing moves.
    assert!(matches!(
        refund(Some("20.01"), uuid::Uuid::new_v4()).await,
        Err(DbError::Rejected(_))
    ));
    // 5.00 of 20.00 refunds a quarter of the 2.00 fee; the same id again changes nothing.
    let id = uuid::Uuid::new_v4();
    let first = refund(Some("5.00"), id).await.unwrap();
    assert_eq!(
        (
            first.amount.to_string(),
            first.fee.to_string(),
            first.remaining.to_string()
        ),
        ("5.00".into(), "0.50".into(), "15.00".into())
    );
    let again = refund(Some("5.00"), id).await.unwrap();
    assert_eq!(again.amount, first.amount);
    assert_eq!(env.balance(&user).await, money("83.50"));
    // Beyond the rest: refused. The rest: the fee left (1.50) goes back exactly.
    assert!(matches!(
        refund(Some("15.01"), uuid::Uuid::new_v4()).await,
        Err(DbError::Rejected(_))
    ));
    let rest = refund(None, uuid::Uuid::new_v4()).await.unwrap();
    assert_eq!(
        (
            rest.amount.to_string(),
            rest.fee.to_string(),
            rest.transaction_state.as_str()
        ),
        ("15.00".into(), "1.50".into(), "reversed")
    );
    assert!(matches!(
        refund(Some("0.01"), uuid::Uuid::new_v4()).await,
        Err(DbError::Rejected(_))
    ));
    assert_eq!(env.balance(&user).await, money("100.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("0.00"));
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("0.00")
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn a_subsidy_file_with_bad_rows_credits_the_good_ones_once() {
    let env = TestEnv::empty().await;
    let a = env.card("s001", Identity::Student, "0").await;
    let b = env.card("s002", Identity::Student, "10.00").await;
    let file = "user_id,amount,memo\n\
                s001,150.00,November meal subsidy\n\
                s002,150\n\
                ghost,150.00\n\
                s003 bad line\n\
                s001,-5\n\
                s002,1e3\n\
                \n\
                s001,0.50,top-up correction\n";
    let import = |text: &'static str| {
        let pool = env.pool.clone();
        async move {
            db::run(&pool, move |c| subsidy::import(c, text, Some("2026-11")))
                .await
                .unwrap()
        }
    };
    let first = import(file).await;
    assert_eq!(
        (first.credited, first.total_credited.as_str()),
        (3, "300.50")
    );
    let lines: Vec<usize> = first.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![4, 5, 6, 7]);
    let second = import(file).await;
    assert_eq!((second.credited, second.already_credited), (0, 3));
    assert_eq!(env.balance(&a).await, money("150.50"));
    assert_eq!(env.balance(&b).await, money("160.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn a_mixed_day_report_ties_out_to_the_ledger() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    env.merchant("m2", &["t1"]).await;
    env.fee(Identity::Temporary, "0.10", None).await;
    let user = env.card("v001", Identity::Temporary, "200.00").await;
    let codes = env.codes(&user).await;
    let mut p1 = env.pos("m1", "t1").await;
    let mut p2 = env.pos("m2", "t1").await;
    let a = p1
        .pay(RequestId::new_random(), &codes[0], "10.00", WAIT)
        .await
        .unwrap();
    let b = p1
        .pay(RequestId::new_random(), &codes[1], "20.00", WAIT)
        .await
        .unwrap();
    let rid = RequestId::new_random();
    let _c = p2.pay(rid, &codes[2], "30.00", WAIT).await.unwrap();
    let _declined = p2
        .pay(RequestId::new_random(), &codes[3], "300.00", WAIT)
        .await
        .unwrap();
    // A partial refund at m1, a POS reversal at m2.
    let tx = b.transaction_id.unwrap().0;
    db::run(&env.pool, move |c| {
        refunds::refund(
            c,
            tx,
            Some(amount("5.00")),
            uuid::Uuid::new_v4(),
            "cold soup",
        )
    })
    .await
    .unwrap();
    p2.send_follow_up("reversal", rid).await.unwrap();
    assert_eq!(p2.wait(rid, WAIT).await.unwrap().status, TxState::Reversed);
    assert_eq!(a.status, TxState::Approved);

    let offset = env.config.campus_offset;
    let today = chrono::Utc::now().with_timezone(&offset).date_naive();
    let r = db::run(&env.pool, move |c| report::daily(c, today, offset))
        .await
        .unwrap();
    assert!(r.ties_out, "{:?}", r.mismatches);
    let m1 = r.merchants.iter().find(|m| m.merchant_id == "m1").unwrap();
    assert_eq!(
        (
            m1.count,
            m1.gross.as_str(),
            m1.fees.as_str(),
            m1.refunds.as_str(),
            m1.net.as_str()
        ),
        (2, "30.00", "3.00", "5.00", "25.00")
    );
    let m2 = r.merchants.iter().find(|m| m.merchant_id == "m2").unwrap();
    assert_eq!(
        (
            m2.count,
            m2.gross.as_str(),
            m2.refunds.as_str(),
            m2.net.as_str()
        ),
        (1, "30.00", "30.00", "0.00")
    );
    // fees 1 + 2 + 3 kept, minus 0.50 refunded and 3.00 reversed
    assert_eq!(r.fee_income, "2.50");
    assert_eq!(r.total.net, "25.00");
    assert!(r
        .to_csv()
        .contains("m1,\"Merchant m1\",2,30.00,3.00,5.00,25.00,25.00"));
    // The day before is empty and ties out too.
    let yesterday = today.pred_opt().unwrap();
    let r = db::run(&env.pool, move |c| report::daily(c, yesterday, offset))
        .await
        .unwrap();
    assert!(r.ties_out && r.merchants.is_empty());
}

#[actix_rt::test]
async fn admin_routes_need_an_admin_token_and_metrics_count_results() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform();
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let codes = env.codes(&user).await;
    let mut pos = env.pos("m1", "t1").await;
    let paid = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    let declined = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(declined.reason, Some(DeclineReason::CodeUsed));
    let admin_token = env.jwt.issue_admin("ops", 600).unwrap();
    let admin = campuspay::sim::phone::Phone::new(&base, &admin_token);
    let admin_token = admin_token.clone();
    let cardholder = env.phone(&base, &user);
    let tx = paid.transaction_id.unwrap().to_string();
    let b = base.clone();
    blocking(move || {
        // A cardholder's token is not an admin's.
        let a = cardholder.call("POST", "/admin/v1/cards/s001/freeze", None).unwrap();
        assert_eq!((a.status, a.code()), (403, "forbidden"));
        let a = campuspay::sim::phone::Phone::new(&b, "").call("GET", "/admin/v1/verify", None).unwrap();
        assert_eq!(a.status, 401);
        let a = admin.call("GET", "/admin/v1/verify", None).unwrap();
        assert_eq!((a.status, a.body["ok"].as_bool()), (200, Some(true)), "{a:?}");
        let a = admin
            .call("POST", "/admin/v1/refunds", Some(serde_json::json!({"transaction_id": tx, "amount": "2.00", "request_id": uuid::Uuid::new_v4()})))
            .unwrap();
        assert_eq!((a.status, a.body["remaining"].as_str()), (200, Some("3.00")), "{a:?}");
        let a = admin
            .call("POST", "/admin/v1/refunds", Some(serde_json::json!({"transaction_id": tx, "amount": "9.00", "request_id": uuid::Uuid::new_v4()})))
            .unwrap();
        assert_eq!(a.status, 422, "{a:?}");
        let a = admin.call("POST", "/admin/v1/cards/s001/freeze", None).unwrap();
        assert_eq!((a.status, a.body["status"].as_str()), (200, Some("frozen")));
        let a = admin.call("GET", "/admin/v1/cards/s001", None).unwrap();
        assert_eq!((a.body["status"].as_str(), a.body["balance"].as_str()), (Some("frozen"), Some("47.00")));
        let a = admin.call("GET", "/admin/v1/reports/daily", None).unwrap();
        assert_eq!(a.body["ties_out"], true, "{a:?}");
        let a = admin.call("GET", "/admin/v1/queues", None).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        // Setting up a merchant, a till, a card and a fee rule over HTTP.
        let a = admin.call("POST", "/admin/v1/merchants", Some(serde_json::json!({"id": "m9", "name": "Noodle Bar"}))).unwrap();
        assert_eq!(a.status, 201, "{a:?}");
        let a = admin.call("POST", "/admin/v1/terminals", Some(serde_json::json!({"merchant_id": "m9", "terminal_id": "t1"}))).unwrap();
        assert_eq!((a.status, a.body["result_queue"].as_str()), (201, Some("pos.m9.t1")), "{a:?}");
        assert!(a.body["token"].as_str().is_some_and(|t| t.len() > 20));
        let a = admin.call("POST", "/admin/v1/cards", Some(serde_json::json!({"user_id": "x9", "name": "Visitor", "identity": "external"}))).unwrap();
        assert_eq!(a.status, 201, "{a:?}");
        let a = admin.call("POST", "/admin/v1/fee-rules", Some(serde_json::json!({"identity": "external", "rate": "0.15", "merchant_id": "m9"}))).unwrap();
        assert_eq!(a.status, 201, "{a:?}");
        let a = admin.call("POST", "/admin/v1/cards", Some(serde_json::json!({"user_id": "x9", "name": "Again", "identity": "external"}))).unwrap();
        assert_eq!((a.status, a.code()), (409, "conflict"), "{a:?}");
        // Queue operations refuse what the CLI refuses.
        let a = admin.call("POST", "/admin/v1/queues/campuspay.fee/purge", None).unwrap();
        assert_eq!((a.status, a.code()), (409, "refused"), "{a:?}");
        let a = admin.call("POST", "/admin/v1/queues/campuspay.fee/purge?yes=true", None).unwrap();
        assert_eq!((a.status, a.code()), (409, "refused"), "money-moving stage: {a:?}");
        let a = admin.call("GET", "/admin/v1/topology/check", None).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        let a = admin.call("GET", "/admin/v1/dead?limit=10", None).unwrap();
        assert_eq!((a.status, a.body["letters"].as_array().map(Vec::len)), (200, Some(0)), "{a:?}");
        let csv = "user_id,amount\ns001,10.00\nnobody,1.00\n";
        let r = ureq::post(&format!("{b}/admin/v1/subsidies?batch=api-test"))
            .set("authorization", &format!("Bearer {admin_token}"))
            .set("content-type", "text/csv")
            .send_string(csv)
            .unwrap();
        let report: serde_json::Value = r.into_json().unwrap();
        assert_eq!((report["credited"].as_u64(), report["rejected"][0]["line"].as_u64()), (Some(1), Some(3)), "{report}");
        let text = ureq::get(&format!("{b}/metrics")).call().unwrap().into_string().unwrap();
        assert!(text.contains("campuspay_results_total{status=\"approved\",reason=\"\"}"), "{text}");
        assert!(text.contains("campuspay_results_total{status=\"declined\",reason=\"code_used\"}"), "{text}");
        assert!(text.contains("campuspay_stage_batch_seconds_count{stage=\"settlement\"}"), "{text}");
        assert!(text.contains("campuspay_queue_ready{queue=\"campuspay.order\"}"), "{text}");
    })
    .await;
}
