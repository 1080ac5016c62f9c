//! Every decline reason reachable in reverse scan produces exactly one declined result and
//! changes no balance; unparseable input is dead-lettered and the pipeline goes on.

use crate::helpers::*;
use campuspay::domain::{CodePrefix, DeclineReason, Identity, PaymentCode, RequestId, TxState};
use campuspay::sim::pos::Pos;
use serde_json::json;

async fn expect_decline(pos: &mut Pos, rid: RequestId, reason: DeclineReason) {
    let (r, raw) = pos
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("a result");
    schema_check("result.v1", &raw);
    assert_eq!(r.request_id, rid);
    assert_eq!(r.status, TxState::Declined, "{r:?}");
    assert_eq!(r.reason, Some(reason), "{r:?}");
    assert_quiet(pos.results()).await;
}

#[actix_rt::test]
async fn each_reason_declines_once_and_moves_nothing() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    env.fee(Identity::Student, "0", None).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let frozen = env.card("s002", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let codes = env.codes(&user).await;

    // unknown_code: well-formed (Luhn-valid) but never issued; and a mistyped one.
    let never = PaymentCode::generate(&mut rand::rngs::OsRng, env.config.code_prefix);
    let rid = RequestId::new_random();
    pos.send_scan(rid, never.expose(), "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::UnknownCode).await;
    let mut typo = codes[0].clone();
    typo.replace_range(17..18, if &codes[0][17..] == "0" { "1" } else { "0" });
    let rid = RequestId::new_random();
    pos.send_scan(rid, &typo, "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::UnknownCode).await;

    // code_used: a second request with an already used code.
    let ok = pos
        .pay(RequestId::new_random(), &codes[0], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(ok.status, TxState::Approved);
    let rid = RequestId::new_random();
    pos.send_scan(rid, &codes[0], "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::CodeUsed).await;

    // code_expired
    let old = env.codes(&user).await;
    env.sql(
        "UPDATE payment_codes SET expires_at = now() - interval '1 second' WHERE state = 'unused'",
    )
    .await;
    let rid = RequestId::new_random();
    pos.send_scan(rid, &old[0], "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::CodeExpired).await;

    // code_revoked: a new batch supersedes the unused codes of the previous one.
    let first = env.codes(&user).await;
    let second = env.codes(&user).await;
    let rid = RequestId::new_random();
    pos.send_scan(rid, &first[0], "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::CodeRevoked).await;

    // insufficient_balance
    let rid = RequestId::new_random();
    pos.send_scan(rid, &second[0], "45.01").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::InsufficientBalance).await;

    // card_frozen
    let fc = env.codes(&frozen).await;
    env.sql("UPDATE cards SET status = 'frozen' WHERE user_id = 's002'")
        .await;
    let rid = RequestId::new_random();
    pos.send_scan(rid, &fc[0], "5.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::CardFrozen).await;

    // invalid_amount
    for bad in ["0", "-1", "1.001", "1e3", "NaN", " 1.00"] {
        let rid = RequestId::new_random();
        pos.send_scan(rid, &second[1], bad).await.unwrap();
        expect_decline(&mut pos, rid, DeclineReason::InvalidAmount).await;
    }

    // invalid_message: parseable, has a request id, but an extra field.
    let rid = RequestId::new_random();
    let mut body: serde_json::Value =
        serde_json::from_slice(&pos.scan_body(rid, &second[1], "1.00")).unwrap();
    body["tip"] = json!("1.00");
    pos.publish_raw(
        &pos.routing_key("scan"),
        body.to_string().into_bytes(),
        None,
    )
    .await
    .unwrap();
    expect_decline(&mut pos, rid, DeclineReason::InvalidMessage).await;

    // unauthorized: no token, a forged token, another terminal's token, a body naming another
    // terminal.
    let rid = RequestId::new_random();
    pos.publish_raw(
        &pos.routing_key("scan"),
        pos.scan_body(rid, &second[1], "1.00"),
        Some(None),
    )
    .await
    .unwrap();
    expect_decline(&mut pos, rid, DeclineReason::Unauthorized).await;
    let forger = campuspay::auth::JwtKeys::new(&campuspay::keys::Keys::derive(
        b"not-the-real-secret-not-the-real-secret",
        b"not-the-real-key-not-the-real-key-xx",
    ));
    let forged = forger
        .issue_terminal(&pos.merchant, &pos.terminal, 1)
        .unwrap();
    let rid = RequestId::new_random();
    pos.publish_raw(
        &pos.routing_key("scan"),
        pos.scan_body(rid, &second[1], "1.00"),
        Some(Some(format!("Bearer {forged}"))),
    )
    .await
    .unwrap();
    expect_decline(&mut pos, rid, DeclineReason::Unauthorized).await;
    let other = env
        .jwt
        .issue_terminal(
            &pos.merchant,
            &campuspay::domain::TerminalId::parse("t2").unwrap(),
            1,
        )
        .unwrap();
    let rid = RequestId::new_random();
    pos.publish_raw(
        &pos.routing_key("scan"),
        pos.scan_body(rid, &second[1], "1.00"),
        Some(Some(format!("Bearer {other}"))),
    )
    .await
    .unwrap();
    expect_decline(&mut pos, rid, DeclineReason::Unauthorized).await;
    let rid = RequestId::new_random();
    let body = String::from_utf8(pos.scan_body(rid, &second[1], "1.00"))
        .unwrap()
        .replace("\"t1\"", "\"t2\"");
    pos.publish_raw(&pos.routing_key("scan"), body.into_bytes(), None)
        .await
        .unwrap();
    expect_decline(&mut pos, rid, DeclineReason::Unauthorized).await;

    // unknown_terminal and unknown_merchant: valid tokens, but not registered.
    let mut ghost_t = env.pos("m1", "t9").await;
    let rid = RequestId::new_random();
    ghost_t.send_scan(rid, &second[1], "1.00").await.unwrap();
    expect_decline(&mut ghost_t, rid, DeclineReason::UnknownTerminal).await;
    let mut ghost_m = env.pos("ghost", "t1").await;
    let rid = RequestId::new_random();
    ghost_m.send_scan(rid, &second[1], "1.00").await.unwrap();
    expect_decline(&mut ghost_m, rid, DeclineReason::UnknownMerchant).await;

    // Only the one approved payment moved money.
    assert_eq!(env.balance(&user).await, money("45.00"));
    assert_eq!(env.balance(&frozen).await, money("50.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("5.00"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
    // And the code that was only ever offered with bad amounts is still usable.
    let r = pos
        .pay(RequestId::new_random(), &second[1], "1.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
}

/// A campus that moved to another prefix (here `77`, from `CAMPUSPAY_CODE_PREFIX`) issues codes
/// with it and still takes the codes the TSM issued with `28` before, until they expire; a
/// Luhn-valid code with any third prefix is not ours.
#[actix_rt::test]
async fn the_configured_prefix_and_the_legacy_28_pay_and_no_other() {
    let mut env = TestEnv::empty().await;
    env.config.code_prefix = CodePrefix::parse("77").unwrap();
    env.start_pipeline();
    env.merchant("m1", &["t1"]).await;
    env.fee(Identity::Student, "0", None).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;

    // A batch issued before the change: codes starting with 28.
    let legacy = campuspay::tsm::issue(
        &env.pool,
        env.config.keys.payment_codes.expose(),
        &user,
        env.config.code_ttl,
        CodePrefix::LEGACY,
    )
    .await
    .unwrap()
    .unwrap()
    .codes;
    assert!(legacy.iter().all(|c| c.starts_with("28")), "{legacy:?}");
    let r = pos
        .pay(RequestId::new_random(), &legacy[0], "2.00", WAIT)
        .await
        .unwrap();
    assert_eq!((r.status, r.reason), (TxState::Approved, None), "{r:?}");

    // The next batch (which supersedes the old one) has the configured prefix.
    let fresh = env.codes(&user).await;
    assert!(fresh.iter().all(|c| c.starts_with("77")), "{fresh:?}");
    let r = pos
        .pay(RequestId::new_random(), &fresh[0], "3.00", WAIT)
        .await
        .unwrap();
    assert_eq!((r.status, r.reason), (TxState::Approved, None), "{r:?}");
    let rid = RequestId::new_random();
    pos.send_scan(rid, &legacy[1], "1.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::CodeRevoked).await;

    // The default prefix is not this campus's: unknown, like any code never issued.
    let foreign = PaymentCode::generate(&mut rand::rngs::OsRng, CodePrefix::DEFAULT);
    let rid = RequestId::new_random();
    pos.send_scan(rid, foreign.expose(), "1.00").await.unwrap();
    expect_decline(&mut pos, rid, DeclineReason::UnknownCode).await;
    assert_eq!(env.balance(&user).await, money("45.00"));
}

#[actix_rt::test]
async fn unparseable_messages_are_dead_lettered_with_a_reason_and_the_pipeline_goes_on() {
    let env = TestEnv::start().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let mut pos = env.pos("m1", "t1").await;
    let key = pos.routing_key("scan");
    pos.publish_raw(&key, b"this is not json".to_vec(), None)
        .await
        .unwrap();
    pos.publish_raw(
        &key,
        br#"{"type":"scan.v1","request_id":"nope"}"#.to_vec(),
        None,
    )
    .await
    .unwrap();
    pos.publish_raw(
        &key,
        br#"{"type":"scan.v9","request_id":"6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10"}"#.to_vec(),
        None,
    )
    .await
    .unwrap();
    pos.publish_raw(&key, vec![b' '; 20_000], None)
        .await
        .unwrap();

    let mut reasons = Vec::new();
    for d in take_dead_letters(&env, 4, WAIT).await {
        assert_eq!(
            header(&d, "x-campuspay-stage").as_deref(),
            Some("qr_validation")
        );
        assert_eq!(header(&d, "x-original-routing-key"), Some(key.clone()));
        reasons.push(header(&d, "x-campuspay-reason").unwrap());
    }
    reasons.sort();
    assert_eq!(
        reasons,
        ["no_request_id", "not_json", "too_large", "unknown_type"]
    );
    // Nothing was answered for them, and valid payments still go through.
    assert_quiet(pos.results()).await;
    let codes = env.codes(&user).await;
    let r = pos
        .pay(RequestId::new_random(), &codes[0], "3.00", WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, TxState::Approved);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM transactions").await, 1);
}
