//! POS timeouts: `query.v1` and `reversal.v1` before settlement, after it, twice, and for a
//! request never seen. Every path ends in exactly one final state per request.

use crate::helpers::*;
use campuspay::broker::topology::StageName;
use campuspay::domain::{DeclineReason, Identity, RequestId, TxState};
use campuspay::messages::external::{QueryState, QueryStatusV1, QUERY_STATUS_V1};

const BEFORE_SETTLEMENT: [StageName; 4] = [
    StageName::QrValidation,
    StageName::Order,
    StageName::Fee,
    StageName::Fanout,
];

#[actix_rt::test]
async fn reversal_after_settlement_refunds_with_the_fee_and_only_once() {
    let env = TestEnv::start().await;
    let (user, mut pos, rid, paid) = env.paid_twenty_with_fee().await;
    assert_eq!(paid.status, TxState::Approved);
    assert_eq!(env.balance(&user).await, money("78.00"));

    // The POS asks: it gets the same result again.
    pos.send_follow_up("query", rid).await.unwrap();
    assert_eq!(pos.wait(rid, WAIT).await.unwrap(), paid);

    for _ in 0..2 {
        pos.send_follow_up("reversal", rid).await.unwrap();
        let (r, raw) = pos
            .results()
            .next_raw(WAIT)
            .await
            .unwrap()
            .expect("a reversal result");
        schema_check("result.v1", &raw);
        assert_eq!(
            (r.request_id, r.status, r.reason),
            (rid, TxState::Reversed, None)
        );
        assert_eq!(r.transaction_id, paid.transaction_id);
    }
    assert_quiet(pos.results()).await;
    assert_eq!(env.balance(&user).await, money("100.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("0.00"));
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("0.00")
    );
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = 'reversal'")
            .await,
        1
    );
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}

#[actix_rt::test]
async fn reversal_before_settlement_voids_the_request() {
    let mut env = TestEnv::empty().await;
    env.start_stages(&BEFORE_SETTLEMENT);
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let rid = RequestId::new_random();
    pos.send_scan(rid, &codes[0], "10.00").await.unwrap();
    // Wait until the order is recorded and waiting for settlement.
    for _ in 0..100 {
        if env
            .count("SELECT COUNT(*) AS n FROM transactions WHERE fee IS NOT NULL")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pos.send_follow_up("query", rid).await.unwrap();
    let raw = pos
        .results()
        .wait_raw(QUERY_STATUS_V1, rid, WAIT)
        .await
        .unwrap();
    schema_check("query_status.v1", &raw);
    let status: QueryStatusV1 = serde_json::from_slice(&raw).unwrap();
    assert_eq!(status.state, QueryState::Processing);

    pos.send_follow_up("reversal", rid).await.unwrap();
    let voided = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (voided.status, voided.reason),
        (TxState::Declined, Some(DeclineReason::Voided))
    );

    // Settlement comes back: it declines the voided request, and nothing moves.
    env.stop_pipeline().await;
    env.start_pipeline();
    let again = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(again, voided, "settlement re-sends the same voided result");
    assert_eq!(env.balance(&user).await, money("50.00"));
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn reversal_of_an_unknown_request_is_answered_and_voids_it_for_good() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let rid = RequestId::new_random();

    pos.send_follow_up("query", rid).await.unwrap();
    let raw = pos
        .results()
        .wait_raw(QUERY_STATUS_V1, rid, WAIT)
        .await
        .unwrap();
    let status: QueryStatusV1 = serde_json::from_slice(&raw).unwrap();
    assert_eq!(status.state, QueryState::Unknown);

    pos.send_follow_up("reversal", rid).await.unwrap();
    let r = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (r.status, r.reason),
        (TxState::Declined, Some(DeclineReason::Voided))
    );

    // The scan arrives late (it was stuck somewhere): it is voided, and the code is not spent.
    pos.send_scan(rid, &codes[0], "10.00").await.unwrap();
    let late = pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(late, r);
    assert_eq!(env.balance(&user).await, money("50.00"));
    let ok = pos
        .pay(RequestId::new_random(), &codes[0], "10.00", WAIT)
        .await
        .unwrap();
    assert_eq!(ok.status, TxState::Approved);
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn another_terminal_cannot_reverse_my_payment() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1", "t2"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let mut other = env.pos("m1", "t2").await;
    let codes = env.codes(&user).await;
    let rid = RequestId::new_random();
    assert_eq!(
        pos.pay(rid, &codes[0], "10.00", WAIT).await.unwrap().status,
        TxState::Approved
    );
    // t2 names t1's request: it is looked up in t2's own scope, so it is unknown there.
    other.send_follow_up("reversal", rid).await.unwrap();
    let r = other.wait(rid, WAIT).await.unwrap();
    assert_eq!(r.reason, Some(DeclineReason::Voided));
    assert_eq!(env.balance(&user).await, money("40.00"));
    // A reversal with t1's routing key but t2's token is refused.
    let body = serde_json::json!({
        "type": "reversal.v1", "request_id": rid.to_string(), "merchant_id": "m1",
        "terminal_id": "t1", "sent_at": "2026-11-26T12:00:00Z"
    });
    let t2_token = env
        .jwt
        .issue_terminal(&other.merchant, &other.terminal, 1)
        .unwrap();
    pos.publish_raw(
        &pos.routing_key("reversal"),
        body.to_string().into_bytes(),
        Some(Some(format!("Bearer {t2_token}"))),
    )
    .await
    .unwrap();
    let raw = pos
        .results()
        .wait_raw(QUERY_STATUS_V1, rid, WAIT)
        .await
        .unwrap();
    let status: QueryStatusV1 = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        (status.state, status.reason),
        (QueryState::Rejected, Some(DeclineReason::Unauthorized))
    );
    assert_eq!(env.balance(&user).await, money("40.00"));
}

#[actix_rt::test]
async fn a_reversal_after_a_partial_refund_gives_back_only_the_rest() {
    let env = TestEnv::start().await;
    let (user, mut pos, rid, paid) = env.paid_twenty_with_fee().await;
    let tx = paid.transaction_id.unwrap().0;
    campuspay::db::run(&env.pool, move |c| {
        campuspay::db::refunds::refund(
            c,
            campuspay::domain::TransactionId(tx),
            Some(campuspay::domain::Amount::parse("5.00").unwrap()),
            uuid::Uuid::new_v4(),
            "partial",
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(env.balance(&user).await, money("83.50"));
    pos.send_follow_up("reversal", rid).await.unwrap();
    assert_eq!(pos.wait(rid, WAIT).await.unwrap().status, TxState::Reversed);
    // 78.00 after paying 22.00; 5.50 back by the refund; 16.50 back by the reversal — not 22.00.
    assert_eq!(env.balance(&user).await, money("100.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("0.00"));
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("0.00")
    );
    assert!(env.verify().await.ok);
}
