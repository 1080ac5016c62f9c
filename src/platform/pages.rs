//! The browser pages and their files, compiled into the binary (`web/`): the wallet at `/app`,
//! the till at `/pos`, the sign-in pages, and the shared and vendored scripts under
//! `/assets/`. Plain HTML, small JavaScript modules and CSS; the wallet talks only to `/v1`, the
//! till only to `/pos/v1` (no second path to money).
//!
//! A page belongs to one role: a browser signed in with a session of another role (a till's
//! browser opening `/app`, a cardholder's or an operator's opening `/pos`) gets a 403 page
//! instead, so one browser is never half one role and half another.
//!
//! Every page is served with a Content-Security-Policy that allows scripts, styles and
//! connections from this origin only and no inline script or style at all, so an injected
//! string cannot run; the sign-in pages, the only ones rendered with data, escape it too.

use super::{session, AppState};
use crate::db::sessions::{LinkProblem, LiveLink};
use crate::domain::{SessionRole, SessionSecret};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Scripts, styles, workers and connections from this origin only; images also from `data:`
/// and `blob:` (codes drawn on a canvas, a picked photo); the camera's stream; forms post
/// only here; no framing (a framed wallet could be clickjacked into paying).
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
connect-src 'self'; media-src 'self' blob: mediastream:; worker-src 'self'; manifest-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($url:literal, $file:literal, $ctype:expr) => {
        Asset {
            path: $url,
            content_type: $ctype,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Every file a page may load, by URL.
static ASSETS: &[Asset] = &[
    asset!("/app", "app/index.html", HTML),
    asset!("/app/wallet.js", "app/wallet.js", JS),
    asset!("/app/codes.js", "app/codes.js", JS),
    asset!("/app/scan.js", "app/scan.js", JS),
    asset!("/app/order.js", "app/order.js", JS),
    asset!("/app/confirm.js", "app/confirm.js", JS),
    asset!("/app/sw.js", "app/sw.js", JS),
    asset!("/pos", "pos/index.html", HTML),
    asset!("/pos/till.js", "pos/till.js", JS),
    asset!("/pos/sale.js", "pos/sale.js", JS),
    asset!("/pos/sales.js", "pos/sales.js", JS),
    asset!("/pos/scanner.js", "pos/scanner.js", JS),
    asset!("/pos/words.js", "pos/words.js", JS),
    asset!("/pos/till.css", "pos/till.css", CSS),
    asset!("/assets/api.js", "common/api.js", JS),
    asset!("/assets/i18n.js", "common/i18n.js", JS),
    asset!("/assets/money.js", "common/money.js", JS),
    asset!("/assets/pinpad.js", "common/pinpad.js", JS),
    asset!("/assets/qr.js", "common/qr.js", JS),
    asset!("/assets/style.css", "common/style.css", CSS),
    // The console's scripts and styles (its page, `/console`, is served to operators only:
    // `platform::console`).
    asset!("/console/console.css", "console/console.css", CSS),
    asset!("/console/console.js", "console/console.js", JS),
    asset!("/console/ui.js", "console/ui.js", JS),
    asset!("/console/words.js", "console/words.js", JS),
    asset!("/console/dashboard.js", "console/dashboard.js", JS),
    asset!("/console/queues.js", "console/queues.js", JS),
    asset!("/console/merchants.js", "console/merchants.js", JS),
    asset!("/console/cards.js", "console/cards.js", JS),
    asset!("/console/money.js", "console/money.js", JS),
    asset!("/console/reports.js", "console/reports.js", JS),
    asset!("/console/sheet.js", "console/sheet.js", JS),
    asset!(
        "/assets/vendor/jsqr-1.4.0/jsQR.js",
        "vendor/jsqr-1.4.0/jsQR.js",
        JS
    ),
    asset!(
        "/assets/vendor/qrcode-generator-1.4.4/qrcode.js",
        "vendor/qrcode-generator-1.4.4/qrcode.js",
        JS
    ),
    asset!(
        "/assets/vendor/jsbarcode-3.11.6/JsBarcode.code128.min.js",
        "vendor/jsbarcode-3.11.6/JsBarcode.code128.min.js",
        JS
    ),
];

const SIGN_IN: &str = include_str!("../../web/signin.html");
const MESSAGE: &str = include_str!("../../web/message.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    for a in ASSETS {
        cfg.route(a.path, web::get().to(move |req: HttpRequest| serve(req, a)));
    }
    super::console::pages(cfg);
    for (slash, page) in [("/app/", "/app"), ("/pos/", "/pos")] {
        cfg.route(
            slash,
            web::get().to(move || async move {
                HttpResponse::MovedPermanently()
                    .insert_header((header::LOCATION, page))
                    .finish()
            }),
        );
    }
}

/// A strong validator per file, computed once: browsers revalidate (`no-cache`) and get a 304.
fn etag(a: &'static Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    });
    ASSETS
        .iter()
        .position(|x| std::ptr::eq(x, a))
        .and_then(|i| tags.get(i))
        .map_or("\"\"", String::as_str)
}

/// The headers every page and file gets.
pub(super) fn secured(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("permissions-policy", "camera=(self), microphone=()"));
    b
}

/// The role a page is for (its files are not gated: they hold no data).
fn page_role(path: &str) -> Option<SessionRole> {
    match path {
        "/app" => Some(SessionRole::Cardholder),
        "/pos" => Some(SessionRole::Terminal),
        _ => None,
    }
}

/// A page opened by a browser signed in as another role: refused, in words.
async fn wrong_role(req: &HttpRequest, role: SessionRole) -> Option<HttpResponse> {
    let state = req.app_data::<web::Data<AppState>>()?;
    if !session::has_cookie(req) {
        return None;
    }
    // A dead cookie is no session: the page shows its own "sign in" screen.
    let live = session::from_cookie(req, state).await.ok().flatten()?;
    if live.role == role {
        return None;
    }
    let (zh, en) = role_words(role);
    Some(message(
        403,
        "无法打开",
        &format!("这个浏览器已作为其他身份登录，不能打开{zh}页面。请先退出登录，或使用{zh}的登录链接。"),
        "Cannot open this page",
        &format!("This browser is signed in as someone else and cannot open the {en} page. Sign out first, or use the {en}'s sign-in link."),
    ))
}

async fn serve(req: HttpRequest, a: &'static Asset) -> HttpResponse {
    if let Some(role) = page_role(a.path) {
        if let Some(refused) = wrong_role(&req, role).await {
            return refused;
        }
    }
    let tag = etag(a);
    let mut b = secured(HttpResponse::Ok());
    b.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if a.path == "/app/sw.js" {
        // The worker lives under /app/ but serves the page /app itself.
        b.insert_header(("service-worker-allowed", "/app"));
    }
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        b.status(actix_web::http::StatusCode::NOT_MODIFIED);
        return b.finish();
    }
    b.content_type(a.content_type).body(a.body)
}

/// Text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page of its own (never cached, never indexed: it holds or answers a link's secret).
pub(super) fn page(status: u16, html: String) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = secured(HttpResponse::build(code));
    b.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-robots-tag", "noindex"))
        .content_type(HTML)
        .body(html)
}

/// What a role is called on the sign-in page (Chinese, English).
fn role_words(role: SessionRole) -> (&'static str, &'static str) {
    match role {
        SessionRole::Cardholder => ("一卡通钱包", "campus card wallet"),
        SessionRole::Terminal => ("收银台", "till"),
        SessionRole::Admin => ("管理后台", "back office"),
    }
}

/// The page a sign-in link shows: who it signs in, until when, and the button that does it.
/// `offset`: the campus time zone, in which the link's deadline is written.
pub fn sign_in_page(
    secret: &SessionSecret,
    link: &LiveLink,
    name: Option<&str>,
    offset: chrono::FixedOffset,
) -> HttpResponse {
    let (zh, en) = role_words(link.role);
    let who = match name {
        Some(n) => format!("{} ({})", escape_html(n), escape_html(&link.subject)),
        None => escape_html(&link.subject),
    };
    let html = SIGN_IN
        .replace("{{role_zh}}", zh)
        .replace("{{role_en}}", en)
        .replace("{{who}}", &who)
        .replace(
            "{{expires}}",
            &escape_html(
                &link
                    .expires_at
                    .with_timezone(&offset)
                    .format("%Y-%m-%d %H:%M (UTC%:z)")
                    .to_string(),
            ),
        )
        // Only the 43 base64url characters `SessionSecret::parse` admits reach this point.
        .replace("{{secret}}", secret.expose());
    page(200, html)
}

pub(super) fn message(
    status: u16,
    zh_title: &str,
    zh: &str,
    en_title: &str,
    en: &str,
) -> HttpResponse {
    let html = MESSAGE
        .replace("{{zh_title}}", zh_title)
        .replace("{{zh}}", zh)
        .replace("{{en_title}}", en_title)
        .replace("{{en}}", en);
    page(status, html)
}

/// A link that signs nobody in, said in words a person understands.
pub fn link_problem(p: LinkProblem) -> HttpResponse {
    let (status, zh, en) = match p {
        LinkProblem::Unknown => (
            404,
            "这个登录链接无效。请检查链接是否完整，或向一卡通服务中心索取新的链接。",
            "This sign-in link is not valid. Check that it was copied whole, or ask the card office for a new one.",
        ),
        LinkProblem::Used => (
            410,
            "这个登录链接已经用过了，每个链接只能使用一次。请索取新的链接。",
            "This sign-in link was already used; each link works once. Ask for a new one.",
        ),
        LinkProblem::Expired => (
            410,
            "这个登录链接已过期。请索取新的链接。",
            "This sign-in link has expired. Ask for a new one.",
        ),
        LinkProblem::Revoked => (
            410,
            "这个登录链接已被收回（例如挂失后）。请向一卡通服务中心索取新的链接。",
            "This sign-in link was withdrawn (for example after the phone was reported lost). Ask the card office for a new one.",
        ),
    };
    message(status, "无法登录", zh, "Cannot sign in", en)
}

/// A till's token that signs nobody in: not a valid terminal token, or (`replaced`) one of a
/// terminal that was rotated or removed since.
pub fn token_refused(replaced: bool) -> HttpResponse {
    if replaced {
        message(
            403,
            "无法登录",
            "这个收银台令牌已失效（收银台已更换令牌或已停用）。请使用新的令牌或登录链接。",
            "Cannot sign in",
            "This till token is no longer valid (the till was given a new one, or removed). Use the new token or a sign-in link.",
        )
    } else {
        message(
            403,
            "无法登录",
            "这不是有效的收银台令牌。请检查是否完整复制，或向一卡通服务中心索取登录链接。",
            "Cannot sign in",
            "This is not a valid till token. Check that it was copied whole, or ask the card office for a sign-in link.",
        )
    }
}

/// A sign-in form posted from another site.
pub fn forbidden_form() -> HttpResponse {
    message(
        403,
        "无法登录",
        "请直接打开登录链接，再点“登录”按钮。",
        "Cannot sign in",
        "Open the sign-in link itself, then press “Sign in”.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape_html(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape_html("李华"), "李华");
    }

    #[test]
    fn every_asset_has_a_distinct_url_and_a_body() {
        let mut seen = std::collections::BTreeSet::new();
        for a in ASSETS {
            assert!(seen.insert(a.path), "{} twice", a.path);
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(etag(a).len() > 2);
        }
        for t in ["{{secret}}", "{{who}}", "{{expires}}", "{{role_zh}}"] {
            assert!(SIGN_IN.contains(t), "{t}");
        }
        assert!(!SIGN_IN.contains("<script") && !MESSAGE.contains("<script"));
    }
}
