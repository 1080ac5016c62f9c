//! Payments sent while no worker runs wait in durable queues; a graceful stop in the middle of
//! a stream loses and doubles nothing.

use crate::helpers::*;
use campuspay::domain::{Identity, RequestId, TxState};

#[actix_rt::test]
async fn payments_wait_for_workers_and_survive_a_stop_mid_stream() {
    let mut env = TestEnv::empty().await;
    env.merchant("m1", &["t1"]).await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(
            env.card(&format!("s{i:03}"), Identity::Student, "100.00")
                .await,
        );
    }
    let mut pos = env.pos("m1", "t1").await;
    let mut sent = Vec::new();
    // 30 payments of 1.00 while nothing runs …
    for (k, u) in users.iter().enumerate() {
        for code in env.codes(u).await.into_iter().take(5) {
            let rid = RequestId::new_random();
            pos.send_scan(rid, &code, "1.00").await.unwrap();
            sent.push((rid, k, code));
        }
    }
    // … then start, stop after the first result, and start again.
    env.start_pipeline();
    let first = pos
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("first result");
    env.stop_pipeline().await;
    env.start_pipeline();
    let mut seen = std::collections::HashMap::new();
    seen.insert(first.0.request_id, first.0);
    while seen.len() < sent.len() {
        let (r, _) = pos
            .results()
            .next_raw(WAIT)
            .await
            .unwrap()
            .expect("every request answered");
        if let Some(prev) = seen.get(&r.request_id) {
            assert_eq!(prev, &r, "a re-sent result must be identical");
        }
        seen.insert(r.request_id, r);
    }
    assert!(
        seen.values().all(|r| r.status == TxState::Approved),
        "{seen:?}"
    );
    for u in &users {
        assert_eq!(env.balance(u).await, money("95.00"));
    }
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = 'payment'")
            .await,
        30
    );
    assert!(env.verify().await.ok);
}
