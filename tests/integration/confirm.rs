//! Confirming a large reverse-scan payment on the phone (WeChat Pay micropay's USERPAYING): a
//! scan above the card's password-free amount answers the POS `pending`, asks the cardholder
//! (`confirmation_request.v1` on `user.<id>` and `event: confirmation`), and ends in exactly one
//! final result at both when the cardholder confirms with the PIN, declines, lets it time out,
//! or the POS reverses it. Through the real pipeline and platform.

use crate::helpers::*;
use campuspay::broker::topology::{StageName, STAGE};
use campuspay::broker::{Outgoing, Publisher};
use campuspay::db::{self, cards};
use campuspay::domain::{
    Amount, DeclineReason, Identity, MerchantId, PaymentMode, RequestId, TerminalId, TransactionId,
    TxState, UserId,
};
use campuspay::messages::external::{ConfirmationRequestV1, ResultV1, RESULT_V1};
use campuspay::messages::internal::{CardRef, Outcome, PaymentItem};
use campuspay::sim::phone::Phone;
use campuspay::sim::pos::Pos;
use campuspay::sim::results::Subscriber;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::Duration;

const PIN: &str = "135790";

/// A canteen till, a 10 % surcharge for external cardholders, and card x001 (external: 50.00
/// password-free, 200.00 per payment) with 200.00 and a PIN; the platform serving, the
/// cardholder's queue and event stream read.
struct Campus {
    user: UserId,
    pos: Pos,
    codes: Vec<String>,
    phone: Phone,
    queue: Subscriber,
    events: tokio::sync::mpsc::Receiver<(String, Value)>,
}

async fn campus(env: &mut TestEnv) -> Campus {
    let base = env.start_platform().await;
    env.merchant("canteen", &["t1"]).await;
    env.fee(Identity::External, "0.10", None).await;
    let user = env.card("x001", Identity::External, "200.00").await;
    let (u, key) = (user.clone(), env.config.keys.pin_hashes.expose().to_vec());
    db::run(&env.pool, move |c| {
        cards::set_pin_hash(c, &u, &campuspay::tsm::pin_hash(&key, &u, PIN))
    })
    .await
    .unwrap()
    .unwrap();
    let token = env.jwt.issue_cardholder(&user, 600, 1).unwrap();
    Campus {
        pos: env.pos("canteen", "t1").await,
        codes: env.codes(&user).await,
        phone: env.phone(&base, &user),
        queue: env.subscribe("user.x001").await,
        events: sse(&base, &token).await,
        user,
    }
}

/// Opens the event stream; forwards each frame as (event, data). Returns once the platform has
/// subscribed it, so nothing sent afterwards is missed.
async fn sse(base: &str, token: &str) -> tokio::sync::mpsc::Receiver<(String, Value)> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let url = format!("{base}/v1/events");
    let auth = format!("Bearer {token}");
    std::thread::spawn(move || {
        let resp = ureq::get(&url)
            .set("authorization", &auth)
            .call()
            .expect("events stream");
        let mut connected_tx = Some(connected_tx);
        let mut event = None;
        for line in BufReader::new(resp.into_reader()).lines() {
            let Ok(line) = line else { return };
            if line == ": connected" {
                if let Some(c) = connected_tx.take() {
                    let _ = c.send(());
                }
            } else if let Some(e) = line.strip_prefix("event: ") {
                event = Some(e.to_owned());
            } else if let (Some(e), Some(data)) = (event.take(), line.strip_prefix("data: ")) {
                let frame = (e, serde_json::from_str(data).unwrap());
                if tx.blocking_send(frame).is_err() {
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

async fn next_event(c: &mut Campus) -> (String, Value) {
    tokio::time::timeout(WAIT, c.events.recv())
        .await
        .expect("an event in time")
        .expect("the stream stays open")
}

/// Scans `amount`: the POS's first answer (raw too) and the cardholder's request.
async fn scan(c: &mut Campus, code: usize, amount: &str) -> (RequestId, ResultV1, Vec<u8>) {
    let rid = RequestId::new_random();
    c.pos.send_scan(rid, &c.codes[code], amount).await.unwrap();
    let raw = c
        .pos
        .results()
        .wait_raw(RESULT_V1, rid, WAIT)
        .await
        .unwrap();
    schema_check("result.v1", &raw);
    (rid, serde_json::from_slice(&raw).unwrap(), raw)
}

/// The next message on the cardholder's queue: a confirmation request, schema-checked.
async fn request_on_queue(c: &mut Campus) -> (ConfirmationRequestV1, Vec<u8>) {
    let raw = c
        .queue
        .next_message(WAIT)
        .await
        .unwrap()
        .expect("a message on user.x001");
    schema_check("confirmation_request.v1", &raw);
    (serde_json::from_slice(&raw).unwrap(), raw)
}

/// The next message on the cardholder's queue: a result, schema-checked.
async fn result_on_queue(c: &mut Campus) -> ResultV1 {
    let (r, raw) = c.queue.next_raw(WAIT).await.unwrap().expect("a result");
    schema_check("result.v1", &raw);
    r
}

/// Scans 80.00 (+ 8.00 fee): pending at the POS, asked on the phone.
async fn pending_eighty(c: &mut Campus, code: usize) -> (RequestId, ResultV1, String) {
    let (rid, pending, _) = scan(c, code, "80.00").await;
    assert_eq!(
        (pending.status, pending.reason),
        (
            TxState::AwaitingConfirmation,
            Some(DeclineReason::UserConfirming)
        ),
        "{pending:?}"
    );
    assert_eq!(
        (
            pending.amount,
            pending.fee,
            pending.total,
            pending.balance_after
        ),
        (
            Some(Amount::parse("80.00").unwrap()),
            money("8.00"),
            Some(money("88.00")),
            None
        )
    );
    let (request, _) = request_on_queue(c).await;
    let tx = pending.transaction_id.expect("a transaction").to_string();
    assert_eq!(request.transaction_id.to_string(), tx);
    assert_eq!(request.request_id, rid);
    (rid, pending, tx)
}

async fn state_of(env: &TestEnv, tx: &str) -> (String, Option<String>) {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        reason: Option<String>,
    }
    let q = format!("SELECT state, reason FROM transactions WHERE id = '{tx}'");
    let s = db::run(&env.pool, move |c| {
        Ok(diesel::RunQueryDsl::get_result::<S>(
            diesel::sql_query(q),
            c,
        )?)
    })
    .await
    .unwrap();
    (s.state, s.reason)
}

fn expect(a: &campuspay::sim::phone::Answer, status: u16, code: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{a:?}");
}

#[actix_rt::test]
async fn above_the_password_free_amount_the_cardholder_confirms_on_the_phone() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let (rid, pending, tx) = pending_eighty(&mut c, 0).await;
    let (event, data) = next_event(&mut c).await;
    assert_eq!(
        (event.as_str(), &data["transaction_id"]),
        ("confirmation", &Value::from(tx.clone()))
    );
    schema_check("confirmation_request.v1", data.to_string().as_bytes());
    assert_eq!(data["merchant_name"], "Merchant canteen");
    assert_eq!(
        (&data["amount"], &data["total"]),
        (&Value::from("80.00"), &Value::from("88.00"))
    );
    // Nothing moved while it waits; the phone finds it listed.
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    let phone = c.phone.clone();
    let t = tx.clone();
    let (listed, confirmed) = blocking(move || {
        let listed = phone.confirmations().unwrap();
        (listed, phone.confirm(&t, PIN).unwrap())
    })
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(
        listed.body["confirmations"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(listed.body["confirmations"][0], data);
    assert_eq!(
        (confirmed.status, &confirmed.body["status"]),
        (202, &Value::from("processing")),
        "{confirmed:?}"
    );

    // The final result at both: approved once, the balance moved once.
    let done = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Approved, None),
        "{done:?}"
    );
    assert_eq!(done.transaction_id, pending.transaction_id);
    let mine = result_on_queue(&mut c).await;
    assert_eq!(mine.status, TxState::Approved);
    assert_eq!(mine.balance_after, Some(money("112.00")));
    let (event, data) = next_event(&mut c).await;
    assert_eq!(
        (event.as_str(), &data["status"]),
        ("result", &Value::from("approved"))
    );
    assert_eq!(env.balance(&c.user).await, money("112.00"));
    assert_eq!(
        env.account_balance("merchant", "canteen").await,
        money("80.00")
    );

    // Confirmed and final: nothing waits any more, and a late confirmation changes nothing.
    let phone = c.phone.clone();
    let (listed, again) = blocking(move || {
        (
            phone.confirmations().unwrap(),
            phone.confirm(&tx, PIN).unwrap(),
        )
    })
    .await;
    assert_eq!(listed.body["confirmations"], Value::Array(vec![]));
    expect(&again, 409, "not_awaiting_confirmation");
    assert_eq!(
        (&again.body["status"], &again.body["reason"]),
        (&Value::from("approved"), &Value::Null)
    );
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("112.00"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}

#[actix_rt::test]
async fn a_wrong_pin_is_refused_counted_and_the_payment_keeps_waiting() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let (_, _, tx) = pending_eighty(&mut c, 0).await;
    let phone = c.phone.clone();
    let t = tx.clone();
    blocking(move || {
        let wrong = phone.confirm(&t, "000000").unwrap();
        expect(&wrong, 403, "pin_invalid");
        assert_eq!(wrong.body["tries_left"], 4);
        // Not 6 digits: refused without counting.
        let short = phone.confirm(&t, "123").unwrap();
        expect(&short, 403, "pin_invalid");
        assert_eq!(short.body["tries_left"], Value::Null);
        // Not a body with a PIN.
        let none = phone
            .call(
                "POST",
                &format!("/v1/confirmations/{t}/confirm"),
                Some(serde_json::json!({})),
            )
            .unwrap();
        expect(&none, 400, "invalid_body");
        let wrong = phone.confirm(&t, "000001").unwrap();
        assert_eq!(wrong.body["tries_left"], 3);
        // Someone else's payment, or none at all, does not exist for this cardholder.
        expect(
            &phone
                .confirm(&uuid::Uuid::new_v4().to_string(), PIN)
                .unwrap(),
            404,
            "not_found",
        );
        expect(&phone.confirm("not-a-uuid", PIN).unwrap(), 404, "not_found");
        assert_eq!(
            phone.confirmations().unwrap().body["confirmations"][0]["transaction_id"],
            Value::from(t.clone())
        );
    })
    .await;
    assert_eq!(
        state_of(&env, &tx).await,
        (
            "awaiting_confirmation".into(),
            Some("user_confirming".into())
        )
    );
    // Three more wrong PINs lock it: then even the right one is refused, and it still waits.
    let phone = c.phone.clone();
    let t = tx.clone();
    blocking(move || {
        for pin in ["000002", "000003"] {
            expect(&phone.confirm(&t, pin).unwrap(), 403, "pin_invalid");
        }
        let locked = phone.confirm(&t, "000004").unwrap();
        expect(&locked, 403, "pin_locked");
        assert!(locked.body["locked_until"].is_string(), "{locked:?}");
        expect(&phone.confirm(&t, PIN).unwrap(), 403, "pin_locked");
    })
    .await;
    assert_eq!(state_of(&env, &tx).await.0, "awaiting_confirmation");
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn declined_on_the_phone_it_is_declined_at_both_and_nothing_moves() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let (rid, _, tx) = pending_eighty(&mut c, 0).await;
    let phone = c.phone.clone();
    let t = tx.clone();
    let declined = blocking(move || phone.decline(&t).unwrap()).await;
    assert_eq!(declined.status, 200, "{declined:?}");
    assert_eq!(
        (&declined.body["status"], &declined.body["reason"]),
        (&Value::from("declined"), &Value::from("user_declined"))
    );
    let done = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Declined, Some(DeclineReason::UserDeclined))
    );
    let mine = result_on_queue(&mut c).await;
    assert_eq!((mine.status, mine.reason), (done.status, done.reason));
    // Declining again is fine; confirming now is too late.
    let phone = c.phone.clone();
    let (again, confirm) = blocking(move || {
        (
            phone.decline(&tx).unwrap(),
            phone.confirm(&tx, PIN).unwrap(),
        )
    })
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    expect(&confirm, 409, "not_awaiting_confirmation");
    assert_eq!(confirm.body["reason"], "user_declined");
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert_eq!(
        env.account_balance("merchant", "canteen").await,
        money("0.00")
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn unconfirmed_it_times_out_at_both() {
    let mut env = TestEnv::empty().await;
    env.config.confirmation_timeout = Duration::from_secs(10);
    env.start_pipeline();
    let mut c = campus(&mut env).await;
    let (rid, pending, tx) = pending_eighty(&mut c, 0).await;
    // Within the deadline and a sweep or two after it.
    let done = c.pos.wait(rid, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Declined, Some(DeclineReason::ConfirmationTimeout))
    );
    let asked = chrono::DateTime::parse_from_rfc3339(&pending.processed_at).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(&done.processed_at).unwrap();
    assert!(
        ended - asked >= chrono::Duration::seconds(10),
        "{asked} → {ended}"
    );
    let mine = result_on_queue(&mut c).await;
    assert_eq!((mine.status, mine.reason), (done.status, done.reason));
    let phone = c.phone.clone();
    let late = blocking(move || phone.confirm(&tx, PIN).unwrap()).await;
    expect(&late, 409, "not_awaiting_confirmation");
    assert_eq!(
        (&late.body["status"], &late.body["reason"]),
        (
            &Value::from("declined"),
            &Value::from("confirmation_timeout")
        )
    );
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn a_query_while_waiting_gets_the_pending_result_and_a_reversal_voids_it_at_both() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let (rid, _, first_raw) = scan(&mut c, 0, "80.00").await;
    let (request, request_raw) = request_on_queue(&mut c).await;
    // The POS heard nothing: its query gets the same pending answer, byte for byte, and the
    // cardholder the same request.
    c.pos.send_follow_up("query", rid).await.unwrap();
    let again = c
        .pos
        .results()
        .wait_raw(RESULT_V1, rid, WAIT)
        .await
        .unwrap();
    assert_eq!(again, first_raw);
    assert_eq!(request_on_queue(&mut c).await.1, request_raw);

    // The cashier cancels: declined `voided` at both, as a voided payment is today.
    c.pos.send_follow_up("reversal", rid).await.unwrap();
    let voided = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (voided.status, voided.reason),
        (TxState::Declined, Some(DeclineReason::Voided))
    );
    let mine = result_on_queue(&mut c).await;
    assert_eq!((mine.status, mine.reason), (voided.status, voided.reason));
    let tx = request.transaction_id.to_string();
    assert_eq!(
        state_of(&env, &tx).await,
        ("declined".into(), Some("voided".into()))
    );
    let phone = c.phone.clone();
    let late = blocking(move || phone.confirm(&tx, PIN).unwrap()).await;
    expect(&late, 409, "not_awaiting_confirmation");
    assert_eq!(late.body["reason"], "voided");
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert!(env.verify().await.ok);
}

/// A settlement item for payment `tx` of request `rid` (80.00 + 8.00 by card x001 at the
/// canteen), signed with the pipeline's key, claiming a verified PIN: what a redelivery, a
/// confirmation handed over twice or a buggy stage brings settlement.
async fn settlement_item(env: &TestEnv, rid: RequestId, tx: TransactionId) -> Vec<Outgoing> {
    let card_id = env
        .count("SELECT id AS n FROM cards WHERE user_id = 'x001'")
        .await;
    let account_id = env
        .count("SELECT account_id AS n FROM cards WHERE user_id = 'x001'")
        .await;
    let item = PaymentItem {
        request_id: rid,
        mode: PaymentMode::ReverseScan,
        merchant_id: MerchantId::parse("canteen").unwrap(),
        terminal_id: TerminalId::parse("t1").unwrap(),
        amount: Some(Amount::parse("80.00").unwrap()),
        code_hash: None,
        card: Some(CardRef {
            card_id,
            account_id,
            user_id: UserId::parse("x001").unwrap(),
            identity: Identity::External,
        }),
        transaction_id: Some(tx),
        fee: Some(money("8.00")),
        fee_rule_id: None,
        pin_verified: true,
        outcome: Outcome::Pending,
    };
    let out = campuspay::pipeline::to_settlement(
        &env.config.keys.stage_mac,
        env.config.settlement_shards,
        vec![item],
        &campuspay::pipeline::Trace::default(),
    )
    .unwrap();
    assert!(out
        .iter()
        .all(|m| m.exchange == STAGE && m.routing_key.starts_with("settlement.")));
    out
}

/// Up to the order stage: the payment is recorded, its code consumed, and it waits in the fee
/// stage's queue.
const BEFORE_FEE: [StageName; 3] = [StageName::QrValidation, StageName::Order, StageName::Fanout];

#[actix_rt::test]
async fn a_message_claiming_the_pin_does_not_confirm_a_payment() {
    let mut env = TestEnv::empty().await;
    env.start_stages(&BEFORE_FEE);
    let mut c = campus(&mut env).await;
    let rid = RequestId::new_random();
    c.pos.send_scan(rid, &c.codes[0], "80.00").await.unwrap();
    eventually(
        "the payment is recorded",
        WAIT,
        Duration::from_millis(50),
        || async {
            match env.count("SELECT COUNT(*) AS n FROM transactions").await {
                1 => Ok(()),
                n => Err(format!("{n} transactions")),
            }
        },
    )
    .await;
    // The fee the fee stage will find (it keeps a stored one), so that settlement can decide
    // the signed message below before the real one reaches it.
    env.sql("UPDATE transactions SET fee = 8.00").await;
    let tx = transaction_of(&env).await;
    // Before settlement ever saw it, a signed message says the PIN was verified.
    let publisher = Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap();
    publisher
        .publish_all(&settlement_item(&env, rid, tx).await)
        .await
        .unwrap();
    env.stop_pipeline().await;
    env.start_pipeline();
    // Settlement believes the transaction, which records no confirmation: it asks the phone.
    let first = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(first.status, TxState::AwaitingConfirmation, "{first:?}");
    while let Some((r, _)) = c
        .pos
        .results()
        .next_raw(Duration::from_millis(500))
        .await
        .unwrap()
    {
        assert_eq!(r, first, "the same pending answer, and nothing else");
    }
    assert_eq!(
        state_of(&env, &tx.to_string()).await.0,
        "awaiting_confirmation"
    );
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert!(env.verify().await.ok);
}

/// The only transaction's id.
async fn transaction_of(env: &TestEnv) -> TransactionId {
    #[derive(diesel::QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    db::run(&env.pool, |c| {
        Ok(diesel::RunQueryDsl::get_result::<T>(
            diesel::sql_query("SELECT id FROM transactions"),
            c,
        )?)
    })
    .await
    .map(|t| TransactionId(t.id))
    .unwrap()
}

#[actix_rt::test]
async fn redeliveries_and_repeated_confirmations_never_double_anything() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let (rid, pending, first_raw) = scan(&mut c, 0, "80.00").await;
    assert_eq!(pending.status, TxState::AwaitingConfirmation, "{pending:?}");
    let (_, request_raw) = request_on_queue(&mut c).await;
    let publisher = Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap();
    let tx = pending.transaction_id.unwrap();
    let redelivered = settlement_item(&env, rid, tx).await;

    // A message claiming the PIN while nobody confirmed: settlement believes the transaction,
    // not the message, and answers the same pending result again.
    publisher.publish_all(&redelivered).await.unwrap();
    let again = c
        .pos
        .results()
        .wait_raw(RESULT_V1, rid, WAIT)
        .await
        .unwrap();
    assert_eq!(again, first_raw);
    assert_eq!(request_on_queue(&mut c).await.1, request_raw);
    // The POS retries its scan with the same request_id: the same pending answer, one row.
    c.pos.send_scan(rid, &c.codes[0], "80.00").await.unwrap();
    let retried = c
        .pos
        .results()
        .wait_raw(RESULT_V1, rid, WAIT)
        .await
        .unwrap();
    assert_eq!(retried, first_raw);
    assert_eq!(request_on_queue(&mut c).await.1, request_raw);
    assert_eq!(env.balance(&c.user).await, money("200.00"));

    // Confirmed twice in a row: both accepted (or the second finds it settled), paid once.
    let tx = tx.to_string();
    let phone = c.phone.clone();
    let t = tx.clone();
    let (one, two) = blocking(move || {
        (
            phone.confirm(&t, PIN).unwrap(),
            phone.confirm(&t, PIN).unwrap(),
        )
    })
    .await;
    assert_eq!(one.status, 202, "{one:?}");
    assert!(
        two.status == 202 || (two.status == 409 && two.body["status"] == "approved"),
        "{two:?}"
    );
    let done = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(done.status, TxState::Approved, "{done:?}");
    let done_raw = serde_json::to_vec(&done).unwrap();
    // Whatever else arrives for this request is that same result (a second hand-over).
    while let Some((r, _)) = c
        .pos
        .results()
        .next_raw(Duration::from_millis(500))
        .await
        .unwrap()
    {
        assert_eq!(r, done);
    }
    // A redelivery after the payment was settled: the same result again, nothing moves.
    publisher.publish_all(&redelivered).await.unwrap();
    let resent = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(serde_json::to_vec(&resent).unwrap(), done_raw);
    assert_eq!(env.balance(&c.user).await, money("112.00"));
    assert_eq!(
        env.account_balance("merchant", "canteen").await,
        money("80.00")
    );
    assert_eq!(
        env.count(&format!(
            "SELECT COUNT(*) AS n FROM journal_entries WHERE transaction_id = '{tx}'"
        ))
        .await,
        1
    );
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM transactions").await, 1);
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn what_would_be_declined_anyway_is_declined_at_once() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    // 190.00 + 19.00 is more than the 200.00 on the card: no point asking the cardholder.
    let (_, r, _) = scan(&mut c, 0, "190.00").await;
    assert_eq!(
        (r.status, r.reason),
        (TxState::Declined, Some(DeclineReason::InsufficientBalance))
    );
    // Over the per-payment limit (200.00).
    let (_, r, _) = scan(&mut c, 1, "200.01").await;
    assert_eq!(r.reason, Some(DeclineReason::LimitExceeded));
    // A card without a PIN has nothing to confirm with.
    env.sql("UPDATE cards SET pin_hash = NULL WHERE user_id = 'x001'")
        .await;
    let (_, r, _) = scan(&mut c, 2, "80.00").await;
    assert_eq!(r.reason, Some(DeclineReason::PinRequired));
    // At the password-free amount nobody is asked.
    let (_, r, _) = scan(&mut c, 3, "50.00").await;
    assert_eq!(r.status, TxState::Approved);
    let mine: Vec<String> = {
        let mut kinds = Vec::new();
        while let Some(raw) = c
            .queue
            .next_message(Duration::from_millis(500))
            .await
            .unwrap()
        {
            let v: Value = serde_json::from_slice(&raw).unwrap();
            kinds.push(v["type"].as_str().unwrap_or("").to_owned());
        }
        kinds
    };
    assert!(mine.iter().all(|k| k == "result.v1"), "{mine:?}");
    assert_eq!(env.balance(&c.user).await, money("145.00"));
}
