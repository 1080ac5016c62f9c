//! The trust boundary (docs/SECURITY.md): what a terminal's own broker login can and cannot do,
//! forged internal messages, secrets, tokens of the wrong role or revoked, the PIN lockout and
//! the reversal window. Each test plays the attacker against a real broker and database.

use crate::helpers::*;
use campuspay::broker::publisher::{Outgoing, Publisher};
use campuspay::broker::topology::{REQUESTS, RESULTS, STAGE};
use campuspay::domain::{
    DeclineReason, Identity, MerchantId, PaymentMode, RequestId, TerminalId, TransactionId,
    TxState, UserId,
};
use campuspay::messages::external::{QueryStatusV1, QUERY_STATUS_V1};
use campuspay::messages::internal::{Outcome, PaymentItem, StageBatch};
use campuspay::ops::{self, Operator, Ops};
use campuspay::sim::pos::Pos;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::time::Duration;

fn ops_of(env: &TestEnv) -> Ops {
    Ops::new(env.pool.clone(), env.config.clone())
}

fn ids(m: &str, t: &str) -> (MerchantId, TerminalId) {
    (MerchantId::parse(m).unwrap(), TerminalId::parse(t).unwrap())
}

async fn login(url: &str) -> Result<lapin::Connection, campuspay::broker::BrokerError> {
    campuspay::broker::connect(url, "campuspay trust test").await
}

#[actix_rt::test]
async fn a_terminal_with_its_own_broker_login_pays_and_can_do_nothing_else() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t2"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let (m, t) = ids("m1", "t1");
    let creds = ops::merchants::add_terminal(&ops_of(&env), &Operator::admin("test"), &m, &t)
        .await
        .unwrap();
    // The other till's queue exists too (its own user is not needed here).
    env.subscribe("pos.m1.t2").await;

    let conn = login(&creds.broker.amqp_url).await.unwrap();
    let mut pos = Pos::open_as_terminal(&conn, &creds.broker.user, m, t, creds.token.clone())
        .await
        .unwrap();
    let codes = env.codes(&user).await;
    let paid = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(paid.status, TxState::Approved, "{paid:?}");

    // Each forbidden act on a channel of its own: the broker refuses it (403 ACCESS_REFUSED, or
    // PRECONDITION_FAILED for a user-id that is not the login's).
    let channel = conn.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(declared.is_err(), "a terminal declares no queue");
    for key in ["user.#", "pos.#", "#"] {
        let channel = conn.create_channel().await.unwrap();
        let bound = channel
            .queue_bind(
                "pos.m1.t1".into(),
                RESULTS.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert!(
            bound.is_err(),
            "binding its queue to pay.results with {key}"
        );
    }
    let channel = conn.create_channel().await.unwrap();
    let consumed = channel
        .basic_consume(
            "pos.m1.t2".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(consumed.is_err(), "reading another till's results");
    let forbidden = [
        (STAGE, "order", "an internal stage exchange"),
        (RESULTS, "pos.m1.t1", "the results exchange"),
        (RESULTS, "user.s001", "a cardholder's results"),
        (REQUESTS, "pos.m1.t2.scan", "another terminal's routing key"),
        (REQUESTS, "pos.m2.t1.scan", "another merchant's routing key"),
    ];
    for (exchange, key, what) in forbidden {
        let publisher = Publisher::new(&conn, Duration::from_secs(5))
            .await
            .unwrap()
            .as_user(&creds.broker.user);
        let sent = publisher
            .publish(Outgoing::json(exchange, key.into(), b"{}".to_vec()))
            .await;
        assert!(sent.is_err(), "publishing to {what} must be refused");
    }
    let publisher = Publisher::new(&conn, Duration::from_secs(5))
        .await
        .unwrap()
        .as_user("guest");
    let sent = publisher
        .publish(Outgoing::json(
            REQUESTS,
            "pos.m1.t1.scan".into(),
            b"{}".to_vec(),
        ))
        .await;
    assert!(sent.is_err(), "a user-id other than its login");
    assert_eq!(env.balance(&user).await, money("95.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn rotating_or_removing_a_terminal_revokes_its_token_and_broker_login_at_once() {
    let env = TestEnv::start().await;
    env.merchant("m1", &[]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let codes = env.codes(&user).await;
    let (ops, me) = (ops_of(&env), Operator::admin("test"));
    let (m, t) = ids("m1", "t1");
    let first = ops::merchants::add_terminal(&ops, &me, &m, &t)
        .await
        .unwrap();
    let conn1 = login(&first.broker.amqp_url).await.unwrap();

    let second = ops::merchants::rotate_terminal(&ops, &me, &m, &t)
        .await
        .unwrap();
    assert_eq!(second.token_version, first.token_version + 1);
    eventually(
        "the old connection is closed",
        WAIT,
        Duration::from_millis(100),
        || async {
            if conn1.status().connected() {
                Err("still connected".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        login(&first.broker.amqp_url).await.is_err(),
        "the old password"
    );
    // The old token, even through the pipeline's own connection: refused. (A connection of
    // its own, closed after, so that its consumer does not share the till's results.)
    let service = login(&env.config.amqp_url).await.unwrap();
    let mut old = Pos::open(
        &service,
        &env.config.broker_user,
        m.clone(),
        t.clone(),
        first.token.clone(),
    )
    .await
    .unwrap();
    let r = old
        .pay(RequestId::new_random(), &codes[0], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::Unauthorized), "{r:?}");
    service.close(200, "done".into()).await.unwrap();
    // The new credentials work.
    let conn2 = login(&second.broker.amqp_url).await.unwrap();
    let mut pos = Pos::open_as_terminal(
        &conn2,
        &second.broker.user,
        m.clone(),
        t.clone(),
        second.token.clone(),
    )
    .await
    .unwrap();
    let r = pos
        .pay(RequestId::new_random(), &codes[1], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved, "{r:?}");

    ops::merchants::remove_terminal(&ops, &me, &m, &t)
        .await
        .unwrap();
    eventually(
        "the connection is closed",
        WAIT,
        Duration::from_millis(100),
        || async {
            if conn2.status().connected() {
                Err("still connected".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        login(&second.broker.amqp_url).await.is_err(),
        "the removed login"
    );
    let mut gone = Pos::open(&env.conn, &env.config.broker_user, m, t, second.token)
        .await
        .unwrap();
    let r = gone
        .pay(RequestId::new_random(), &codes[2], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.reason, Some(DeclineReason::UnknownTerminal), "{r:?}");
    assert_eq!(env.balance(&user).await, money("99.00"));
}

/// A forward-scan payment for the victim's card to the attacker's merchant, claiming a verified
/// PIN: what an attacker on the broker would hand the order stage.
fn forged_item(user: &UserId, card_id: i64, account_id: i64) -> PaymentItem {
    PaymentItem {
        request_id: RequestId::new_random(),
        mode: PaymentMode::ForwardScan,
        merchant_id: MerchantId::parse("evil").unwrap(),
        terminal_id: TerminalId::parse("t1").unwrap(),
        amount: Some(campuspay::domain::Amount::parse("150.00").unwrap()),
        code_hash: None,
        card: Some(campuspay::messages::internal::CardRef {
            card_id,
            account_id,
            user_id: user.clone(),
            identity: Identity::Student,
        }),
        transaction_id: Some(TransactionId::new_random()),
        fee: None,
        fee_rule_id: None,
        pin_verified: true,
        outcome: Outcome::Pending,
    }
}

#[actix_rt::test]
async fn a_forged_stage_message_moves_nothing_and_is_dead_lettered() {
    let env = TestEnv::start().await;
    env.merchant("evil", &["t1"]).await;
    let victim = env.card("s001", Identity::Student, "200.00").await;
    let card_id = env
        .count("SELECT id AS n FROM cards WHERE user_id = 's001'")
        .await;
    let account = env
        .count("SELECT account_id AS n FROM cards WHERE user_id = 's001'")
        .await;
    let publisher = Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap();
    // Encoded under a key that is not the pipeline's, and without any tag at all.
    let batch = StageBatch {
        items: vec![forged_item(&victim, card_id, account)],
    };
    let wrong_key = batch.encode(b"guessed-key-guessed-key-guessed!").unwrap();
    let mut untagged = batch.encode(b"whatever").unwrap();
    untagged.truncate(untagged.len() - campuspay::messages::internal::MAC_LEN);
    for body in [wrong_key, untagged] {
        publisher
            .publish(Outgoing::binary(STAGE, "order".into(), body))
            .await
            .unwrap();
    }
    let dead = take_dead_letters(&env, 2, WAIT).await;
    for d in &dead {
        let reason = header(d, "x-campuspay-reason").unwrap_or_default();
        assert!(
            reason.starts_with("unauthenticated_stage_message"),
            "{reason}"
        );
    }
    // Signed with the real key (an attacker who has it is inside the trust boundary) but with
    // no order behind it: the order stage declines it anyway.
    let mut sub = env.subscribe("pos.evil.t1").await;
    let item = forged_item(&victim, card_id, account);
    let rid = item.request_id;
    let signed = StageBatch { items: vec![item] }
        .encode(env.config.keys.stage_mac.expose())
        .unwrap();
    publisher
        .publish(Outgoing::binary(STAGE, "order".into(), signed))
        .await
        .unwrap();
    let r = sub.wait_for(rid, WAIT).await.unwrap();
    assert_eq!(
        (r.status, r.reason),
        (TxState::Declined, Some(DeclineReason::Unauthorized))
    );
    assert_eq!(env.balance(&victim).await, money("200.00"));
    assert_eq!(env.account_balance("merchant", "evil").await, money("0.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn the_service_refuses_to_start_without_real_secrets() {
    let env = TestEnv::empty().await;
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"));
        cmd.args(["admin", "verify"])
            .env_remove("CAMPUSPAY_ENV")
            .env_remove("CAMPUSPAY_JWT_SECRET")
            .env_remove("CAMPUSPAY_CODE_KEY")
            .env("DATABASE_URL", &env.config.database_url)
            .env("AMQP_URL", &env.config.amqp_url);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refuses to run without real secrets"), "{err}");
    let (code, err) = run(&[
        ("CAMPUSPAY_ENV", "Production"),
        (
            "CAMPUSPAY_JWT_SECRET",
            "campuspay-dev-secret-do-not-use-in-production",
        ),
        ("CAMPUSPAY_CODE_KEY", "x".repeat(40).as_str()),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("published development secret"), "{err}");
    let (code, err) = run(&[("CAMPUSPAY_ENV", "Development")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&[
        (
            "CAMPUSPAY_JWT_SECRET",
            "a-real-secret-of-forty-bytes-or-so-xxxxxx",
        ),
        (
            "CAMPUSPAY_CODE_KEY",
            "another-real-secret-of-forty-bytes-xxxxxx",
        ),
    ]);
    assert_eq!(code, Some(0), "with real secrets: {err}");
}

#[actix_rt::test]
async fn a_token_of_one_role_is_refused_for_another() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let codes = env.codes(&user).await;
    let cardholder = env.jwt.issue_cardholder(&user, 600, 1).unwrap();
    let admin = env.jwt.issue_admin("ops", 600).unwrap();
    let (m, t) = ids("m1", "t1");
    let terminal = env.jwt.issue_terminal(&m, &t, 1).unwrap();
    // A cardholder's or an operator's token on the till: unauthorized.
    for token in [cardholder.clone(), admin.clone()] {
        let mut pos = Pos::open(
            &env.conn,
            &env.config.broker_user,
            m.clone(),
            t.clone(),
            token,
        )
        .await
        .unwrap();
        let r = pos
            .pay(RequestId::new_random(), &codes[0], "1.00", WAIT)
            .await
            .unwrap();
        assert_eq!(r.reason, Some(DeclineReason::Unauthorized));
    }
    let b = base.clone();
    blocking(move || {
        use campuspay::sim::phone::Phone;
        // The phone's routes take only a cardholder's token.
        for token in [&terminal, &admin] {
            let a = Phone::new(&b, token).me().unwrap();
            assert_eq!((a.status, a.code()), (401, "unauthorized"), "{a:?}");
        }
        // The back office takes only an operator's.
        for token in [&terminal, &cardholder] {
            let a = Phone::new(&b, token)
                .call("GET", "/admin/v1/verify", None)
                .unwrap();
            assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
        }
    })
    .await;
    assert_eq!(env.balance(&user).await, money("50.00"));
}

#[actix_rt::test]
async fn a_revoked_cardholder_token_stops_working_at_once() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let phone = env.phone(&base, &user);
    let before = blocking({
        let p = phone.clone();
        move || p.me().unwrap()
    })
    .await;
    assert_eq!(before.status, 200, "{before:?}");
    ops::tokens::revoke_cardholder(&ops_of(&env), &Operator::admin("test"), &user)
        .await
        .unwrap();
    let after = blocking(move || phone.me().unwrap()).await;
    assert_eq!(
        (after.status, after.code()),
        (401, "unauthorized"),
        "{after:?}"
    );
}

#[actix_rt::test]
async fn the_sixth_wrong_pin_in_a_row_is_refused_as_locked_even_when_right() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    ops::cards::set_pin(&ops_of(&env), &Operator::admin("test"), &user, "135790")
        .await
        .unwrap();
    let qr = campuspay::domain::campus_qr::encode_campus(
        &campuspay::domain::campus_qr::MerchantQr::Static {
            merchant_id: MerchantId::parse("m1").unwrap(),
            terminal_id: Some(TerminalId::parse("t1").unwrap()),
        },
        "Merchant m1",
    )
    .unwrap();
    let phone = env.phone(&base, &user);
    let pay = move |pin: &str| {
        let o = phone
            .create_order(&uuid::Uuid::new_v4().to_string(), &qr)
            .unwrap();
        let id = o.body["order_id"].as_str().unwrap().to_owned();
        phone
            .call(
                "POST",
                &format!("/v1/orders/{id}/pay"),
                Some(serde_json::json!({"amount": "60.00", "pin": pin})),
            )
            .unwrap()
    };
    let answers = blocking(move || {
        let mut answers: Vec<_> = (0..5).map(|_| pay("000000")).collect();
        answers.push(pay("135790"));
        answers
    })
    .await;
    for a in &answers[..4] {
        assert_eq!((a.status, a.code()), (403, "pin_invalid"), "{a:?}");
    }
    // The fifth wrong PIN locks it; the sixth attempt, right, is refused as locked.
    for a in &answers[4..] {
        assert_eq!((a.status, a.code()), (403, "pin_locked"), "{a:?}");
    }
    ops::cards::unlock_pin(&ops_of(&env), &Operator::admin("test"), &user)
        .await
        .unwrap();
    assert_eq!(env.balance(&user).await, money("100.00"));
}

#[actix_rt::test]
async fn a_reversal_outside_the_window_is_refused_with_a_stable_reason() {
    let env = TestEnv::start().await;
    let (user, mut pos, rid, paid) = env.paid_twenty_with_fee().await;
    assert_eq!(paid.status, TxState::Approved);
    // The payment was processed two days ago, before the window (the current campus day).
    env.sql(&format!(
        "UPDATE transactions SET processed_at = processed_at - interval '2 days' WHERE request_id = '{rid}'"
    ))
    .await;
    pos.send_follow_up("reversal", rid).await.unwrap();
    let raw = pos
        .results()
        .wait_raw(QUERY_STATUS_V1, rid, WAIT)
        .await
        .unwrap();
    schema_check("query_status.v1", &raw);
    let status: QueryStatusV1 = serde_json::from_slice(&raw).unwrap();
    assert_eq!(status.reason, Some(DeclineReason::ReversalWindowClosed));
    assert_eq!(
        env.balance(&user).await,
        money("78.00"),
        "nothing given back"
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn a_burst_of_guesses_in_one_batch_is_throttled_at_the_limit() {
    let mut env = TestEnv::empty().await;
    env.merchant("m1", &["t1"]).await;
    let pos = env.pos("m1", "t1").await;
    let mut rng = rand::rngs::OsRng;
    let limit = campuspay::db::validation::FAILURE_LIMIT as usize;
    // Queued while no stage runs, so QR validation meets them as one batch.
    let mut rids = Vec::new();
    for _ in 0..limit * 3 {
        let rid = RequestId::new_random();
        let guess = campuspay::domain::PaymentCode::generate(&mut rng, env.config.code_prefix);
        pos.send_scan(rid, guess.expose(), "1.00").await.unwrap();
        rids.push(rid);
    }
    env.start_pipeline();
    let mut pos = pos;
    let mut unknown = 0;
    let mut limited = 0;
    for rid in rids {
        match pos.wait(rid, WAIT).await.unwrap().reason {
            Some(DeclineReason::UnknownCode) => unknown += 1,
            Some(DeclineReason::RateLimited) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((unknown, limited), (limit, limit * 2));
}
