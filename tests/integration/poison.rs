//! A poison message (one that fails whatever the stage does) is isolated from its batch, handed
//! back to the broker, and dead-lettered after the queue's delivery limit — while the payments
//! around it go through.

use crate::helpers::*;
use campuspay::broker::topology::STAGE;
use campuspay::broker::{Outgoing, Publisher};
use campuspay::db;
use campuspay::domain::{
    Amount, Identity, MerchantId, PaymentMode, RequestId, TerminalId, TxState,
};
use campuspay::messages::internal::{Outcome, PaymentItem, StageBatch};
use std::time::{Duration, Instant};

#[actix_rt::test]
async fn a_poison_stage_message_is_dead_lettered_and_the_rest_goes_on() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let card = db::run(&env.pool, |c| {
        let id: i64 = {
            use campuspay::db::schema::cards::dsl::*;
            use diesel::prelude::*;
            cards.select(id).first(c)?
        };
        db::payments::load_card_ref(c, id)
    })
    .await
    .unwrap();
    // An order for a merchant that does not exist: the insert violates a foreign key, every
    // time. (QR validation never lets such an item through; a bug or a hand-made message could.)
    let poison = PaymentItem {
        request_id: RequestId::new_random(),
        mode: PaymentMode::ReverseScan,
        merchant_id: MerchantId::parse("ghost").unwrap(),
        terminal_id: TerminalId::parse("t1").unwrap(),
        amount: Some(Amount::parse("1.00").unwrap()),
        code_hash: Some(vec![0; 32]),
        card: Some(card),
        transaction_id: None,
        fee: None,
        fee_rule_id: None,
        pin_verified: false,
        outcome: Outcome::Pending,
    };
    let body = StageBatch {
        items: vec![poison],
    }
    .encode(env.config.keys.stage_mac.expose())
    .unwrap();
    let publisher = Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap();
    let started = Instant::now();
    publisher
        .publish(Outgoing::binary(STAGE, "order".into(), body.clone()))
        .await
        .unwrap();
    // Meanwhile, real payments.
    let codes = env.codes(&user).await;
    let mut pos = env.pos("m1", "t1").await;
    for code in codes.iter().take(3) {
        let r = pos
            .pay(RequestId::new_random(), code, "2.00", WAIT)
            .await
            .unwrap();
        assert_eq!(r.status, TxState::Approved);
    }
    let d = take_dead_letters(&env, 1, Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(d.data, body, "the dead letter is the poison message itself");
    assert_eq!(
        d.routing_key.as_str(),
        "order",
        "dead-lettered with its stage"
    );
    let headers = format!("{:?}", d.properties.headers());
    assert!(
        headers.contains("x-death"),
        "the broker's delivery-limit dead-lettering: {headers}"
    );
    eprintln!("poison dead-lettered after {:?}", started.elapsed());
    assert_eq!(env.balance(&user).await, money("44.00"));
    assert!(env.verify().await.ok);
}
