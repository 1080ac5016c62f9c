//! The wallet page at /app in a real (headless) Chromium against the real pipeline, broker and
//! database: signing in with a one-time link, the payment code read back from a screenshot and
//! paid by a POS, the result pushed to the page, a stored code offline, a forward scan through
//! the (fake) camera with the fee before paying and the PIN pad, and a frozen card.
//!
//! `CAMPUSPAY_SCREENSHOTS=docs/img cargo test --test integration wallet` also saves the
//! README's pictures. The confirmation sheet (large reverse-scan payments confirmed on the
//! phone) has its own tests in wallet_confirm.rs, which share the helpers here.

use crate::browser::{have_ffmpeg, read_qr, y4m_of, Browser, Options, WIDTH};
use crate::helpers::*;
use campuspay::domain::{Amount, Identity, RequestId, TxState};
use campuspay::ops::{self, Operator};
use serde_json::json;

/// A function `shown()` in the page: the code it shows (its digits' data attribute), or null.
const SHOWN_CODE_FN: &str = "function shown() { const e = document.getElementById('code-digits'); \
     return e && !e.closest('[hidden]') ? (e.dataset.code || null) : null; }";
pub(crate) const SHOWN_CODE: &str =
    "function shown() { const e = document.getElementById('code-digits'); \
     return e && !e.closest('[hidden]') ? (e.dataset.code || null) : null; } return shown();";

pub(crate) async fn sign_in(browser: &Browser, link: &str) -> String {
    browser.goto(link).await;
    assert!(browser.text("h1").await.contains("登录"));
    browser.click("#sign-in").await;
    let code = browser
        .wait_for("a payment code on the page", SHOWN_CODE)
        .await;
    code.as_str().unwrap().to_owned()
}

/// The QR code drawn on the page, read back from a screenshot of it.
async fn qr_on_page(browser: &Browser) -> String {
    let png = browser.element_png("#qr").await;
    read_qr(&png).expect("the page's QR code reads back")
}

async fn shown_other_than(browser: &Browser, old: &str) -> String {
    let script =
        format!("{SHOWN_CODE_FN} const c = shown(); return c && c !== '{old}' ? c : null;");
    browser
        .wait_for("the next payment code", &script)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Names as on a campus (and in the README's pictures): the page shows them as they are.
pub(crate) async fn named(env: &TestEnv) {
    env.sql("UPDATE merchants SET name = '第一食堂' WHERE id = 'm1'")
        .await;
    env.sql(
        "UPDATE cardholders SET name = CASE user_id WHEN 's001' THEN '李华' ELSE 'Alex Chen' END",
    )
    .await;
}

pub(crate) async fn no_sideways_scroll(browser: &Browser, screen: &str) {
    let width = browser
        .js("return document.documentElement.scrollWidth;", json!([]))
        .await;
    assert!(
        width.as_u64().unwrap() <= u64::from(WIDTH),
        "{screen} scrolls sideways at {WIDTH} px: {width}"
    );
}

pub(crate) async fn result_shown(browser: &Browser, status: &str) {
    let script = format!(
        "const r = document.getElementById('result'); \
         return !r.hidden && r.dataset.status === '{status}';"
    );
    browser
        .wait_for(&format!("a {status} result"), &script)
        .await;
}

#[actix_rt::test]
async fn wallet_signs_in_once_shows_a_readable_code_and_moves_on_when_a_pos_pays_it() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "100.00").await;
    named(&env).await;
    let link = env.sign_in_link(&user).await;
    let Some(browser) = Browser::launch("wallet a", Options::default()).await else {
        return;
    };
    browser.goto(&link).await;
    browser.document("signin").await;
    let code = sign_in(&browser, &link).await;
    assert_eq!(browser.text("#tabs button[data-tab=pay]").await, "付款码");
    assert_eq!(qr_on_page(&browser).await, code, "the QR code is the code");
    assert_eq!(browser.text("#code-digits").await.replace(' ', ""), code);
    assert!(browser.visible("#barcode").await);
    assert!(browser.text("#balance").await.contains("100.00"));
    no_sideways_scroll(&browser, "the payment code").await;
    browser.document("pay-zh").await;

    let mut pos = env.pos("m1", "t1").await;
    let paid = pos
        .pay(RequestId::new_random(), &code, "12.50", WAIT)
        .await
        .unwrap();
    assert_eq!(paid.status, TxState::Approved);
    // Pushed to the page, no reload: the result and the next code.
    result_shown(&browser, "approved").await;
    assert_eq!(browser.text("#result-title").await, "支付成功");
    assert_eq!(browser.text("#result-total").await, "12.50");
    assert_eq!(browser.text("#result-balance").await, "87.50");
    let next = shown_other_than(&browser, &code).await;
    assert_eq!(qr_on_page(&browser).await, next);
    browser
        .wait_for(
            "the merchant's name on the result",
            "return document.getElementById('result-merchant').innerText === '第一食堂';",
        )
        .await;
    no_sideways_scroll(&browser, "the result").await;
    browser.document("result-zh").await;

    // In English, without a reload.
    browser.click("#lang").await;
    assert_eq!(browser.text("#tabs button[data-tab=pay]").await, "Pay code");
    assert_eq!(browser.text("#result-title").await, "Payment approved");
    browser.document("result-en").await;
    browser.click("#tabs button[data-tab=history]").await;
    browser
        .wait_for(
            "the payment in the history",
            "return document.querySelector('#history li')?.innerText.includes('第一食堂');",
        )
        .await;
    assert!(browser.text("#history").await.contains("-12.50"));
    browser.document("history-en").await;
    browser.click("#lang").await;
    assert_eq!(browser.text("#history-title").await, "最近交易");
    browser.document("history-zh").await;

    // The link worked once.
    browser.goto(&link).await;
    let again = browser.text("body").await;
    assert!(again.contains("already used"), "{again}");
}

#[actix_rt::test]
async fn wallet_shows_a_stored_code_offline_and_a_pos_pays_with_it() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    named(&env).await;
    let link = env.sign_in_link(&user).await;
    let Some(browser) = Browser::launch("wallet b", Options::default()).await else {
        return;
    };
    let code = sign_in(&browser, &link).await;
    // The service worker keeps the page itself for offline use.
    browser
        .wait_for(
            "the service worker controls the page",
            "return !!navigator.serviceWorker && !!navigator.serviceWorker.controller;",
        )
        .await;

    // No signal: the wallet opened again shows the code kept on the phone.
    browser.set_offline(true).await;
    browser.reload().await;
    browser
        .wait_for(
            "the offline notice",
            "const b = document.getElementById('banner'); return !b.hidden && b.innerText.includes('离线');",
        )
        .await;
    let shown = browser.wait_for("a stored code", SHOWN_CODE).await;
    assert_eq!(shown, json!(code));
    assert_eq!(qr_on_page(&browser).await, code);
    browser.document("offline-zh").await;

    let mut pos = env.pos("m1", "t1").await;
    let paid = pos
        .pay(RequestId::new_random(), &code, "8.00", WAIT)
        .await
        .unwrap();
    assert_eq!(paid.status, TxState::Approved);

    // Back online, the page catches up: the used code is gone, the balance and history are new.
    browser.set_offline(false).await;
    let next = shown_other_than(&browser, &code).await;
    assert_ne!(next, code);
    browser
        .wait_for(
            "the new balance",
            "return document.getElementById('balance').innerText === '42.00';",
        )
        .await;
    assert!(!browser.visible("#banner").await, "the offline notice goes");
    assert_eq!(env.balance(&user).await, money("42.00"));
}

#[actix_rt::test]
async fn wallet_scans_a_printed_code_with_the_camera_shows_the_fee_and_pays_with_the_pin() {
    let Some(tmp) = ffmpeg_or_skip("wallet c") else {
        return;
    };
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    let m1 = env.merchant("m1", &["t1"]).await;
    env.fee(Identity::External, "0.15", None).await;
    let user = env.card("x001", Identity::External, "100.00").await;
    named(&env).await;
    let (ops, op) = (env.ops(), Operator::admin("admin:test"));
    // A PIN above 10.00.
    ops::cards::set_pin(&ops, &op, &user, "246810")
        .await
        .unwrap();
    let change = ops::cards::LimitChange {
        per_txn: None,
        daily: None,
        password_free: Some(Amount::parse("10.00").unwrap()),
    };
    ops::cards::limits(&ops, &op, &user, change).await.unwrap();
    // The printed counter code (`admin qr static`), filmed by the fake camera.
    let printed = ops::merchants::static_qr(&ops, &op, &m1, None)
        .await
        .unwrap();
    let png = tmp.join("counter.png");
    std::fs::write(&png, campuspay::qr::render_png(&printed.payload).unwrap()).unwrap();
    let y4m = tmp.join("camera.y4m");
    y4m_of(&png, &y4m);
    let link = env.sign_in_link(&user).await;
    let opts = Options {
        fake_camera: Some(y4m.clone()),
        ..Options::default()
    };
    let Some(browser) = Browser::launch("wallet c", opts).await else {
        return;
    };
    sign_in(&browser, &link).await;
    browser.click("#tabs button[data-tab=scan]").await;
    browser
        .wait_for(
            "the order page after scanning",
            "return !document.getElementById('screen-order').hidden;",
        )
        .await;
    assert_eq!(browser.text("#order-merchant").await, "第一食堂");
    // A static code: the cardholder types the amount; fee and total show before paying.
    browser.type_into("#order-amount", "20.00").await;
    assert!(browser.text("#order-fee-label").await.contains("15%"));
    assert_eq!(browser.text("#order-fee").await, "3.00");
    assert_eq!(browser.text("#order-total").await, "23.00");
    no_sideways_scroll(&browser, "the order").await;
    browser.document("order-zh").await;

    browser.click("#order-pay").await;
    browser
        .wait_for(
            "the PIN pad",
            "return !document.getElementById('pin-sheet').hidden;",
        )
        .await;
    for d in "246811".chars() {
        browser.click(&format!("#pin-pad [data-key='{d}']")).await;
    }
    browser
        .wait_for(
            "a wrong PIN said so",
            "return document.getElementById('pin-error').innerText.includes('支付密码错误');",
        )
        .await;
    browser.document("pin-zh").await;
    for d in "246810".chars() {
        browser.click(&format!("#pin-pad [data-key='{d}']")).await;
    }
    result_shown(&browser, "approved").await;
    assert_eq!(browser.text("#result-fee").await, "3.00");
    assert_eq!(browser.text("#result-total").await, "23.00");
    assert_eq!(browser.text("#result-balance").await, "77.00");
    assert_eq!(browser.text("#result-merchant").await, "第一食堂");
    assert_eq!(env.balance(&user).await, money("77.00"));
    browser.document("scan-result-zh").await;
}

#[actix_rt::test]
async fn a_frozen_cards_wallet_says_so_and_shows_no_code() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    let user = env.card("s001", Identity::Student, "30.00").await;
    named(&env).await;
    let link = env.sign_in_link(&user).await;
    let Some(browser) = Browser::launch("wallet d", Options::default()).await else {
        return;
    };
    sign_in(&browser, &link).await;
    ops::cards::freeze(&env.ops(), &Operator::admin("admin:test"), &user)
        .await
        .unwrap();
    browser.reload().await;
    browser
        .wait_for(
            "the frozen notice",
            "const n = document.getElementById('code-none'); \
             return !n.hidden && n.innerText.includes('挂失');",
        )
        .await;
    assert!(
        !browser.visible("#code-box").await,
        "no code for a frozen card"
    );
    assert!(browser.visible("#frozen-tag").await);
    let kept = browser
        .js(
            "return Object.keys(localStorage).filter(k => k.startsWith('campuspay.codes.'));",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!([]), "no code is kept on the phone either");
    browser.document("frozen-zh").await;
}

/// A scratch directory, removed when dropped (also when the test fails).
pub(crate) struct Scratch(std::path::PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory for the camera's video, or `None` (skipped) without ffmpeg.
pub(crate) fn ffmpeg_or_skip(test: &str) -> Option<Scratch> {
    if !have_ffmpeg() {
        let required =
            std::env::var("CAMPUSPAY_REQUIRE_BROWSER").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "{test}: CAMPUSPAY_REQUIRE_BROWSER is set but ffmpeg is missing"
        );
        eprintln!("SKIPPED {test}: ffmpeg not found (apt-get install ffmpeg)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("campuspay-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    Some(Scratch(dir))
}
