//! Races: many codes of one card at once, one code at two terminals at once.

use crate::helpers::*;
use campuspay::domain::{DeclineReason, Identity, RequestId, TxState};
use futures_util::future::join_all;

#[actix_rt::test]
async fn ten_codes_of_one_card_at_once_only_what_the_balance_covers() {
    let env = TestEnv::start().await;
    let terminals: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = terminals.iter().map(String::as_str).collect();
    env.merchant("m1", &refs).await;
    let user = env.card("s001", Identity::Student, "40.00").await;
    let codes = env.codes(&user).await;
    let mut tills = Vec::new();
    for t in &terminals {
        tills.push(env.pos("m1", t).await);
    }
    // Send all ten before reading any result.
    let mut ids = Vec::new();
    for (pos, code) in tills.iter().zip(&codes) {
        let rid = RequestId::new_random();
        pos.send_scan(rid, code, "10.00").await.unwrap();
        ids.push(rid);
    }
    let results = join_all(
        tills
            .iter_mut()
            .zip(ids)
            .map(|(pos, rid)| async move { pos.wait(rid, WAIT).await.unwrap() }),
    )
    .await;
    let approved = results
        .iter()
        .filter(|r| r.status == TxState::Approved)
        .count();
    let insufficient = results
        .iter()
        .filter(|r| r.reason == Some(DeclineReason::InsufficientBalance))
        .count();
    assert_eq!((approved, insufficient), (4, 6), "{results:?}");
    let mut after: Vec<String> = results
        .iter()
        .filter_map(|r| r.balance_after.map(|b| b.to_string()))
        .collect();
    after.sort();
    assert!(after.is_empty(), "POS copies carry no balance");
    assert_eq!(env.balance(&user).await, money("0.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("40.00"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}

#[actix_rt::test]
async fn one_code_at_two_terminals_at_once_one_wins() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1", "t2"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    let codes = env.codes(&user).await;
    let mut a = env.pos("m1", "t1").await;
    let mut b = env.pos("m1", "t2").await;
    let (ra, rb) = (RequestId::new_random(), RequestId::new_random());
    let (sa, sb) = tokio::join!(
        a.send_scan(ra, &codes[0], "8.00"),
        b.send_scan(rb, &codes[0], "8.00")
    );
    sa.unwrap();
    sb.unwrap();
    let (x, y) = tokio::join!(a.wait(ra, WAIT), b.wait(rb, WAIT));
    let mut statuses = vec![
        (x.unwrap().reason.map(|r| r.as_str()), "a"),
        (y.unwrap().reason.map(|r| r.as_str()), "b"),
    ];
    statuses.sort();
    assert_eq!(statuses[0].0, None, "one approved: {statuses:?}");
    assert_eq!(statuses[1].0, Some("code_used"), "{statuses:?}");
    assert_eq!(env.balance(&user).await, money("92.00"));
    assert!(env.verify().await.ok);
}
