//! The operator console at /console in a real (headless) Chromium against the real pipeline,
//! broker and database: an operator signs in with a one-time link and, through the pages,
//! adds a merchant and a till and downloads its QR code (read back and decoded), freezes a card
//! (its codes are then refused at a till) and tops it up, replays a dead letter, imports a
//! subsidy file after its preview, and reads the daily report (equal to the ledger's) and the
//! ledger check. Over plain HTTP: a cardholder's or a till's session opens neither /console nor
//! /admin/v1, and the console's own cookie follows the CSRF rule.
//!
//! `CAMPUSPAY_SCREENSHOTS=docs/img cargo test --test integration console` also saves the
//! README's pictures of the console.

use crate::browser::{read_qr, Browser, Options};
use crate::helpers::*;
use campuspay::auth::session_hash;
use campuspay::domain::{DeclineReason, Identity, RequestId, SessionSecret, TxState};
use campuspay::ops::{self, Operator};
use campuspay::platform::session::COOKIE;
use serde_json::{json, Value};
use std::time::Duration;

/// A one-time console sign-in link for operator `name` (`admin token --admin NAME --link`).
async fn operator_link(env: &TestEnv, name: &str) -> String {
    ops::tokens::operator_link(&env.ops(), &Operator::admin("admin:test"), name, None)
        .await
        .expect("an operator's sign-in link")
        .url
}

async fn sign_in(env: &TestEnv) -> Option<Browser> {
    let link = operator_link(env, "li").await;
    let browser = Browser::launch(
        "console",
        Options {
            desktop: true,
            ..Options::default()
        },
    )
    .await?;
    browser.goto(&link).await;
    assert!(browser.text("h1").await.contains("登录"));
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "the console's dashboard",
            "return !!document.getElementById('dash-approved');",
        )
        .await;
    assert_eq!(browser.text("#operator").await, "li");
    Some(browser)
}

async fn tab(browser: &Browser, name: &str) {
    browser
        .click(&format!("#tabs button[data-tab={name}]"))
        .await;
}

/// Clicks "confirm" in the dialog that asks before money moves.
async fn confirm(browser: &Browser) {
    browser
        .wait_for(
            "the confirmation dialog",
            "return document.getElementById('confirm').open;",
        )
        .await;
    browser.click("#confirm-ok").await;
}

async fn banner_contains(browser: &Browser, what: &str) {
    let script = format!(
        "const b = document.getElementById('banner'); \
         return !b.hidden && b.innerText.includes({});",
        json!(what)
    );
    browser
        .wait_for(&format!("the banner saying {what}"), &script)
        .await;
}

/// The bytes at `url` as the page gets them (its session cookie), through a synchronous XHR.
async fn fetch_bytes(browser: &Browser, url: &str) -> Vec<u8> {
    let b64 = browser
        .js(
            "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); \
             x.overrideMimeType('text/plain; charset=x-user-defined'); x.send(); \
             if (x.status !== 200) return 'status ' + x.status; \
             let s = ''; for (let i = 0; i < x.responseText.length; i++) \
               s += String.fromCharCode(x.responseText.charCodeAt(i) & 0xff); \
             return 'ok ' + btoa(s);",
            json!([url]),
        )
        .await;
    let text = b64.as_str().unwrap_or_default().to_owned();
    let body = text
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("{url}: {text}"));
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[actix_rt::test]
async fn an_operator_adds_a_merchant_and_a_till_and_downloads_a_qr_code_a_wallet_can_pay() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    let Some(browser) = sign_in(&env).await else {
        return;
    };
    browser.document("console-dashboard").await;
    tab(&browser, "merchants").await;
    browser
        .wait_for(
            "the merchant form",
            "return !!document.getElementById('add-merchant');",
        )
        .await;
    browser
        .type_into("#add-merchant input[name=id]", "m7")
        .await;
    browser
        .type_into("#add-merchant input[name=name]", "第二食堂")
        .await;
    browser.click("#add-merchant button").await;
    banner_contains(&browser, "m7").await;
    browser
        .wait_for(
            "the merchant in the terminal form",
            "return document.querySelector('#add-terminal select')?.value === 'm7';",
        )
        .await;
    browser
        .type_into("#add-terminal input[name=terminal_id]", "t1")
        .await;
    browser.click("#add-terminal button").await;
    let creds = browser
        .wait_for(
            "the till's credentials",
            "return document.getElementById('credentials')?.innerText;",
        )
        .await;
    let creds: Value = serde_json::from_str(creds.as_str().unwrap()).unwrap();
    assert_eq!(creds["result_queue"], "pos.m7.t1");
    assert!(creds["token"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(
        env.count("SELECT count(*) AS n FROM terminals WHERE merchant_id = 'm7'")
            .await,
        1
    );

    // The till's static code as PNG: the downloaded file reads back to a campus payload.
    let href = browser
        .js(
            "return [...document.querySelectorAll('a.qr-png')].map(a => a.getAttribute('href'));",
            json!([]),
        )
        .await;
    let hrefs: Vec<String> = serde_json::from_value(href).unwrap();
    assert_eq!(
        hrefs,
        [
            "/admin/v1/merchants/m7/qr.png",
            "/admin/v1/merchants/m7/qr.png?terminal=t1"
        ]
    );
    let png = fetch_bytes(&browser, &hrefs[1]).await;
    let payload = read_qr(&png).expect("the PNG reads back as a QR code");
    let described = campuspay::emv::describe(&payload).expect("an EMV payload");
    assert!(described.crc_valid, "{described:?}");
    let decoded = campuspay::domain::campus_qr::decode_campus(&payload).expect("a campus code");
    assert_eq!(
        decoded,
        campuspay::domain::campus_qr::MerchantQr::Static {
            merchant_id: campuspay::domain::MerchantId::parse("m7").unwrap(),
            terminal_id: Some(campuspay::domain::TerminalId::parse("t1").unwrap()),
        }
    );
    let svg = fetch_bytes(&browser, "/admin/v1/merchants/m7/qr.svg").await;
    assert!(String::from_utf8(svg).unwrap().contains("<svg"));

    // The preview, then the till's sign-in link: made, or (without the till page on this
    // server) said plainly.
    browser.click("button[data-i18n='m.show_qr']").await;
    browser
        .wait_for(
            "the QR preview",
            "const i = document.getElementById('qr-img'); return i && i.complete && i.naturalWidth > 0;",
        )
        .await;
    browser.document("console-merchants").await;
    browser.click("button.till-link").await;
    let outcome = browser
        .wait_for(
            "a till sign-in link or a plain error",
            "const l = document.getElementById('till-link'); if (l) return 'link ' + l.innerText; \
             const b = document.getElementById('banner'); return !b.hidden && b.innerText;",
        )
        .await;
    let outcome = outcome.as_str().unwrap();
    assert!(
        outcome.contains("/signin/") || outcome.contains("收银台登录链接"),
        "{outcome}"
    );

    // The A4 sheet: the merchant's code and the till's, both drawn.
    browser
        .goto(&format!(
            "{}/console/merchants/m7/sheet",
            env.config.public_url
        ))
        .await;
    browser
        .wait_for(
            "two codes on the sheet",
            "const i = [...document.querySelectorAll('.stand img')]; \
             return i.length === 2 && i.every(x => x.complete && x.naturalWidth > 0);",
        )
        .await;
    assert!(browser.text(".stand h1").await.contains("第二食堂"));
    browser.document("console-qr-sheet").await;
    // Each code fetched was recorded as printed, by the operator.
    assert!(
        env.count(
            "SELECT count(*) AS n FROM operator_actions \
             WHERE action = 'terminal.add' AND operator = 'admin:li'"
        )
        .await
            == 1
    );
}

#[actix_rt::test]
async fn a_card_frozen_in_the_console_is_refused_at_a_till_and_a_dead_letter_is_replayed() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    env.sql("UPDATE cardholders SET name = '李华' WHERE user_id = 's001'")
        .await;
    let codes = env.codes(&user).await;
    let mut pos = env.pos("m1", "t1").await;
    let paid = pos
        .pay(RequestId::new_random(), &codes[0], "12.00", WAIT)
        .await
        .unwrap();
    assert_eq!(paid.status, TxState::Approved);
    let Some(browser) = sign_in(&env).await else {
        return;
    };
    tab(&browser, "cards").await;
    browser.type_into("#card-search input[name=q]", "李").await;
    browser.click("#card-search button").await;
    browser
        .wait_for(
            "the card found",
            "return !!document.querySelector('.open-card');",
        )
        .await;
    browser.click(".open-card[data-user=s001]").await;
    browser
        .wait_for(
            "the card",
            "return document.getElementById('card-balance')?.innerText === '38.00';",
        )
        .await;
    assert!(browser.text("#card-view").await.contains("12.00"));
    browser.click("button.freeze").await;
    confirm(&browser).await;
    browser
        .wait_for(
            "the card frozen",
            "return document.getElementById('card-status')?.innerText === '已挂失';",
        )
        .await;
    browser.document("console-card").await;
    // A code the phone held before is refused at the till.
    let refused = pos
        .pay(RequestId::new_random(), &codes[1], "5.00", WAIT)
        .await
        .unwrap();
    assert_eq!(refused.status, TxState::Declined);
    assert!(
        matches!(
            refused.reason,
            Some(DeclineReason::CardFrozen | DeclineReason::CodeRevoked)
        ),
        "{refused:?}"
    );
    assert_eq!(env.balance(&user).await, money("38.00"));

    // Unfrozen and topped up (after the confirmation).
    browser.click("button.unfreeze").await;
    browser
        .wait_for(
            "the card active",
            "return document.getElementById('card-status')?.innerText === '正常';",
        )
        .await;
    browser.type_into("#topup input[name=amount]", "20").await;
    browser.click("#topup button").await;
    confirm(&browser).await;
    browser
        .wait_for(
            "the new balance",
            "return document.getElementById('card-balance')?.innerText === '58.00';",
        )
        .await;
    assert_eq!(env.balance(&user).await, money("58.00"));
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM operator_actions WHERE operator = 'admin:li' \
             AND action IN ('card.freeze', 'card.unfreeze', 'card.topup') AND subject = 's001'"
        )
        .await,
        3
    );

    // A request nobody can read becomes a dead letter; the console replays it.
    pos.publish_raw(&pos.routing_key("scan"), b"not json".to_vec(), None)
        .await
        .unwrap();
    let ops = env.ops();
    eventually("a dead letter", WAIT, Duration::from_millis(200), || {
        let ops = ops.clone();
        async move {
            match ops::queues::dead_list(&ops, 10).await {
                Ok(l) if l.letters.len() == 1 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    tab(&browser, "queues").await;
    browser
        .wait_for(
            "the dead letter",
            "return !!document.querySelector('button.replay');",
        )
        .await;
    browser.click("button[data-i18n='dead.inspect']").await;
    browser
        .wait_for(
            "the dead letter's detail",
            "return document.getElementById('dead-detail')?.innerText.includes('qr_validation');",
        )
        .await;
    browser.document("console-queues").await;
    browser.click("button.replay").await;
    confirm(&browser).await;
    banner_contains(&browser, "1").await;
    // Replayed where it came from, it is dead-lettered again, now counted as replayed once.
    eventually(
        "the replayed letter back",
        WAIT,
        Duration::from_millis(200),
        || {
            let ops = ops.clone();
            async move {
                match ops::queues::dead_list(&ops, 10).await {
                    Ok(l) if l.letters.len() == 1 && l.letters[0].replayed == 1 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM operator_actions \
             WHERE operator = 'admin:li' AND action = 'dead.replay'"
        )
        .await,
        1
    );
}

#[actix_rt::test]
async fn a_subsidy_file_is_previewed_then_imported_and_the_daily_report_equals_the_ledger() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let a = env.card("s001", Identity::Student, "10.00").await;
    let b = env.card("s002", Identity::Student, "0.00").await;
    let codes = env.codes(&a).await;
    let mut pos = env.pos("m1", "t1").await;
    for (code, amount) in codes.iter().zip(["3.50", "2.25"]) {
        let r = pos
            .pay(RequestId::new_random(), code, amount, WAIT)
            .await
            .unwrap();
        assert_eq!(r.status, TxState::Approved);
    }
    let Some(browser) = sign_in(&env).await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("campuspay-subsidy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("november.csv");
    std::fs::write(
        &file,
        "user_id,amount,memo\ns001,30.00,meal\ns002,25.50,meal\nnobody,1.00,x\n",
    )
    .unwrap();
    tab(&browser, "money").await;
    browser
        .wait_for(
            "the subsidy form",
            "return !!document.getElementById('subsidy');",
        )
        .await;
    browser
        .type_into("#subsidy input[name=batch]", "2026-11 meal")
        .await;
    browser
        .type_into("#subsidy-file", file.to_str().unwrap())
        .await;
    browser.click("#subsidy button[type=submit]").await;
    let summary = browser
        .wait_for(
            "the preview",
            "return document.getElementById('subsidy-preview-summary')?.innerText;",
        )
        .await;
    assert!(summary.as_str().unwrap().contains("55.50"), "{summary}");
    assert!(browser
        .text("#subsidy-out")
        .await
        .contains("no card for nobody"));
    // The preview credited nothing.
    assert_eq!(env.balance(&b).await, money("0.00"));
    browser.document("console-subsidy-preview").await;
    browser.click("#subsidy-import").await;
    confirm(&browser).await;
    browser
        .wait_for(
            "the import's result",
            "return document.getElementById('subsidy-result')?.innerText;",
        )
        .await;
    assert_eq!(env.balance(&a).await, money("34.25"));
    assert_eq!(env.balance(&b).await, money("25.50"));
    browser.document("console-subsidy").await;
    let _ = std::fs::remove_dir_all(&dir);

    // The daily report on the page equals the report's and the ledger's figures.
    tab(&browser, "reports").await;
    let total = browser
        .wait_for(
            "the report's total",
            "const r = document.getElementById('report-total'); \
             return r && [...r.cells].map(c => c.innerText);",
        )
        .await;
    let total: Vec<String> = serde_json::from_value(total).unwrap();
    let report = ops::reports::daily(&env.ops(), None).await.unwrap();
    assert!(report.ties_out, "{report:?}");
    assert_eq!(total[2], "2");
    assert_eq!(total[3], "5.75");
    assert_eq!(total[6], report.total.net);
    assert_eq!(total[7], report.total.ledger_net);
    assert_eq!(report.total.net, report.total.ledger_net);
    let ledger_net = env.account_balance("merchant", "m1").await;
    assert_eq!(total[7], ledger_net.to_string());
    let csv = fetch_bytes(&browser, "/admin/v1/reports/daily.csv").await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("m1") && csv.contains("5.75"), "{csv}");
    browser.click("#verify").await;
    browser
        .wait_for(
            "the ledger check",
            "return document.getElementById('verify-result')?.className === 'ok-text';",
        )
        .await;
    browser.document("console-report").await;
}

/// A session of `role` for `subject` stored as a sign-in would store it; its cookie value.
async fn session_of(env: &TestEnv, role: &str, subject: &str, version_sql: &str) -> String {
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = hex::encode(session_hash(env.config.keys.sessions.expose(), &secret));
    env.sql(&format!(
        "INSERT INTO sessions (id_hash, role, subject, token_version, expires_at) \
         VALUES ('\\x{hash}', '{role}', '{subject}', ({version_sql}), now() + interval '1 hour')"
    ))
    .await;
    secret.expose().to_owned()
}

fn call(base: &str, cookie: &str, method: &str, path: &str, csrf: bool) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build();
    let mut req = agent
        .request(method, &format!("{base}{path}"))
        .set("cookie", &format!("{COOKIE}={cookie}"))
        .set("sec-fetch-site", "same-origin");
    if csrf {
        req = req.set("x-campuspay-csrf", "1");
    }
    let resp = if method == "GET" {
        req.call()
    } else {
        req.send_json(json!({"id": "m5", "name": "Kiosk"}))
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    (resp.status(), resp.into_string().unwrap_or_default())
}

#[actix_rt::test]
async fn only_an_operators_session_opens_the_console_and_calls_admin_v1() {
    let mut env = TestEnv::empty().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    env.card("s001", Identity::Student, "10.00").await;
    let cardholder = session_of(
        &env,
        "cardholder",
        "s001",
        "SELECT token_version FROM cardholders WHERE user_id = 's001'",
    )
    .await;
    let till = session_of(
        &env,
        "terminal",
        "m1/t1",
        "SELECT token_version FROM terminals WHERE merchant_id = 'm1' AND id = 't1'",
    )
    .await;
    let operator = session_of(&env, "admin", "li", "SELECT 0").await;
    let b = base.clone();
    blocking(move || {
        for other in [&cardholder, &till] {
            let (status, page) = call(&b, other, "GET", "/console", false);
            assert_eq!(status, 403, "{page}");
            assert!(!page.contains("console.js"), "{page}");
            let (status, body) = call(&b, other, "GET", "/admin/v1/merchants", false);
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("forbidden"), "{body}");
            let (status, body) = call(&b, other, "POST", "/admin/v1/merchants", true);
            assert_eq!(status, 403, "{body}");
            let (status, _) = call(&b, other, "GET", "/console/merchants/m1/sheet", false);
            assert_eq!(status, 403);
        }
        let (status, page) = call(&b, "", "GET", "/console", false);
        assert_eq!(status, 401, "{page}");
        // The operator: the page (with the name), reads, and changes with the CSRF header only.
        let (status, page) = call(&b, &operator, "GET", "/console", false);
        assert_eq!(status, 200);
        assert!(
            page.contains("console.js") && page.contains(">li<"),
            "{page}"
        );
        let (status, body) = call(&b, &operator, "GET", "/admin/v1/merchants", false);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"m1\""), "{body}");
        let (status, body) = call(&b, &operator, "POST", "/admin/v1/merchants", false);
        assert_eq!(
            (status, body.contains("csrf_refused")),
            (403, true),
            "{body}"
        );
        let (status, body) = call(&b, &operator, "POST", "/admin/v1/merchants", true);
        assert_eq!(status, 201, "{body}");
    })
    .await;
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM operator_actions \
             WHERE operator = 'admin:li' AND action = 'merchant.add' AND subject = 'm5'"
        )
        .await,
        1
    );
}
