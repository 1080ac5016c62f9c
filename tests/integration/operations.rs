//! Operating the system: freezing cards, limits across both scan directions, the PIN,
//! refunds, subsidies and a daily report that ties out to the ledger.

use crate::helpers::*;
use campuspay::db::{self, cards, refunds, report, subsidy};
use campuspay::domain::campus_qr::{encode_campus, MerchantQr};
use campuspay::domain::refund::RefundRefusal;
use campuspay::domain::{
    Amount, DeclineReason, Identity, MerchantId, RequestId, TerminalId, TxState,
};
use campuspay::domain::{Refusal, TransactionId, UserId};
use campuspay::sim::phone::{Answer, Phone};
use std::time::Duration;

fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
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
        .unwrap()
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
        env.config.keys.payment_codes.expose(),
        &user,
        env.config.code_ttl,
        env.config.code_prefix,
    )
    .await
    .unwrap()
    .is_err_and(|r| r == Refusal::CardFrozen(user.clone())));
    let u = user.clone();
    db::run(&env.pool, move |c| cards::unfreeze(c, &u))
        .await
        .unwrap()
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
        .unwrap()
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

/// A student card (500.00) with limits 100 per payment, 60 a day, 25 without the PIN, its PIN
/// set to 135790, a till m1/t1 and a phone; the codes of the card.
async fn limited_card(env: &mut TestEnv) -> (UserId, campuspay::sim::pos::Pos, Vec<String>, Phone) {
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "500.00").await;
    let (u, key) = (user.clone(), env.config.keys.pin_hashes.expose().to_vec());
    db::run(&env.pool, move |c| {
        cards::set_limits(
            c,
            &u,
            Some(amount("100.00")),
            Some(amount("60.00")),
            Some(amount("25.00")),
        )?
        .expect("limits set");
        cards::set_pin_hash(c, &u, &campuspay::tsm::pin_hash(&key, &u, "135790"))
    })
    .await
    .unwrap()
    .unwrap();
    let pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let phone = env.phone(&base, &user);
    (user, pos, codes, phone)
}

/// Pays the till's static code from the phone: the order's id and the confirmation's answer.
fn pay_static(p: &Phone, amount: &str, pin: Option<&str>) -> (String, Answer) {
    let o = p
        .create_order(&uuid::Uuid::new_v4().to_string(), &static_qr("m1", "t1"))
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
}

#[actix_rt::test]
async fn above_the_password_free_amount_the_pin_is_needed_in_both_directions() {
    let mut env = TestEnv::start().await;
    let (user, mut pos, codes, phone) = limited_card(&mut env).await;
    // Reverse scan above the password-free amount: the till cannot take a PIN, so the
    // cardholder confirms it on the phone, where a wrong PIN is refused too.
    let rid = RequestId::new_random();
    let r = pos.pay(rid, &codes[0], "30.00", WAIT).await.unwrap();
    assert_eq!(
        (r.status, r.reason),
        (
            TxState::AwaitingConfirmation,
            Some(DeclineReason::UserConfirming)
        )
    );
    let tx = r.transaction_id.expect("a transaction").to_string();
    // Forward scan: without the PIN and with a wrong one refused, with the right one paid.
    let paid = blocking(move || {
        let wrong = phone.confirm(&tx, "000000").unwrap();
        assert_eq!(
            (wrong.status, wrong.code()),
            (403, "pin_invalid"),
            "{wrong:?}"
        );
        let confirmed = phone.confirm(&tx, "135790").unwrap();
        assert_eq!(confirmed.status, 202, "{confirmed:?}");
        let (_, no_pin) = pay_static(&phone, "26.00", None);
        assert_eq!(
            (no_pin.status, no_pin.code()),
            (403, "pin_required"),
            "{no_pin:?}"
        );
        let (_, wrong) = pay_static(&phone, "26.00", Some("000000"));
        assert_eq!(
            (wrong.status, wrong.code()),
            (403, "pin_invalid"),
            "{wrong:?}"
        );
        let (id, _) = pay_static(&phone, "26.00", Some("135790"));
        phone.wait_final(&id, Duration::from_secs(20)).unwrap()
    })
    .await;
    assert_eq!(paid.body["status"], "approved", "{paid:?}");
    let r = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(r.status, TxState::Approved, "{r:?}");
    assert_eq!(env.balance(&user).await, money("444.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn the_limits_count_both_scan_directions() {
    let mut env = TestEnv::start().await;
    let (user, mut pos, codes, phone) = limited_card(&mut env).await;
    // Above the per-transaction limit.
    let r = pos
        .pay(RequestId::new_random(), &codes[0], "100.01", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::LimitExceeded));
    let r = pos
        .pay(RequestId::new_random(), &codes[1], "25.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
    // Forward scan: 25 (reverse) + 25 + 10 = 60, the daily limit; 10.01 more is over it.
    let (first, second, over) = blocking(move || {
        let wait = |amount| {
            let (id, _) = pay_static(&phone, amount, Some("135790"));
            phone.wait_final(&id, Duration::from_secs(20)).unwrap()
        };
        (wait("25.00"), wait("10.00"), wait("10.01"))
    })
    .await;
    assert_eq!(first.body["status"], "approved");
    assert_eq!(second.body["status"], "approved");
    assert_eq!(
        (over.body["status"].as_str(), over.body["reason"].as_str()),
        (Some("declined"), Some("limit_exceeded"))
    );
    let r = pos
        .pay(RequestId::new_random(), &codes[2], "0.01", WAIT)
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
        async move {
            db::run(&pool, move |c| {
                refunds::refund(c, TransactionId(tx), a, id, "test")
            })
            .await
            .unwrap()
        }
    };
    let more_than_remains = |r: Result<_, Refusal>| {
        matches!(
            r,
            Err(Refusal::Refund(RefundRefusal::MoreThanRemains { .. }))
        )
    };
    // More than was paid: refused, nothing moves.
    assert!(more_than_remains(
        refund(Some("20.01"), uuid::Uuid::new_v4()).await
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
    assert!(more_than_remains(
        refund(Some("15.01"), uuid::Uuid::new_v4()).await
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
        Err(Refusal::Refund(RefundRefusal::NotApproved(
            TxState::Reversed
        )))
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
    // s001 has two rows: with row ids, each is its own credit.
    let file = "row_id,user_id,amount,memo\n\
                r1,s001,150.00,November meal subsidy\n\
                r2,s002,150\n\
                r3,ghost,150.00\n\
                r4,s003 bad line\n\
                r5,s001,-5\n\
                r6,s002,1e3\n\
                \n\
                r7,s001,0.50,top-up correction\n";
    let first = import_subsidy(&env, file, "2026-11").await.unwrap();
    assert_eq!(
        (first.credited, first.total_credited.as_str()),
        (3, "300.50")
    );
    let lines: Vec<usize> = first.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![4, 5, 6, 7]);
    let second = import_subsidy(&env, file, "2026-11").await.unwrap();
    assert_eq!((second.credited, second.already_credited), (0, 3));
    assert_eq!(env.balance(&a).await, money("150.50"));
    assert_eq!(env.balance(&b).await, money("160.00"));
    assert!(env.verify().await.ok);
}

async fn import_subsidy(
    env: &TestEnv,
    text: &str,
    batch: &str,
) -> Result<subsidy::ImportReport, Refusal> {
    let (text, batch) = (text.to_owned(), batch.to_owned());
    db::run(&env.pool, move |c| subsidy::import(c, &text, &batch))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_subsidy_file_imported_again_edited_or_reordered_credits_each_row_once() {
    let env = TestEnv::empty().await;
    let users = ["s001", "s002", "s003"];
    for u in users {
        env.card(u, Identity::Student, "0").await;
    }
    let file = "user_id,amount\ns001,100.00\ns002,50.00\ns003,20.00\n";
    let first = import_subsidy(&env, file, "2026-12 meal").await.unwrap();
    assert_eq!(
        (first.credited, first.total_credited.as_str()),
        (3, "170.00")
    );

    // The same file again, with a comment added (its hash changes) and the rows reordered.
    let reordered =
        "# checked by the finance office\nuser_id,amount\ns003,20.00\ns001,100.00\ns002,50.00\n";
    let again = import_subsidy(&env, reordered, "2026-12 meal")
        .await
        .unwrap();
    assert_eq!(
        (again.credited, again.already_credited),
        (0, 3),
        "{again:?}"
    );
    assert!(again.rejected.is_empty(), "{again:?}");

    // Edited: s002's amount changed, s004 added. The edit is refused and says what was
    // credited; only the new row is credited.
    env.card("s004", Identity::Student, "0").await;
    let edited = "user_id,amount\ns001,100.00\ns002,60.00\ns003,20.00\ns004,5.00\n";
    let third = import_subsidy(&env, edited, "2026-12 meal").await.unwrap();
    assert_eq!(
        (third.credited, third.already_credited),
        (1, 2),
        "{third:?}"
    );
    assert_eq!(third.rejected.len(), 1);
    assert_eq!(third.rejected[0].line, 3);
    assert!(
        third.rejected[0].why.contains("already credited 50.00"),
        "{third:?}"
    );

    // A cardholder listed twice without row ids: ambiguous, neither row credited.
    let twice = "user_id,amount\ns001,1.00\ns001,2.00\n";
    let fourth = import_subsidy(&env, twice, "2026-12 bonus").await.unwrap();
    assert_eq!(fourth.credited, 0);
    assert_eq!(fourth.rejected.len(), 2);

    // No batch name: refused, nothing changes.
    assert_eq!(
        import_subsidy(&env, file, "").await.unwrap_err(),
        Refusal::InvalidBatch { max: 100 }
    );

    for (u, want) in [
        ("s001", "100.00"),
        ("s002", "50.00"),
        ("s003", "20.00"),
        ("s004", "5.00"),
    ] {
        assert_eq!(
            env.balance(&UserId::parse(u).unwrap()).await,
            money(want),
            "{u}"
        );
    }
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
            TransactionId(tx),
            Some(amount("5.00")),
            uuid::Uuid::new_v4(),
            "cold soup",
        )
    })
    .await
    .unwrap()
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

/// The platform, merchant m1 with till t1, card s001 (50.00) that paid 5.00 and then had the
/// same code declined `code_used`; an operator's client (token of "ops") and the payment.
async fn admin_setup(
    env: &mut TestEnv,
) -> (String, Phone, campuspay::messages::external::ResultV1) {
    let base = env.start_platform().await;
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
    let admin = Phone::new(&base, &env.jwt.issue_admin("ops", 600).unwrap());
    (base, admin, paid)
}

#[actix_rt::test]
async fn admin_routes_need_an_admin_token() {
    let mut env = TestEnv::start().await;
    let (base, admin, _) = admin_setup(&mut env).await;
    let cardholder = env.phone(&base, &UserId::parse("s001").unwrap());
    blocking(move || {
        let a = cardholder
            .call("POST", "/admin/v1/cards/s001/freeze", None)
            .unwrap();
        assert_eq!((a.status, a.code()), (403, "forbidden"));
        let a = Phone::new(&base, "")
            .call("GET", "/admin/v1/verify", None)
            .unwrap();
        assert_eq!(a.status, 401);
        let a = admin.call("GET", "/admin/v1/verify", None).unwrap();
        assert_eq!(
            (a.status, a.body["ok"].as_bool()),
            (200, Some(true)),
            "{a:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn admin_routes_refund_freeze_and_report_and_each_change_names_its_operator() {
    let mut env = TestEnv::start().await;
    let (_, admin, paid) = admin_setup(&mut env).await;
    let tx = paid.transaction_id.unwrap().to_string();
    blocking(move || {
        let refund = |amount: &str| {
            let body = serde_json::json!({
                "transaction_id": tx, "amount": amount, "request_id": uuid::Uuid::new_v4()
            });
            admin.call("POST", "/admin/v1/refunds", Some(body)).unwrap()
        };
        let a = refund("2.00");
        assert_eq!(
            (a.status, a.body["remaining"].as_str()),
            (200, Some("3.00")),
            "{a:?}"
        );
        let a = refund("9.00");
        assert_eq!((a.status, a.code()), (422, "rejected"), "{a:?}");
        let a = admin
            .call("POST", "/admin/v1/cards/s001/freeze", None)
            .unwrap();
        assert_eq!((a.status, a.body["status"].as_str()), (200, Some("frozen")));
        let a = admin.call("GET", "/admin/v1/cards/s001", None).unwrap();
        assert_eq!(
            (a.body["status"].as_str(), a.body["balance"].as_str()),
            (Some("frozen"), Some("47.00"))
        );
        let a = admin.call("GET", "/admin/v1/reports/daily", None).unwrap();
        assert_eq!(a.body["ties_out"], true, "{a:?}");
    })
    .await;
    // The refund and the freeze are on the operators' trail under the token's name; the
    // refused refund is not.
    let trail = env
        .count("SELECT COUNT(*) AS n FROM operator_actions WHERE operator = 'admin:ops' AND action IN ('refund', 'card.freeze')")
        .await;
    assert_eq!(trail, 2);
}

#[actix_rt::test]
async fn admin_routes_set_up_merchants_terminals_cards_and_fees() {
    let mut env = TestEnv::start().await;
    let (_, admin, _) = admin_setup(&mut env).await;
    let json = |v| Some(v);
    blocking(move || {
        let post = |path: &str, body| admin.call("POST", path, json(body)).unwrap();
        let a = post(
            "/admin/v1/merchants",
            serde_json::json!({"id": "m9", "name": "Noodle Bar"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
        let a = post(
            "/admin/v1/terminals",
            serde_json::json!({"merchant_id": "m9", "terminal_id": "t1"}),
        );
        assert_eq!(
            (a.status, a.body["result_queue"].as_str()),
            (201, Some("pos.m9.t1")),
            "{a:?}"
        );
        assert!(a.body["token"].as_str().is_some_and(|t| t.len() > 20));
        let a = post(
            "/admin/v1/cards",
            serde_json::json!({"user_id": "x9", "name": "Visitor", "identity": "external"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
        let a = post(
            "/admin/v1/fee-rules",
            serde_json::json!({"identity": "external", "rate": "0.15", "merchant_id": "m9"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
        let a = post(
            "/admin/v1/cards",
            serde_json::json!({"user_id": "x9", "name": "Again", "identity": "external"}),
        );
        assert_eq!((a.status, a.code()), (409, "conflict"), "{a:?}");
        let a = post(
            "/admin/v1/terminals",
            serde_json::json!({"merchant_id": "nope", "terminal_id": "t1"}),
        );
        assert_eq!((a.status, a.code()), (404, "not_found"), "{a:?}");
    })
    .await;
}

#[actix_rt::test]
async fn admin_queue_routes_refuse_what_the_cli_refuses() {
    let mut env = TestEnv::start().await;
    let (_, admin, _) = admin_setup(&mut env).await;
    blocking(move || {
        let a = admin.call("GET", "/admin/v1/queues", None).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        let a = admin
            .call("POST", "/admin/v1/queues/campuspay.fee/purge", None)
            .unwrap();
        assert_eq!((a.status, a.code()), (409, "refused"), "{a:?}");
        let a = admin
            .call(
                "POST",
                "/admin/v1/queues/campuspay.fee/purge?yes=true",
                None,
            )
            .unwrap();
        assert_eq!(
            (a.status, a.code()),
            (409, "refused"),
            "money-moving stage: {a:?}"
        );
        let a = admin.call("GET", "/admin/v1/topology/check", None).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        let a = admin.call("GET", "/admin/v1/dead?limit=10", None).unwrap();
        assert_eq!(
            (a.status, a.body["letters"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{a:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_subsidy_file_uploaded_over_http_credits_its_good_rows() {
    let mut env = TestEnv::start().await;
    let (base, _, _) = admin_setup(&mut env).await;
    let token = env.jwt.issue_admin("ops", 600).unwrap();
    let report: serde_json::Value = blocking(move || {
        ureq::post(&format!("{base}/admin/v1/subsidies?batch=api-test"))
            .set("authorization", &format!("Bearer {token}"))
            .set("content-type", "text/csv")
            .send_string("user_id,amount\ns001,10.00\nnobody,1.00\n")
            .unwrap()
            .into_json()
            .unwrap()
    })
    .await;
    assert_eq!(
        (
            report["credited"].as_u64(),
            report["rejected"][0]["line"].as_u64()
        ),
        (Some(1), Some(3)),
        "{report}"
    );
    assert_eq!(
        env.balance(&UserId::parse("s001").unwrap()).await,
        money("55.00")
    );
}

#[actix_rt::test]
async fn metrics_count_results_by_reason_and_stage_batches() {
    let mut env = TestEnv::start().await;
    let (base, _, _) = admin_setup(&mut env).await;
    // Metrics are on the operations listener, not on the public platform.
    let public = blocking(move || match ureq::get(&format!("{base}/metrics")).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    })
    .await;
    assert_eq!(public, 404, "/metrics is not on the public platform");
    let ops = campuspay::platform::operations::OpsListener::start(
        "127.0.0.1:0",
        campuspay::platform::operations::Readiness::default(),
    )
    .expect("operations listener");
    let base = format!("http://{}", ops.addr);
    let text = blocking(move || {
        ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    })
    .await;
    for line in [
        "campuspay_results_total{status=\"approved\",reason=\"\"}",
        "campuspay_results_total{status=\"declined\",reason=\"code_used\"}",
        "campuspay_stage_batch_seconds_count{stage=\"settlement\"}",
        "campuspay_result_latency_seconds_count{status=\"approved\"}",
        "campuspay_http_requests_total{method=\"GET\",route=\"(no route)\",status=\"404\"}",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}
