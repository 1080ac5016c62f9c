//! Sign-in links and browser sessions over plain HTTP (no browser): a link works once and not
//! by a GET, only from our own pages, not after it expired or was withdrawn; the cookie's
//! attributes; a session acts for its cardholder only, its POSTs need the CSRF header, and it
//! ends on sign-out, on revocation and beyond the per-cardholder limit; bearer tokens are
//! unaffected; the back office makes links over `/admin/v1` and the CLI, on the operators'
//! trail; the pages carry their security headers.

use crate::helpers::*;
use campuspay::auth::session_hash;
use campuspay::domain::session::MAX_LIVE_SESSIONS;
use campuspay::domain::{Identity, SessionSecret};
use campuspay::ops::{self, Operator};
use campuspay::platform::session::COOKIE;
use campuspay::sim::phone::Phone;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// One HTTP answer: status, headers (lower-case names; `set-cookie` joined by "\n"), body.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
    /// The session cookie this answer sets.
    fn cookie(&self) -> Option<String> {
        self.header("set-cookie")
            .lines()
            .find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))
            .and_then(|rest| rest.split(';').next())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// A bare HTTP client: no redirects followed, headers as given (a browser's, or an attacker's).
fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Got {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let mut headers = BTreeMap::new();
    for name in resp.headers_names() {
        let all: Vec<&str> = resp.all(&name);
        headers.insert(name.to_ascii_lowercase(), all.join("\n"));
    }
    let status = resp.status();
    Got {
        status,
        headers,
        body: resp.into_string().unwrap_or_default(),
    }
}

/// The browser's POST of the sign-in page's form.
fn submit(base: &str, secret: &str, extra: &[(&str, &str)]) -> Got {
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("sec-fetch-site", "same-origin"),
    ];
    headers.extend_from_slice(extra);
    request(
        "POST",
        &format!("{base}/signin"),
        &headers,
        Some(&format!("secret={secret}")),
    )
}

fn secret_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_owned()
}

fn with_cookie(cookie: &str) -> String {
    format!("{COOKIE}={cookie}")
}

/// A request as the wallet page's fetch sends it.
fn page_call(base: &str, cookie: &str, method: &str, path: &str) -> Got {
    let c = with_cookie(cookie);
    let mut headers = vec![("cookie", c.as_str()), ("sec-fetch-site", "same-origin")];
    if method != "GET" {
        headers.push(("x-campuspay-csrf", "1"));
    }
    request(method, &format!("{base}{path}"), &headers, None)
}

#[actix_rt::test]
async fn a_sign_in_link_shows_on_get_works_once_on_post_and_sets_a_strict_cookie() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    env.sql("UPDATE cardholders SET name = '<b>Li & \"Hua\"</b>' WHERE user_id = 's001'")
        .await;
    let link = env.sign_in_link(&user).await;
    assert!(link.starts_with(&format!("{base}/signin/")), "{link}");
    let secret = secret_of(&link);
    assert!(SessionSecret::parse(&secret).is_some());

    let b = base.clone();
    let cookie = blocking(move || {
        // A GET (a link previewer, the person opening it) shows the page and uses nothing.
        for _ in 0..2 {
            let page = request("GET", &link, &[], None);
            assert_eq!(page.status, 200, "{page:?}");
            assert!(page.body.contains("s001"), "{}", page.body);
            // The name is escaped: no markup of its own reaches the page.
            assert!(page
                .body
                .contains("&lt;b&gt;Li &amp; &quot;Hua&quot;&lt;/b&gt;"));
            assert!(!page.body.contains("<b>Li"));
            assert!(page.body.contains(&format!("value=\"{secret}\"")));
            assert_eq!(page.header("cache-control"), "no-store");
            assert_eq!(page.header("referrer-policy"), "no-referrer");
            assert!(page
                .header("content-security-policy")
                .contains("script-src 'self'"));
        }
        // A form posted by another site does not sign anyone in, and leaves the link unused.
        let forged = submit(&b, &secret, &[("sec-fetch-site", "cross-site")]);
        assert_eq!(forged.status, 403, "{forged:?}");
        assert!(forged.cookie().is_none());
        let forged = request(
            "POST",
            &format!("{b}/signin"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "https://evil.example"),
            ],
            Some(&format!("secret={secret}")),
        );
        assert_eq!(forged.status, 403, "{forged:?}");

        // The button: a session, a strict cookie, and the wallet.
        let signed = submit(&b, &secret, &[]);
        assert_eq!(signed.status, 303, "{signed:?}");
        assert_eq!(signed.header("location"), "/app");
        let set = signed.header("set-cookie").to_owned();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{attr} missing in {set}");
        }
        // A cardholder's session lives 30 days.
        let max_age: i64 = set
            .split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .and_then(|v| v.parse().ok())
            .expect("a Max-Age");
        assert!((30 * 86_400 - 60..=30 * 86_400).contains(&max_age), "{set}");
        assert!(
            !set.contains("Secure"),
            "an http platform cannot set a Secure cookie: {set}"
        );
        let cookie = signed.cookie().expect("a session cookie");
        assert_ne!(cookie, secret, "the session is not the link");

        // Twice: no. Neither by POST nor by GET.
        let again = submit(&b, &secret, &[]);
        assert_eq!(again.status, 410, "{again:?}");
        assert!(again.body.contains("already used"), "{}", again.body);
        assert!(again.cookie().is_none());
        let page = request("GET", &format!("{b}/signin/{secret}"), &[], None);
        assert_eq!(page.status, 410);

        // Nonsense and unknown secrets: the same clear page, nothing looked up for nonsense.
        for bad in ["nonsense", "%3Cscript%3E"] {
            let page = request("GET", &format!("{b}/signin/{bad}"), &[], None);
            assert_eq!(page.status, 404, "{bad}");
            assert!(page.body.contains("not valid"));
        }
        let unknown = SessionSecret::generate(&mut rand::rngs::OsRng);
        let got = submit(&b, unknown.expose(), &[]);
        assert_eq!(got.status, 404);
        let got = request(
            "POST",
            &format!("{b}/signin"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("other=1"),
        );
        assert_eq!(got.status, 404, "a malformed form: {got:?}");
        cookie
    })
    .await;

    // The cookie is the cardholder, for every /v1 route.
    let b = base.clone();
    blocking(move || {
        let me = page_call(&b, &cookie, "GET", "/v1/me");
        assert_eq!(me.status, 200, "{me:?}");
        assert_eq!(me.json()["user_id"], "s001");
        let codes = page_call(&b, &cookie, "POST", "/v1/payment-codes");
        assert_eq!(codes.status, 201, "{codes:?}");
        assert_eq!(codes.json()["codes"].as_array().map(Vec::len), Some(10));
    })
    .await;
    // Only hashes are stored: neither secret is in the database.
    assert_eq!(
        env.count("SELECT count(*) AS n FROM sign_in_links WHERE used_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(env.count("SELECT count(*) AS n FROM sessions WHERE role = 'cardholder' AND subject = 's001' AND revoked_at IS NULL").await, 1);
}

#[actix_rt::test]
async fn a_cookie_alone_changes_nothing_without_the_csrf_header_and_bearer_tokens_are_unchanged() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    let other = env.card("s002", Identity::Student, "20.00").await;
    let link = env.sign_in_link(&user).await;
    let bearer_other = env.jwt.issue_cardholder(&other, 600, 1).unwrap();
    let b = base.clone();
    blocking(move || {
        let cookie = submit(&b, &secret_of(&link), &[]).cookie().unwrap();
        let c = with_cookie(&cookie);
        // No header: refused before anything else (no codes issued).
        let plain = request(
            "POST",
            &format!("{b}/v1/payment-codes"),
            &[("cookie", &c)],
            None,
        );
        assert_eq!(
            (plain.status, plain.code()),
            (403, "csrf_refused".into()),
            "{plain:?}"
        );
        // The header, but from another site.
        let cross = request(
            "POST",
            &format!("{b}/v1/payment-codes"),
            &[
                ("cookie", &c),
                ("x-campuspay-csrf", "1"),
                ("sec-fetch-site", "cross-site"),
            ],
            None,
        );
        assert_eq!((cross.status, cross.code()), (403, "csrf_refused".into()));
        // Reads need no header (they change nothing; SameSite keeps other sites out).
        let me = request("GET", &format!("{b}/v1/me"), &[("cookie", &c)], None);
        assert_eq!(me.status, 200);
        // A bearer token decides alone when present: s002's token with s001's cookie is s002.
        let both = request(
            "GET",
            &format!("{b}/v1/me"),
            &[
                ("cookie", &c),
                ("authorization", &format!("Bearer {bearer_other}")),
            ],
            None,
        );
        assert_eq!(both.json()["user_id"], "s002");
        // ... and needs no CSRF header, as before.
        let a = Phone::new(&b, &bearer_other).payment_codes().unwrap();
        assert_eq!(a.status, 201);
        // A cookie that is no session: 401, with words.
        let forged = page_call(&b, "x".repeat(43).as_str(), "GET", "/v1/me");
        assert_eq!((forged.status, forged.code()), (401, "unauthorized".into()));
        assert!(forged.json()["message"]
            .as_str()
            .unwrap()
            .contains("sign in again"));
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) AS n FROM payment_codes p JOIN cards c ON c.id = p.card_id WHERE c.user_id = 's001'").await,
        0,
        "refused requests issued no codes"
    );
}

#[actix_rt::test]
async fn sessions_end_on_sign_out_on_revocation_and_beyond_the_limit() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    let user = env.card("s001", Identity::Student, "20.00").await;

    // Sign-out ends the session on the server, not only in the browser.
    let link = env.sign_in_link(&user).await;
    let b = base.clone();
    blocking(move || {
        let cookie = submit(&b, &secret_of(&link), &[]).cookie().unwrap();
        // Without the header a page elsewhere cannot sign the visitor out.
        let c = with_cookie(&cookie);
        let forged = request("POST", &format!("{b}/signout"), &[("cookie", &c)], None);
        assert_eq!((forged.status, forged.code()), (403, "csrf_refused".into()));
        assert_eq!(page_call(&b, &cookie, "GET", "/v1/me").status, 200);
        let out = page_call(&b, &cookie, "POST", "/signout");
        assert_eq!(out.status, 204);
        assert!(out.header("set-cookie").contains("Max-Age=0"));
        assert_eq!(page_call(&b, &cookie, "GET", "/v1/me").status, 401);
    })
    .await;

    // At most MAX_LIVE_SESSIONS per cardholder: the oldest goes.
    let mut cookies = Vec::new();
    for _ in 0..=MAX_LIVE_SESSIONS {
        let link = env.sign_in_link(&user).await;
        let b = base.clone();
        cookies.push(blocking(move || submit(&b, &secret_of(&link), &[]).cookie().unwrap()).await);
    }
    let b = base.clone();
    let kept = cookies.clone();
    blocking(move || {
        assert_eq!(
            page_call(&b, &kept[0], "GET", "/v1/me").status,
            401,
            "the oldest ended"
        );
        for c in &kept[1..] {
            assert_eq!(page_call(&b, c, "GET", "/v1/me").status, 200);
        }
    })
    .await;

    // A lost phone: revoking the tokens ends every session and withdraws unused links.
    let unused = env.sign_in_link(&user).await;
    ops::tokens::revoke_cardholder(&env.ops(), &Operator::admin("admin:test"), &user)
        .await
        .unwrap();
    let b = base.clone();
    blocking(move || {
        for c in &cookies[1..] {
            assert_eq!(page_call(&b, c, "GET", "/v1/me").status, 401);
        }
        let page = request("GET", &unused, &[], None);
        assert_eq!(page.status, 410);
        assert!(page.body.contains("withdrawn"), "{}", page.body);
        assert_eq!(submit(&b, &secret_of(&unused), &[]).status, 410);
    })
    .await;
    // A link made after the revocation works again.
    let fresh = env.sign_in_link(&user).await;
    let b = base.clone();
    blocking(move || {
        let cookie = submit(&b, &secret_of(&fresh), &[]).cookie().unwrap();
        assert_eq!(page_call(&b, &cookie, "GET", "/v1/me").status, 200);
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL")
            .await,
        1
    );
}

#[actix_rt::test]
async fn an_expired_link_and_a_session_of_another_role_do_nothing_for_the_wallet() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    let link = env.sign_in_link(&user).await;
    env.sql("UPDATE sign_in_links SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'")
        .await;
    // An operator's session (the console's, next): not a cardholder for /v1.
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let hash = hex::encode(session_hash(env.config.keys.sessions.expose(), &secret));
    env.sql(&format!(
        "INSERT INTO sessions (id_hash, role, subject, token_version, expires_at) \
         VALUES ('\\x{hash}', 'admin', 'li', 0, now() + interval '1 hour')"
    ))
    .await;
    let b = base.clone();
    blocking(move || {
        let page = request("GET", &link, &[], None);
        assert_eq!(page.status, 410);
        assert!(page.body.contains("expired"));
        let got = submit(&b, &secret_of(&link), &[]);
        assert_eq!(got.status, 410);
        assert!(got.cookie().is_none());
        let me = page_call(&b, secret.expose(), "GET", "/v1/me");
        assert_eq!(
            (me.status, me.code()),
            (401, "unauthorized".into()),
            "{me:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn the_back_office_makes_links_over_admin_v1_and_the_cli_on_the_trail() {
    let mut env = TestEnv::start().await;
    let base = env.start_platform().await;
    env.card("s001", Identity::Student, "20.00").await;
    let admin = Phone::new(&base, &env.jwt.issue_admin("li", 600).unwrap());
    let b = base.clone();
    blocking(move || {
        let a = admin
            .call(
                "POST",
                "/admin/v1/cards/s001/sign-in-links",
                Some(json!({"ttl_secs": 120})),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{a:?}");
        let url = a.body["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{b}/signin/")));
        assert_eq!(a.body["user_id"], "s001");
        let expires =
            chrono::DateTime::parse_from_rfc3339(a.body["expires_at"].as_str().unwrap()).unwrap();
        let left = expires
            .signed_duration_since(chrono::Utc::now())
            .num_seconds();
        assert!((100..=120).contains(&left), "{left}");
        // No body: the default 15 minutes.
        let a = admin
            .call("POST", "/admin/v1/cards/s001/sign-in-links", None)
            .unwrap();
        assert_eq!(a.status, 201);
        for (ttl, status, code) in [(59, 400, "invalid_body"), (86_401, 400, "invalid_body")] {
            let a = admin
                .call(
                    "POST",
                    "/admin/v1/cards/s001/sign-in-links",
                    Some(json!({"ttl_secs": ttl})),
                )
                .unwrap();
            assert_eq!((a.status, a.code()), (status, code), "{ttl}: {a:?}");
        }
        let a = admin
            .call("POST", "/admin/v1/cards/nobody/sign-in-links", None)
            .unwrap();
        assert_eq!((a.status, a.code()), (404, "not_found"));
    })
    .await;
    // The CLI prints the link on CAMPUSPAY_PUBLIC_URL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
        .args(["admin", "token", "--user", "s001", "--link", "--ttl", "300"])
        .env("CAMPUSPAY_ENV", "development")
        .env("DATABASE_URL", &env.config.database_url)
        .env("AMQP_URL", &env.config.amqp_url)
        .env("CAMPUSPAY_PUBLIC_URL", "https://pay.campus.example/")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout.trim();
    assert!(
        url.starts_with("https://pay.campus.example/signin/"),
        "{url}"
    );
    assert!(SessionSecret::parse(&secret_of(url)).is_some());
    // Both are on the operators' trail, under their operator, without the secret.
    assert_eq!(
        env.count("SELECT count(*) AS n FROM operator_actions WHERE action = 'token.link' AND subject = 's001' AND operator = 'admin:li'").await,
        2
    );
    assert_eq!(
        env.count("SELECT count(*) AS n FROM operator_actions WHERE action = 'token.link' AND operator LIKE 'cli:%'").await,
        1
    );
    let secret = secret_of(url);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) AS n FROM operator_actions WHERE detail LIKE '%{secret}%'"
        ))
        .await,
        0
    );
}

#[actix_rt::test]
async fn the_pages_carry_their_security_headers_and_validators() {
    let mut env = TestEnv::empty().await;
    let base = env.start_platform().await;
    blocking(move || {
        for path in [
            "/app",
            "/app/wallet.js",
            "/assets/style.css",
            "/assets/vendor/jsqr-1.4.0/jsQR.js",
        ] {
            let got = request("GET", &format!("{base}{path}"), &[], None);
            assert_eq!(got.status, 200, "{path}");
            let csp = got.header("content-security-policy");
            for must in [
                "default-src 'none'",
                "script-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(must), "{path}: {csp}");
            }
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
            assert_eq!(got.header("x-content-type-options"), "nosniff");
            let etag = got.header("etag").to_owned();
            assert!(etag.len() > 10, "{path}: {etag}");
            let again = request(
                "GET",
                &format!("{base}{path}"),
                &[("if-none-match", &etag)],
                None,
            );
            assert_eq!(again.status, 304, "{path}");
        }
        let page = request("GET", &format!("{base}/app"), &[], None);
        assert!(page.header("content-type").starts_with("text/html"));
        // No inline script or style anywhere in the page.
        assert!(!page.body.contains("<script>") && !page.body.contains("style="));
        let sw = request("GET", &format!("{base}/app/sw.js"), &[], None);
        assert_eq!(sw.header("service-worker-allowed"), "/app");
        let slash = request("GET", &format!("{base}/app/"), &[], None);
        assert_eq!((slash.status, slash.header("location")), (301, "/app"));
    })
    .await;
}
