//! The operator console's pages: `/console` (the back office in the browser; its scripts call
//! `/admin/v1` with the session cookie) and the printable A4 sheet of a merchant's static QR
//! codes. Unlike the wallet page, these pages are served only to a browser signed in as an
//! operator (a session of the Admin role, from `campuspay admin token --admin NAME --link`):
//! another role's session, or none, gets a page saying how to sign in, and never the console.
//! Their scripts and styles are public files under `/console/` (`pages::ASSETS`).

use super::pages::{escape_html, message, page};
use super::session::{self, Session};
use super::AppState;
use crate::domain::SessionRole;
use crate::ops::{self, Ops};
use actix_web::{web, HttpRequest, HttpResponse};

const CONSOLE: &str = include_str!("../../web/console/index.html");
const SHEET: &str = include_str!("../../web/console/sheet.html");

/// Registered by `pages::routes` (pages are not part of the API document).
pub fn pages(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(console))
        .route("/console/merchants/{id}/sheet", web::get().to(sheet));
}

/// The operator signed in with this request's cookie, or the page to show instead.
async fn operator(req: &HttpRequest, state: &web::Data<AppState>) -> Result<String, HttpResponse> {
    let signed_out = || {
        message(
            401,
            "请登录管理后台",
            "请打开管理员登录链接（campuspay admin token --admin 姓名 --link），每个链接只能用一次。",
            "Sign in to the console",
            "Open an operator's sign-in link (campuspay admin token --admin NAME --link); each link works once.",
        )
    };
    match session::from_cookie(req, state).await {
        Ok(Some(Session {
            role: SessionRole::Admin,
            subject,
            ..
        })) => Ok(subject),
        Ok(Some(_)) => Err(message(
            403,
            "无权访问",
            "管理后台只对管理员开放。当前登录的是钱包或收银台，请用管理员登录链接登录。",
            "Not for this sign-in",
            "The console is for operators only. This browser is signed in to a wallet or a till: use an operator's sign-in link.",
        )),
        Ok(None) | Err(_) => Err(signed_out()),
    }
}

/// `GET /console`: the console, for an operator's session only.
async fn console(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match operator(&req, &state).await {
        Ok(name) => page(200, CONSOLE.replace("{{operator}}", &escape_html(&name))),
        Err(refused) => refused,
    }
}

/// `GET /console/merchants/{id}/sheet`: an A4 page to print, the merchant's name and each
/// code (the merchant's own and one per till) large enough for a counter stand.
async fn sheet(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(refused) = operator(&req, &state).await {
        return refused;
    }
    let not_found = || {
        message(
            404,
            "没有这个商户",
            "没有找到这个商户。",
            "No such merchant",
            "There is no such merchant.",
        )
    };
    let ops = Ops::new(state.pool.clone(), state.config.clone());
    let list = match ops::merchants::list(&ops).await {
        Ok(l) => l,
        Err(e) => {
            log::warn!("the QR sheet could not list merchants: {e}");
            return message(
                503,
                "暂时无法显示",
                "数据库暂时不可用，请稍后再试。",
                "Unavailable",
                "The database is unavailable; try again shortly.",
            );
        }
    };
    let Some(m) = list.into_iter().find(|m| m.merchant_id == *path) else {
        return not_found();
    };
    // Ids are [A-Za-z0-9_-] (`MerchantId`, `TerminalId`), names are escaped.
    let name = escape_html(&m.name);
    let id = escape_html(&m.merchant_id);
    let mut codes = String::new();
    let mut one = |terminal: Option<&str>| {
        let (query, label_zh, label_en) = match terminal {
            Some(t) => (
                format!("?terminal={}", escape_html(t)),
                format!("收银台 {}", escape_html(t)),
                format!("Till {}", escape_html(t)),
            ),
            None => (
                String::new(),
                "商户收款码（任意收银台）".to_owned(),
                "Merchant code (any till)".to_owned(),
            ),
        };
        codes.push_str(&format!(
            "<section class=\"stand\"><h1>{name}</h1>\
             <img src=\"/admin/v1/merchants/{id}/qr.svg{query}\" alt=\"QR\">\
             <p class=\"scan\">一卡通扫码付款 · Scan with the campus card wallet</p>\
             <p class=\"till\">{label_zh} · {label_en}</p>\
             <p class=\"ids\">{id}{}</p></section>\n",
            terminal
                .map(|t| format!(" / {}", escape_html(t)))
                .unwrap_or_default()
        ));
    };
    one(None);
    for t in &m.terminals {
        one(Some(&t.terminal_id));
    }
    page(
        200,
        SHEET
            .replace("{{name}}", &name)
            .replace("{{codes}}", &codes),
    )
}
