//! The wallet's confirmation sheet in a real (headless) Chromium against the real pipeline,
//! broker and database: a till scans the page's code for more than the card's password-free
//! amount, the POS hears `pending` (`user_confirming`), the page shows the sheet with the
//! merchant, amount, surcharge and total, and the cardholder confirms with the PIN on the pad,
//! declines, enters a wrong PIN, opens the page only after the till asked, or lets it time out.
//!
//! `CAMPUSPAY_SCREENSHOTS=docs/img cargo test --test integration wallet_confirm` also saves
//! the README's picture of the sheet.

use crate::browser::Browser;
use crate::helpers::*;
use crate::wallet::{named, no_sideways_scroll, result_shown, sign_in};
use campuspay::domain::{Amount, DeclineReason, Identity, RequestId, TxState, UserId};
use campuspay::messages::external::ResultV1;
use campuspay::ops::{self, Operator};
use campuspay::sim::pos::Pos;
use std::time::Duration;

const PIN: &str = "246810";

/// Card x001 (external: a 10 % surcharge at the canteen) with 200.00, a PIN and 50.00
/// password-free; till t1 of merchant m1 (第一食堂); the platform serving.
struct Campus {
    user: UserId,
    pos: Pos,
    link: String,
}

async fn campus(env: &mut TestEnv) -> Campus {
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    env.fee(Identity::External, "0.10", None).await;
    let user = env.card("x001", Identity::External, "200.00").await;
    named(env).await;
    let (ops, op) = (env.ops(), Operator::admin("admin:test"));
    ops::cards::set_pin(&ops, &op, &user, PIN).await.unwrap();
    let change = ops::cards::LimitChange {
        per_txn: None,
        daily: None,
        password_free: Some(Amount::parse("50.00").unwrap()),
    };
    ops::cards::limits(&ops, &op, &user, change).await.unwrap();
    Campus {
        pos: env.pos("m1", "t1").await,
        link: env.sign_in_link(&user).await,
        user,
    }
}

/// The till scans `code` for 80.00 (+ 8.00): its first answer is `pending`, the cardholder
/// is being asked.
async fn scan_eighty(c: &mut Campus, code: &str) -> (RequestId, ResultV1) {
    let rid = RequestId::new_random();
    c.pos.send_scan(rid, code, "80.00").await.unwrap();
    let pending = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (pending.status, pending.reason),
        (
            TxState::AwaitingConfirmation,
            Some(DeclineReason::UserConfirming)
        ),
        "{pending:?}"
    );
    (rid, pending)
}

/// The sheet is up, showing the canteen's 80.00 + 8.00.
async fn sheet_shown(browser: &Browser) {
    browser
        .wait_for(
            "the confirmation sheet",
            "return !document.getElementById('confirm-sheet').hidden \
             && document.getElementById('confirm-amount').innerText === '80.00';",
        )
        .await;
    assert!(browser.visible("#confirm-pad [data-key='1']").await);
    assert!(
        browser.text("#confirm-text").await.contains("第一食堂"),
        "{}",
        browser.text("#confirm-text").await
    );
    assert_eq!(browser.text("#confirm-fee").await, "8.00");
    assert_eq!(browser.text("#confirm-total").await, "88.00");
    assert!(browser.text("#confirm-left").await.contains("秒内确认"));
}

async fn sheet_gone(browser: &Browser) {
    browser
        .wait_for(
            "the confirmation sheet closes",
            "return document.getElementById('confirm-sheet').hidden;",
        )
        .await;
}

/// Types `pin` on the sheet's pad, key by key, as a finger would.
async fn type_pin(browser: &Browser, pin: &str) {
    for d in pin.chars() {
        browser
            .click(&format!("#confirm-pad [data-key='{d}']"))
            .await;
    }
}

async fn state_of(env: &TestEnv, rid: RequestId) -> String {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
    }
    let q = format!("SELECT state FROM transactions WHERE request_id = '{rid}'");
    campuspay::db::run(&env.pool, move |c| {
        Ok(diesel::RunQueryDsl::get_result::<S>(diesel::sql_query(q), c)?.state)
    })
    .await
    .unwrap()
}

/// The POS's final answer, the card's balance and `admin verify` agree on a paid 88.00.
async fn approved_everywhere(env: &TestEnv, c: &mut Campus, browser: &Browser, rid: RequestId) {
    let done = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Approved, None),
        "{done:?}"
    );
    assert_eq!(done.total, Some(money("88.00")));
    result_shown(browser, "approved").await;
    sheet_gone(browser).await;
    assert_eq!(browser.text("#result-title").await, "支付成功");
    assert_eq!(browser.text("#result-merchant").await, "第一食堂");
    assert_eq!(browser.text("#result-fee").await, "8.00");
    assert_eq!(browser.text("#result-total").await, "88.00");
    assert_eq!(browser.text("#result-balance").await, "112.00");
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("112.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("80.00"));
    let report = ops::reports::verify(&env.ops(), 300).await.unwrap();
    assert!(report.ok, "{report:?}");
    browser
        .wait_for(
            "the page's balance",
            "return document.getElementById('balance').innerText === '112.00';",
        )
        .await;
}

/// Nothing moved: the till was told no, the card still holds 200.00.
async fn nothing_moved(env: &TestEnv, c: &mut Campus) {
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("0.00"));
    let report = ops::reports::verify(&env.ops(), 300).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[actix_rt::test]
async fn the_wallet_asks_on_a_sheet_and_the_pin_typed_on_its_pad_pays() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm a", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    sheet_shown(&browser).await;
    assert_eq!(browser.text("#confirm-title").await, "确认这笔付款");
    no_sideways_scroll(&browser, "the confirmation sheet").await;
    // Nothing moved while the cardholder reads.
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    type_pin(&browser, &PIN[..2]).await;
    browser.document("wallet-confirm").await;
    type_pin(&browser, &PIN[2..]).await;
    approved_everywhere(&env, &mut c, &browser, rid).await;
}

#[actix_rt::test]
async fn declined_on_the_sheet_the_till_hears_user_declined_and_nothing_moves() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm b", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    sheet_shown(&browser).await;
    browser.click("#confirm-decline").await;
    let done = c.pos.wait(rid, WAIT).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Declined, Some(DeclineReason::UserDeclined)),
        "{done:?}"
    );
    result_shown(&browser, "declined").await;
    sheet_gone(&browser).await;
    assert_eq!(browser.text("#result-reason").await, "你拒绝了这笔付款。");
    assert_eq!(state_of(&env, rid).await, "declined");
    nothing_moved(&env, &mut c).await;
}

#[actix_rt::test]
async fn a_wallet_opened_after_the_till_asked_shows_the_waiting_request() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    // The code from the phone's last visit: the till asks before the page is open.
    let code = env.codes(&c.user).await.remove(0);
    let (rid, _) = scan_eighty(&mut c, &code).await;
    let Some(browser) = Browser::launch("wallet confirm c", Default::default()).await else {
        return;
    };
    sign_in(&browser, &c.link).await;
    sheet_shown(&browser).await;
    type_pin(&browser, PIN).await;
    approved_everywhere(&env, &mut c, &browser, rid).await;
}

#[actix_rt::test]
async fn a_wrong_pin_on_the_sheet_is_said_and_the_payment_keeps_waiting_for_the_right_one() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm d", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    sheet_shown(&browser).await;
    type_pin(&browser, "246811").await;
    browser
        .wait_for(
            "a wrong PIN said so, with the tries left",
            "return document.getElementById('confirm-error').innerText \
             === '支付密码错误，还可以尝试 4 次。';",
        )
        .await;
    // The pad is empty again and the sheet still asks; the till still waits.
    let dots = browser
        .js(
            "return document.querySelectorAll('#confirm-pad .pin-dots .on').length;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(dots, serde_json::json!(0));
    assert!(browser.visible("#confirm-sheet").await);
    assert_eq!(state_of(&env, rid).await, "awaiting_confirmation");
    assert_quiet(c.pos.results()).await;
    assert_eq!(env.balance(&c.user).await, money("200.00"));
    type_pin(&browser, PIN).await;
    approved_everywhere(&env, &mut c, &browser, rid).await;
}

#[actix_rt::test]
async fn unconfirmed_the_sheet_says_it_expired_and_the_till_hears_confirmation_timeout() {
    let mut env = TestEnv::empty().await;
    // The shortest the configuration allows (CAMPUSPAY_CONFIRMATION_TIMEOUT_SECS ≥ 10).
    env.config.confirmation_timeout = Duration::from_secs(10);
    env.start_pipeline();
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm e", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    sheet_shown(&browser).await;
    let left = browser.text("#confirm-left").await;
    assert!(
        ["10 秒内确认", "9 秒内确认", "8 秒内确认"].contains(&left.as_str()),
        "{left}"
    );
    // The page counts down to the deadline and says so; the sweeper ends it on the server.
    browser
        .wait_for(
            "the sheet says the time is up",
            "return document.getElementById('confirm-sheet').hidden \
             || document.getElementById('confirm-error').innerText === '确认已超时，这笔付款已取消。';",
        )
        .await;
    let done = c.pos.wait(rid, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (done.status, done.reason),
        (TxState::Declined, Some(DeclineReason::ConfirmationTimeout)),
        "{done:?}"
    );
    result_shown(&browser, "declined").await;
    sheet_gone(&browser).await;
    assert_eq!(
        browser.text("#result-reason").await,
        "没有及时确认，这笔付款已取消。"
    );
    nothing_moved(&env, &mut c).await;
}

#[actix_rt::test]
async fn a_request_made_while_the_page_was_disconnected_is_shown_when_it_reconnects() {
    let mut env = TestEnv::start().await;
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm f", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    // The platform goes away for a moment (a deployment), the page's event stream with it: the
    // request pushed meanwhile reaches no page.
    let addr = env.stop_platform().await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    env.start_platform_at(&addr).await;
    // The stream reconnects by itself, and the page asks what is waiting.
    sheet_shown(&browser).await;
    type_pin(&browser, PIN).await;
    approved_everywhere(&env, &mut c, &browser, rid).await;
}

#[actix_rt::test]
async fn confirmed_but_slow_to_settle_the_sheet_never_says_it_was_cancelled() {
    let mut env = TestEnv::empty().await;
    env.config.confirmation_timeout = Duration::from_secs(10);
    env.start_pipeline();
    let mut c = campus(&mut env).await;
    let Some(browser) = Browser::launch("wallet confirm g", Default::default()).await else {
        return;
    };
    let code = sign_in(&browser, &c.link).await;
    let (rid, _) = scan_eighty(&mut c, &code).await;
    sheet_shown(&browser).await;
    // Settlement is down when the cardholder confirms: the answer is recorded (202) and waits.
    env.stop_pipeline().await;
    type_pin(&browser, PIN).await;
    browser
        .wait_for(
            "the sheet says the payment is on its way",
            "return document.getElementById('confirm-error').innerText === '已确认，正在付款…';",
        )
        .await;
    // Past the deadline the cardholder has still confirmed in time: no "cancelled".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < deadline {
        let said = browser.text("#confirm-error").await;
        assert!(!said.contains("取消"), "the sheet says {said}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.start_pipeline();
    approved_everywhere(&env, &mut c, &browser, rid).await;
}
