//! The till's page at /pos in a real (headless) Chromium, and its bridge `/pos/v1` over plain
//! HTTP, against the real pipeline, broker and database: a payment code typed as a scanner
//! types it (key events, no click on an input) is charged and approved, and the card, the
//! merchant's account and the ledger agree; an unknown code shows its decline reason; a large
//! payment waits for the cardholder; the last sale is reversed; a dynamic QR code read back
//! from a screenshot and paid by a phone turns the page to APPROVED; with no answer the page
//! follows the timeout rules; the CLI's link and the till's token sign in; each role's session
//! opens its own page and routes only; the bridge takes no identity from a body and publishes
//! nothing for a bad amount.
//!
//! `CAMPUSPAY_SCREENSHOTS=docs/img cargo test --test integration till::` also saves the
//! README's pictures of the till.

use crate::browser::{read_qr, y4m_of, Browser, Options, WIDTH};
use crate::helpers::*;
use crate::wallet::ffmpeg_or_skip;
use campuspay::auth::session_hash;
use campuspay::db::{self, cards};
use campuspay::domain::payment_code::luhn_check_digit;
use campuspay::domain::{Identity, MerchantId, SessionSecret, TerminalId};
use campuspay::ops::{self, Operator};
use campuspay::platform::session::COOKIE;
use serde_json::{json, Value};
use std::time::Duration;

/// A till's tablet at the counter.
const TABLET: (u32, u32) = (1024, 768);

async fn till_link(env: &TestEnv, m: &str, t: &str) -> String {
    ops::tokens::terminal_link(
        &env.ops(),
        &Operator::admin("admin:test"),
        &MerchantId::parse(m).unwrap(),
        &TerminalId::parse(t).unwrap(),
        None,
    )
    .await
    .expect("a till's sign-in link")
    .url
}

async fn sign_in(browser: &Browser, link: &str) {
    browser.goto(link).await;
    assert!(browser.text("h1").await.contains("登录"));
    assert!(browser.text("body").await.contains("收银台"));
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "the till signed in, its events open",
            "return document.getElementById('terminal')?.innerText === 't1' \
             && document.body.dataset.events === 'open';",
        )
        .await;
}

async fn verdict(browser: &Browser, status: &str) {
    let script = format!(
        "const r = document.getElementById('result'); \
         return !r.hidden && r.dataset.status === '{status}';"
    );
    browser
        .wait_for(&format!("{status} on the till"), &script)
        .await;
}

/// An 18-digit code with the campus prefix and a right Luhn digit that nobody was issued.
fn unissued_code() -> String {
    let payload = "88123456789012345";
    format!("{payload}{}", luhn_check_digit(payload))
}

async fn no_sideways_scroll(browser: &Browser, width: u32, what: &str) {
    let w = browser
        .js("return document.documentElement.scrollWidth;", json!([]))
        .await;
    assert!(
        w.as_u64().unwrap() <= u64::from(width),
        "{what} scrolls sideways at {width} px: {w}"
    );
}

#[actix_rt::test]
async fn a_scanned_code_typed_as_keys_is_approved_and_an_unknown_one_declined() {
    let mut env = TestEnv::start().await;
    env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    env.fee(Identity::External, "0.10", None).await;
    let user = env.card("x001", Identity::External, "100.00").await;
    env.sql("UPDATE merchants SET name = '第一食堂' WHERE id = 'm1'")
        .await;
    let codes = env.codes(&user).await;
    let link = till_link(&env, "m1", "t1").await;
    let opts = Options {
        window: Some(TABLET),
        ..Options::default()
    };
    let Some(browser) = Browser::launch("till a", opts).await else {
        return;
    };
    sign_in(&browser, &link).await;
    assert_eq!(browser.text("#merchant").await, "第一食堂");
    // The amount from the keyboard, then the scanner's burst: digits and Enter, sent to the
    // page itself (nothing was clicked, no input has the focus).
    browser.keys("12.50").await;
    assert_eq!(browser.text("#amount").await, "12.50");
    browser.document("till-amount").await;
    browser.keys(&format!("{}\n", codes[0])).await;
    verdict(&browser, "approved").await;
    assert_eq!(browser.text("#result-title").await, "收款成功");
    assert_eq!(browser.text("#result-amount").await, "12.50");
    assert_eq!(browser.text("#result-fee").await, "1.25");
    assert_eq!(browser.text("#result-total").await, "13.75");
    no_sideways_scroll(&browser, TABLET.0, "the approved sale").await;
    browser.document("till-approved").await;
    assert_eq!(env.balance(&user).await, money("86.25"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("12.50"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");

    // Enter: the next sale. A code that passes the offline check but was never issued.
    browser.keys("\n").await;
    browser
        .wait_for(
            "the result closed",
            "return document.getElementById('result').hidden;",
        )
        .await;
    // The amount and a code in one burst of keys (a scan right after typing): the code is
    // the burst's last 18 digits, the amount what was typed before it. This one is mistyped:
    // caught on the page and sent nowhere.
    let mut bad = unissued_code();
    bad.replace_range(17.., if bad.ends_with('0') { "1" } else { "0" });
    browser.keys(&format!("3{bad}\n")).await;
    assert!(browser.visible("#scan-card").await);
    assert_eq!(browser.text("#scan-amount").await, "3.00");
    assert!(browser.text("#scan-error").await.contains("校验位"));
    browser.keys(&format!("{}\n", unissued_code())).await;
    verdict(&browser, "declined").await;
    assert_eq!(browser.text("#result-title").await, "收款失败");
    assert!(
        browser.text("#result-reason").await.contains("付款码无效"),
        "{}",
        browser.text("#result-reason").await
    );
    browser.click("#lang").await;
    assert_eq!(browser.text("#result-title").await, "DECLINED");
    assert!(browser
        .text("#result-reason")
        .await
        .contains("Unknown payment code"));
    browser.document("till-declined-en").await;
    browser.click("#result-next").await;
    browser.click("#lang").await;
    // The unknown code was presented once (and counted against guessing); the mistyped one
    // never left the page.
    assert_eq!(
        env.count("SELECT coalesce(sum(failures), 0)::bigint AS n FROM terminal_failures")
            .await,
        1
    );
    assert_eq!(env.count("SELECT count(*) AS n FROM transactions").await, 1);

    // Today's sales at this till.
    browser.click("#tabs button[data-tab=sales]").await;
    browser
        .wait_for(
            "today's sales",
            "return document.querySelectorAll('#sales li').length === 1;",
        )
        .await;
    assert!(browser.text("#sales-count").await.contains('1'));
    assert!(browser.text("#sales").await.contains("13.75"));

    // Above the password-free amount (50.00 for an external card): the till waits while the
    // cardholder confirms on the phone, then turns to APPROVED.
    let (u, key) = (user.clone(), env.config.keys.pin_hashes.expose().to_vec());
    db::run(&env.pool, move |c| {
        cards::set_pin_hash(c, &u, &campuspay::tsm::pin_hash(&key, &u, PIN))
    })
    .await
    .unwrap()
    .unwrap();
    browser.click("#tabs button[data-tab=charge]").await;
    // The declined sale's amount is still there (to try again): cleared first.
    assert_eq!(browser.text("#amount").await, "3");
    browser.click("#clear").await;
    browser.keys(&format!("60\n{}\n", codes[1])).await;
    verdict(&browser, "pending").await;
    assert_eq!(browser.text("#result-title").await, "等待顾客在手机上确认");
    assert_eq!(browser.text("#result-total").await, "66.00");
    assert!(!browser.visible("#result-next").await);
    browser.document("till-pending").await;
    let phone = env.phone(&env.config.public_url, &user);
    let confirmed = blocking(move || {
        let listed = phone.confirmations().unwrap();
        let tx = listed.body["confirmations"][0]["transaction_id"]
            .as_str()
            .unwrap()
            .to_owned();
        phone.confirm(&tx, PIN).unwrap()
    })
    .await;
    assert_eq!(confirmed.status, 202, "{confirmed:?}");
    verdict(&browser, "approved").await;
    assert_eq!(browser.text("#result-total").await, "66.00");
    assert_eq!(env.balance(&user).await, money("20.25"));
    browser.keys("\n").await;

    // Reversing the last sale from today's list: amount and surcharge go back.
    browser.click("#tabs button[data-tab=sales]").await;
    browser
        .wait_for(
            "two sales, the last one reversible",
            "return document.querySelectorAll('#sales li').length === 2 \
             && !document.getElementById('reverse-last').disabled;",
        )
        .await;
    browser.document("till-sales").await;
    browser.click("#reverse-last").await;
    assert!(browser.text("#reverse-text").await.contains("60.00"));
    browser.click("#reverse-yes").await;
    verdict(&browser, "reversed").await;
    assert_eq!(browser.text("#result-title").await, "已撤销");
    assert_eq!(env.balance(&user).await, money("86.25"));
    assert_eq!(env.account_balance("merchant", "m1").await, money("12.50"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
    // The page read its answers from the till's own queue, as a hardware till does: it is
    // consumed and left empty (the broker's statistics lag a few seconds).
    eventually(
        "the till's queue read and empty",
        WAIT,
        Duration::from_millis(500),
        || {
            let q = env.mgmt().queue(&env.vhost, "pos.m1.t1");
            async move {
                let q = q.map_err(|e| e.to_string())?;
                match (q["consumers"].as_u64(), q["messages"].as_u64()) {
                    (Some(c), Some(0)) if c >= 1 => Ok(()),
                    _ => Err(format!(
                        "consumers {} messages {}",
                        q["consumers"], q["messages"]
                    )),
                }
            }
        },
    )
    .await;
}

const PIN: &str = "246810";

#[actix_rt::test]
async fn a_dynamic_qr_on_the_page_paid_by_a_phone_turns_the_page_to_approved() {
    let Some(tmp) = ffmpeg_or_skip("till b") else {
        return;
    };
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "50.00").await;
    let link = till_link(&env, "m1", "t1").await;
    // The phone's payment code, as its QR code, filmed by the till's (fake) camera.
    let codes = env.codes(&user).await;
    let png = tmp.join("code.png");
    std::fs::write(&png, campuspay::qr::render_png(&codes[0]).unwrap()).unwrap();
    let y4m = tmp.join("camera.y4m");
    y4m_of(&png, &y4m);
    // The narrowest screen the page is laid out for.
    let opts = Options {
        fake_camera: Some(y4m),
        ..Options::default()
    };
    let Some(browser) = Browser::launch("till b", opts).await else {
        return;
    };
    sign_in(&browser, &link).await;
    no_sideways_scroll(&browser, WIDTH, "the till").await;
    // The camera as the fallback scanner.
    browser.keys("6\n").await;
    browser.click("#camera").await;
    verdict(&browser, "approved").await;
    assert_eq!(browser.text("#result-total").await, "6.00");
    assert_eq!(env.balance(&user).await, money("44.00"));
    browser.keys("\n").await;
    browser.keys("8").await;
    browser.click("#show-qr").await;
    let payload = browser
        .wait_for(
            "a dynamic QR code",
            "return document.getElementById('qr').dataset.payload;",
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(browser.visible("#screen-qr").await);
    assert!(browser.text("#qr-left").await.contains("秒后失效"));
    assert_eq!(browser.text("#qr-amount").await, "8.00");
    let png = browser.element_png("#qr").await;
    assert_eq!(
        read_qr(&png).as_deref(),
        Some(payload.as_str()),
        "the QR code reads back"
    );
    no_sideways_scroll(&browser, WIDTH, "the dynamic QR code").await;
    browser.document("till-qr").await;

    let phone = env.phone(&base, &user);
    let done = blocking(move || {
        let order = phone
            .create_order(&uuid::Uuid::new_v4().to_string(), &payload)
            .unwrap();
        assert_eq!(order.status, 201, "{order:?}");
        assert_eq!(order.body["amount"], "8.00", "{order:?}");
        let id = order.body["order_id"].as_str().unwrap().to_owned();
        let paid = phone.pay(&id, None).unwrap();
        assert_eq!(paid.status, 202, "{paid:?}");
        phone.wait_final(&id, Duration::from_secs(20)).unwrap()
    })
    .await;
    assert_eq!(done.body["status"], "approved", "{done:?}");
    verdict(&browser, "approved").await;
    assert_eq!(browser.text("#result-total").await, "8.00");
    assert_eq!(env.balance(&user).await, money("36.00"));
    browser.keys("\n").await;

    // No answer (the pipeline is down): the page sends the same request again, then asks
    // (query.v1), as the contract's timeout rules say; once the pipeline is back the sale is
    // approved, and charged once.
    let codes = env.codes(&user).await;
    env.stop_pipeline().await;
    browser.keys(&format!("5\n{}\n", codes[0])).await;
    verdict(&browser, "sending").await;
    browser
        .wait_for(
            "the same request sent again",
            "return document.getElementById('result-reason').innerText.includes('重发');",
        )
        .await;
    browser
        .wait_for(
            "a query",
            "return document.getElementById('result-reason').innerText.includes('查询');",
        )
        .await;
    env.start_pipeline();
    verdict(&browser, "approved").await;
    assert_eq!(browser.text("#result-total").await, "5.00");
    assert_eq!(env.balance(&user).await, money("31.00"));
    assert_eq!(
        env.count("SELECT count(*) AS n FROM transactions WHERE mode = 'reverse_scan'")
            .await,
        2,
        "the camera's sale and this one, charged once"
    );
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}

/// One HTTP answer: status and JSON body (or the text as a string).
struct Got {
    status: u16,
    body: Value,
    text: String,
}

impl Got {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// A request as a page's fetch sends it, with `cookie` as the session.
fn call(base: &str, cookie: Option<&str>, method: &str, path: &str, body: Option<Value>) -> Got {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build();
    let mut req = agent
        .request(method, &format!("{base}{path}"))
        .set("sec-fetch-site", "same-origin");
    if let Some(c) = cookie {
        req = req.set("cookie", &format!("{COOKIE}={c}"));
    }
    if method != "GET" {
        req = req.set("x-campuspay-csrf", "1");
    }
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    Got {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// A session of `role` for `subject`, made directly in the database (its token version 1 or,
/// for an operator, 0); its cookie value.
async fn session(env: &TestEnv, role: &str, subject: &str, version: i32) -> String {
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = hex::encode(session_hash(env.config.keys.sessions.expose(), &secret));
    env.sql(&format!(
        "INSERT INTO sessions (id_hash, role, subject, token_version, expires_at) \
         VALUES ('\\x{hash}', '{role}', '{subject}', {version}, now() + interval '1 hour')"
    ))
    .await;
    secret.expose().to_owned()
}

/// A form POST as the browser sends it from our own page; the answer's status and session
/// cookie.
fn form(base: &str, path: &str, body: &str, site: &str) -> (u16, Option<String>, String) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build();
    let resp = agent
        .post(&format!("{base}{path}"))
        .set("content-type", "application/x-www-form-urlencoded")
        .set("sec-fetch-site", site)
        .send_string(body);
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    let cookie = resp
        .all("set-cookie")
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))
        .and_then(|rest| rest.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let location = resp.header("location").unwrap_or_default().to_owned();
    (status, cookie, location)
}

#[actix_rt::test]
async fn a_till_signs_in_with_the_cli_link_or_its_own_token_and_rotation_ends_it() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    // The CLI prints a till's link on CAMPUSPAY_PUBLIC_URL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
        .args(["admin", "token", "--terminal", "m1/t1", "--link", "--json"])
        .env("CAMPUSPAY_ENV", "development")
        .env("DATABASE_URL", &env.config.database_url)
        .env("AMQP_URL", &env.config.amqp_url)
        .env("CAMPUSPAY_PUBLIC_URL", &base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&made["role"], &made["merchant_id"], &made["terminal_id"]),
        (&json!("terminal"), &json!("m1"), &json!("t1")),
        "{made}"
    );
    let link = made["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{base}/signin/")), "{link}");
    // A terminal that does not exist gets no link; a malformed one is a usage error.
    for (arg, code) in [("m1/t9", 1), ("m1", 2)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
            .args(["admin", "token", "--terminal", arg, "--link"])
            .env("CAMPUSPAY_ENV", "development")
            .env("DATABASE_URL", &env.config.database_url)
            .env("AMQP_URL", &env.config.amqp_url)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{arg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (m, t) = (
        MerchantId::parse("m1").unwrap(),
        TerminalId::parse("t1").unwrap(),
    );
    let token = env.tokens().terminal(&m, &t).await.unwrap();
    let old_token = token.clone();
    let cardholder_token = env.jwt.issue_cardholder(&user, 600, 1).unwrap();
    let b = base.clone();
    let (by_link, by_token) = blocking(move || {
        let secret = link.rsplit('/').next().unwrap().to_owned();
        let (status, by_link, location) =
            form(&b, "/signin", &format!("secret={secret}"), "same-origin");
        assert_eq!((status, location.as_str()), (303, "/pos"));
        let by_link = by_link.expect("a session from the link");
        let me = call(&b, Some(&by_link), "GET", "/pos/v1/me", None);
        assert_eq!(
            (me.status, me.body["terminal_id"].as_str()),
            (200, Some("t1"))
        );
        // The till's own token on the page's form: the same kind of session.
        let (status, by_token, location) = form(
            &b,
            "/signin/token",
            &format!("token={token}"),
            "same-origin",
        );
        assert_eq!((status, location.as_str()), (303, "/pos"));
        let by_token = by_token.expect("a session from the token");
        let me = call(&b, Some(&by_token), "GET", "/pos/v1/me", None);
        assert_eq!(
            (me.status, me.body["merchant_id"].as_str()),
            (200, Some("m1"))
        );
        // Not from another site, not a cardholder's token, not garbage.
        let (status, cookie, _) =
            form(&b, "/signin/token", &format!("token={token}"), "cross-site");
        assert_eq!((status, cookie), (403, None));
        for bad in [cardholder_token.as_str(), "nope", ""] {
            let (status, cookie, _) =
                form(&b, "/signin/token", &format!("token={bad}"), "same-origin");
            assert_eq!((status, cookie), (403, None), "{bad}");
        }
        (by_link, by_token)
    })
    .await;
    // Rotating the terminal ends both sessions and its old token signs nobody in.
    ops::merchants::rotate_terminal(&env.ops(), &Operator::admin("admin:test"), &m, &t)
        .await
        .map(|_| ())
        .expect("the terminal is rotated");
    let b = base.clone();
    blocking(move || {
        for s in [&by_link, &by_token] {
            let me = call(&b, Some(s), "GET", "/pos/v1/me", None);
            assert_eq!((me.status, me.code()), (401, "unauthorized"));
        }
        let (status, cookie, _) = form(
            &b,
            "/signin/token",
            &format!("token={old_token}"),
            "same-origin",
        );
        assert_eq!(
            (status, cookie),
            (403, None),
            "the token from before the rotation"
        );
    })
    .await;
}

#[actix_rt::test]
async fn each_role_opens_only_its_own_pages_and_the_bridge_takes_no_identity_from_a_body() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.merchant("m1", &["t1"]).await;
    env.merchant("m2", &["t2"]).await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    let till = session(&env, "terminal", "m1/t1", 1).await;
    let cardholder = session(&env, "cardholder", "s001", 1).await;
    let operator = session(&env, "admin", "li", 0).await;
    // Everything published for either till, to prove the refusals publish nothing.
    let mut t1 = env.subscribe("pos.m1.t1").await;
    let mut t2 = env.subscribe("pos.m2.t2").await;
    let b = base.clone();
    let (til, card, op) = (till.clone(), cardholder.clone(), operator.clone());
    blocking(move || {
        // The till's own page and routes.
        let page = call(&b, Some(&til), "GET", "/pos", None);
        assert_eq!(page.status, 200);
        assert!(page.text.contains("/pos/till.js"));
        let me = call(&b, Some(&til), "GET", "/pos/v1/me", None);
        assert_eq!((me.status, me.body["terminal_id"].as_str()), (200, Some("t1")));
        // Not the wallet, not the back office, no console.
        let app = call(&b, Some(&til), "GET", "/app", None);
        assert_eq!(app.status, 403, "{}", app.text);
        let v1 = call(&b, Some(&til), "GET", "/v1/me", None);
        assert_eq!((v1.status, v1.code()), (401, "unauthorized"));
        // The back office takes an operator's session: another role's is forbidden.
        let admin = call(&b, Some(&til), "GET", "/admin/v1/queues", None);
        assert_eq!((admin.status, admin.code()), (403, "forbidden"));
        let console = call(&b, Some(&til), "GET", "/console", None);
        assert_eq!(console.status, 403, "{}", console.text);
        // A cardholder's and an operator's session: not a till.
        for who in [&card, &op] {
            let page = call(&b, Some(who), "GET", "/pos", None);
            assert_eq!(page.status, 403, "{}", page.text);
            assert!(page.text.contains("收银台"));
            for (method, path) in [("GET", "/pos/v1/me"), ("GET", "/pos/v1/sales"), ("GET", "/pos/v1/events"), ("GET", "/pos/v1/dynamic-qr/Q7K2M9X4B1T8R5N3C6VZ")] {
                let a = call(&b, Some(who), method, path, None);
                assert_eq!((a.status, a.code()), (403, "forbidden"), "{path}");
            }
            let a = call(&b, Some(who), "POST", "/pos/v1/scans", Some(json!({
                "request_id": uuid::Uuid::new_v4().to_string(),
                "payment_code": "881234567890123452", "amount": "1.00"})));
            assert_eq!((a.status, a.code()), (403, "forbidden"));
        }
        assert_eq!(call(&b, Some(&card), "GET", "/app", None).status, 200);
        let nope = call(&b, Some(&til), "GET", "/pos/v1/dynamic-qr/Q7K2M9X4B1T8R5N3C6VZ", None);
        assert_eq!((nope.status, nope.code()), (404, "not_found"));
        let none = call(&b, None, "GET", "/pos/v1/me", None);
        assert_eq!((none.status, none.code()), (401, "unauthorized"));
        assert_eq!(call(&b, None, "GET", "/pos", None).status, 200);

        // The bridge: no identity in a body, a clear 400 for what is wrong.
        let rid = || uuid::Uuid::new_v4().to_string();
        let code = unissued_code();
        for (body, want) in [
            (json!({"request_id": rid(), "payment_code": code, "amount": "1.00",
                    "merchant_id": "m2", "terminal_id": "t2"}), "invalid_body"),
            (json!({"request_id": rid(), "payment_code": code, "amount": "1.00",
                    "terminal_id": "t1"}), "invalid_body"),
            (json!({"request_id": rid(), "payment_code": code, "amount": "1e3"}), "invalid_amount"),
            (json!({"request_id": rid(), "payment_code": code, "amount": "-1.00"}), "invalid_amount"),
            (json!({"request_id": rid(), "payment_code": code, "amount": "0"}), "invalid_amount"),
            (json!({"request_id": "nope", "payment_code": code, "amount": "1.00"}), "invalid_body"),
            (json!({"request_id": rid(), "payment_code": "881234567890123450", "amount": "1.00"}), "invalid_payment_code"),
        ] {
            let a = call(&b, Some(&til), "POST", "/pos/v1/scans", Some(body.clone()));
            assert_eq!((a.status, a.code()), (400, want), "{body}: {}", a.text);
        }
        let a = call(&b, Some(&til), "POST", "/pos/v1/dynamic-qr", Some(json!({"request_id": rid(), "amount": "abc"})));
        assert_eq!((a.status, a.code()), (400, "invalid_amount"));
        let a = call(&b, Some(&til), "POST", "/pos/v1/reversals", Some(json!({"request_id": rid(), "merchant_id": "m2"})));
        assert_eq!((a.status, a.code()), (400, "invalid_body"));
        // A cookie without the CSRF header changes nothing.
        let agent = ureq::AgentBuilder::new().build();
        let resp = agent
            .post(&format!("{b}/pos/v1/scans"))
            .set("cookie", &format!("{COOKIE}={til}"))
            .send_json(json!({"request_id": rid(), "payment_code": code, "amount": "1.00"}));
        assert!(matches!(resp, Err(ureq::Error::Status(403, _))));
    })
    .await;
    assert_quiet(&mut t1).await;
    assert_quiet(&mut t2).await;
    assert_eq!(env.count("SELECT count(*) AS n FROM transactions").await, 0);

    // A good request goes through the pipeline as the till of the session, whatever it is
    // asked: the answer is on t1's queue.
    let b = base.clone();
    let rid = uuid::Uuid::new_v4().to_string();
    let r = rid.clone();
    let code = env.codes(&user).await.remove(0);
    let sent = blocking(move || {
        call(
            &b,
            Some(&till),
            "POST",
            "/pos/v1/scans",
            Some(json!({
            "request_id": r, "payment_code": code, "amount": "2.00"})),
        )
    })
    .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    assert_eq!(sent.body["routing_key"], "pos.m1.t1.scan");
    let result = t1
        .wait_for(campuspay::domain::RequestId::parse(&rid).unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(result.status, campuspay::domain::TxState::Approved);
    assert_eq!(
        (result.merchant_id.as_str(), result.terminal_id.as_str()),
        ("m1", "t1")
    );
    assert_quiet(&mut t2).await;
    assert_eq!(env.balance(&user).await, money("18.00"));
    let report = env.verify().await;
    assert!(report.ok, "{report:?}");
}
