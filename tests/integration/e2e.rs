//! A reverse-scan payment end to end: approved, both result queues, balances and ledger.

use crate::helpers::*;
use campuspay::domain::{Identity, RequestId, TxState};
use campuspay::messages::external::ResultV1;

#[actix_rt::test]
async fn a_scan_is_approved_and_both_queues_get_the_result() {
    let env = TestEnv::start().await;
    env.merchant("canteen", &["t1"]).await;
    env.fee(Identity::External, "0.15", None).await;
    let user = env.card("x001", Identity::External, "100.00").await;
    let mut phone = env.subscribe("user.x001").await;
    let mut pos = env.pos("canteen", "t1").await;
    let codes = env.codes(&user).await;
    assert_eq!(codes.len(), 10);

    let rid = RequestId::new_random();
    pos.send_scan(rid, &codes[0], "20.00").await.unwrap();
    let (r, raw) = pos
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("a result at the POS");
    schema_check("result.v1", &raw);
    assert_eq!(r.request_id, rid);
    assert_eq!(r.status, TxState::Approved, "{r:?}");
    assert_eq!(r.reason, None);
    assert_eq!(r.amount.unwrap().to_string(), "20.00");
    assert_eq!(r.fee.to_string(), "3.00");
    assert_eq!(r.total.unwrap().to_string(), "23.00");
    assert_eq!(r.user_id.as_ref().map(|u| u.as_str()), Some("x001"));
    assert_eq!(r.balance_after, None, "the POS copy carries no balance");
    assert!(r.transaction_id.is_some());

    let (u, raw) = phone
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("a result for the cardholder");
    schema_check("result.v1", &raw);
    assert_eq!(u.balance_after.unwrap().to_string(), "77.00");
    assert_eq!(
        ResultV1 {
            balance_after: None,
            ..u
        },
        r,
        "same result on both queues"
    );

    assert_eq!(env.balance(&user).await, money("77.00"));
    assert_eq!(
        env.account_balance("merchant", "canteen").await,
        money("20.00")
    );
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("3.00")
    );
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.postings_sum, "0.00");
    let rule_stored = env
        .count("SELECT COUNT(*) AS n FROM transactions WHERE fee_rule_id IS NOT NULL AND state = 'approved'")
        .await;
    assert_eq!(
        rule_stored, 1,
        "the fee rule used is stored on the transaction"
    );
    assert_quiet(pos.results()).await;
    assert_quiet(&mut phone).await;
}

#[actix_rt::test]
async fn merchant_specific_fee_rule_wins_and_no_rule_means_no_fee() {
    let env = TestEnv::start().await;
    env.merchant("shop", &["t1"]).await;
    env.merchant("canteen", &["t1"]).await;
    env.fee(Identity::Temporary, "0.10", None).await;
    env.fee(Identity::Temporary, "0", Some("shop")).await;
    let temp = env.card("v001", Identity::Temporary, "100.00").await;
    let staff = env.card("f001", Identity::Staff, "100.00").await;
    let tc = env.codes(&temp).await;
    let sc = env.codes(&staff).await;
    let mut shop = env.pos("shop", "t1").await;
    let mut canteen = env.pos("canteen", "t1").await;

    let r = shop
        .pay(RequestId::new_random(), &tc[0], "10.05", WAIT)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.fee.to_string()),
        (TxState::Approved, "0.00".into())
    );
    // 10.05 × 0.10 = 1.005 → 1.01 (half-up)
    let r = canteen
        .pay(RequestId::new_random(), &tc[1], "10.05", WAIT)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.fee.to_string()),
        (TxState::Approved, "1.01".into())
    );
    let r = canteen
        .pay(RequestId::new_random(), &sc[0], "10.05", WAIT)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.fee.to_string()),
        (TxState::Approved, "0.00".into())
    );
    assert_eq!(env.balance(&temp).await, money("78.89"));
    assert_eq!(
        env.account_balance("fee_income", "school").await,
        money("1.01")
    );
    assert!(env.verify().await.ok);
}

#[actix_rt::test]
async fn topup_is_idempotent_on_its_id() {
    let env = TestEnv::empty().await;
    let user = env.card("s001", Identity::Student, "0").await;
    let entry = uuid::Uuid::new_v4();
    for _ in 0..3 {
        let u = user.clone();
        campuspay::db::run(&env.pool, move |c| {
            campuspay::db::admin::topup(
                c,
                &u,
                campuspay::domain::Amount::parse("50.00").unwrap(),
                entry,
                "retry",
            )
        })
        .await
        .unwrap()
        .unwrap();
    }
    assert_eq!(env.balance(&user).await, money("50.00"));
    assert!(env.verify().await.ok);
}
