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

/// One batch, many outcomes: requests are queued while no stage runs, so the stages meet them
/// together and handle them as one batch each (set-based SQL). Every payment still gets its
/// own correct result, and a card's payments are decided in the order they were sent.
#[actix_rt::test]
async fn a_batch_with_mixed_outcomes_gives_each_payment_its_own_result() {
    use campuspay::broker::topology::StageName;
    let mut env = TestEnv::empty().await;
    env.merchant("m1", &["t1", "t2"]).await;
    env.fee(Identity::Temporary, "0.10", None).await;
    let a = env.card("s001", Identity::Student, "25.00").await;
    let b = env.card("s002", Identity::Student, "5.00").await;
    let c = env.card("s003", Identity::Student, "50.00").await;
    let d = env.card("v001", Identity::Temporary, "50.00").await;
    let (ca, cb, cc, cd) = (
        env.codes(&a).await,
        env.codes(&b).await,
        env.codes(&c).await,
        env.codes(&d).await,
    );
    let mut t1 = env.pos("m1", "t1").await;
    let mut t2 = env.pos("m1", "t2").await;
    let repeated = RequestId::new_random();
    // (till, request, code, amount, expected status, expected reason)
    type Step<'a> = (
        u8,
        RequestId,
        String,
        &'a str,
        TxState,
        Option<DeclineReason>,
    );
    let plan: Vec<Step> = vec![
        // Card a, in order: 10 fits (15 left), 20 does not, 5 fits (10 left).
        (
            1,
            RequestId::new_random(),
            ca[0].clone(),
            "10.00",
            TxState::Approved,
            None,
        ),
        (
            1,
            RequestId::new_random(),
            ca[1].clone(),
            "20.00",
            TxState::Declined,
            Some(DeclineReason::InsufficientBalance),
        ),
        (
            1,
            RequestId::new_random(),
            ca[2].clone(),
            "5.00",
            TxState::Approved,
            None,
        ),
        (
            2,
            RequestId::new_random(),
            cb[0].clone(),
            "8.00",
            TxState::Declined,
            Some(DeclineReason::InsufficientBalance),
        ),
        // One code at two tills within the batch: the first wins.
        (
            1,
            RequestId::new_random(),
            cc[0].clone(),
            "1.00",
            TxState::Approved,
            None,
        ),
        (
            2,
            RequestId::new_random(),
            cc[0].clone(),
            "2.00",
            TxState::Declined,
            Some(DeclineReason::CodeUsed),
        ),
        (
            2,
            RequestId::new_random(),
            "889999999999999999".into(),
            "1.00",
            TxState::Declined,
            Some(DeclineReason::UnknownCode),
        ),
        // A fee-paying card, and the same request sent twice within the batch.
        (2, repeated, cd[0].clone(), "20.00", TxState::Approved, None),
        (2, repeated, cd[0].clone(), "20.00", TxState::Approved, None),
    ];
    for (till, rid, code, amount, _, _) in &plan {
        let pos = if *till == 1 { &t1 } else { &t2 };
        pos.send_scan(*rid, code, amount).await.unwrap();
    }
    env.start_stages(&StageName::ALL);
    for (till, rid, _, amount, status, reason) in &plan {
        let pos = if *till == 1 { &mut t1 } else { &mut t2 };
        let r = pos.wait(*rid, WAIT).await.unwrap();
        assert_eq!((r.status, r.reason), (*status, *reason), "{amount} {r:?}");
    }
    assert_eq!(env.balance(&a).await, money("10.00"));
    assert_eq!(env.balance(&b).await, money("5.00"));
    assert_eq!(env.balance(&c).await, money("49.00"));
    // 20.00 plus the 10 % temporary-card fee, once.
    assert_eq!(env.balance(&d).await, money("28.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("36.00"));
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("2.00")
    );
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = 'payment'")
            .await,
        4
    );
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}
