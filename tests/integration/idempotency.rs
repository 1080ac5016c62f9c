//! The same request_id never moves money twice and always gets the same result.

use crate::helpers::*;
use campuspay::domain::{Identity, RequestId, TxState};

#[actix_rt::test]
async fn the_same_request_three_times_debits_once_with_three_identical_results() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    env.fee(Identity::Temporary, "0.10", None).await;
    let user = env.card("v001", Identity::Temporary, "100.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let rid = RequestId::new_random();

    // Three sends back to back (a POS retrying fast), then a fourth after the result is known.
    for _ in 0..3 {
        pos.send_scan(rid, &codes[0], "12.50").await.unwrap();
    }
    let mut raws = Vec::new();
    for _ in 0..3 {
        let (r, raw) = pos
            .results()
            .next_raw(WAIT)
            .await
            .unwrap()
            .expect("a result per send");
        assert_eq!(r.request_id, rid);
        assert_eq!(r.status, TxState::Approved, "{r:?}");
        raws.push(raw);
    }
    pos.send_scan(rid, &codes[0], "12.50").await.unwrap();
    let (_, late) = pos
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("a late retry result");
    raws.push(late);
    assert!(
        raws.windows(2).all(|w| w[0] == w[1]),
        "results differ: {raws:?}"
    );
    assert_quiet(pos.results()).await;

    // 12.50 + 1.25 fee, once.
    assert_eq!(env.balance(&user).await, money("86.25"));
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM transactions").await, 1);
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = 'payment'")
            .await,
        1
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn a_retry_with_a_different_body_gets_the_first_result() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;
    let rid = RequestId::new_random();
    let first = pos.pay(rid, &codes[0], "10.00", WAIT).await.unwrap();
    assert_eq!(first.status, TxState::Approved);
    // Same request id, another code and amount: still the first answer, nothing moves.
    let again = pos.pay(rid, &codes[1], "99.00", WAIT).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(env.balance(&user).await, money("90.00"));
    // The second code was not consumed.
    let r = pos
        .pay(RequestId::new_random(), &codes[1], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
}
