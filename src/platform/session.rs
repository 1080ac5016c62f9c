//! Browser sessions (docs/SECURITY.md, *Browser sessions*): the cookie, the CSRF rule, and the
//! sign-in and sign-out routes. The pages (`/app`, `/pos`, `/console`) cannot send
//! a bearer token with `EventSource`, so a browser holds a session cookie instead: made from a
//! one-time sign-in link, stored server-side (`db::sessions`) under a keyed hash, one role
//! each, ended by sign-out, by its deadline or by revoking the subject's tokens.
//!
//! **Sign-in.** `GET /signin/{secret}` only shows what the link would do and a button; link
//! previewers and scanners that fetch the URL use nothing. The button POSTs the secret to
//! `/signin`, which uses the link (once), sets the cookie and sends the browser to its role's
//! page. A till may instead post its own terminal token from the POS page to `/signin/token`,
//! which starts the same kind of session.
//!
//! **CSRF.** The cookie is `SameSite=Strict`, so other sites' pages do not send it; on top of
//! that, a request authenticated by the cookie that changes state must carry the header
//! `X-CampusPay-CSRF: 1` and, where the browser says where it comes from (`Sec-Fetch-Site`),
//! come from our own origin. A custom header cannot be sent cross-origin without a CORS
//! preflight, which this server never grants, and an HTML form cannot send one at all; unlike
//! an `Origin` allow-list it does not depend on knowing every name the platform is reached by
//! (a LAN address, a proxy's host). Bearer requests are not affected: no browser attaches a
//! bearer token by itself.

use super::error::ApiError;
use super::{pages, AppState};
use crate::auth::{session_hash, Role};
use crate::db::{self, admin, sessions};
use crate::domain::{MerchantId, SessionRole, SessionSecret, TerminalId, UserId};
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::Connection;
use serde::Deserialize;

/// The session cookie's name.
pub const COOKIE: &str = "campuspay_session";
/// The header the pages' `fetch` sets on every request that changes state.
pub const CSRF_HEADER: &str = "x-campuspay-csrf";

/// A live session: who the browser is signed in as.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: SessionRole,
    pub subject: String,
    /// The subject's current token version.
    pub token_version: i32,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The form holds one 43-character secret; anything malformed gets the "not valid" page.
    let form = web::FormConfig::default()
        .limit(1024)
        .error_handler(|_, _| {
            actix_web::error::InternalError::from_response(
                "invalid sign-in form",
                pages::link_problem(sessions::LinkProblem::Unknown),
            )
            .into()
        });
    cfg.route("/signin/{secret}", web::get().to(show_link))
        .service(
            web::resource("/signin")
                .app_data(form.clone())
                .route(web::post().to(sign_in)),
        )
        .service(
            web::resource("/signin/token")
                .app_data(form)
                .route(web::post().to(sign_in_with_token)),
        )
        .route("/signout", web::post().to(sign_out));
}

/// The session cookie's value in this request, if any (the `Cookie` header parsed by hand:
/// one name, no attributes, so actix's cookie feature and its crate are not needed).
fn cookie_value(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// Whether this request presents a session cookie (the extractors then authenticate by it).
pub fn has_cookie(req: &HttpRequest) -> bool {
    cookie_value(req).is_some()
}

/// A state-changing request authenticated by the cookie: the CSRF header, and no other site.
fn check_csrf(req: &HttpRequest) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refused = |why: &str| {
        ApiError::new(
            403,
            "csrf_refused",
            format!("a request with the session cookie {why}"),
        )
    };
    if req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err(refused("must carry the header X-CampusPay-CSRF: 1"));
    }
    match req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        None | Some("same-origin") => Ok(()),
        Some(_) => Err(refused("must come from the platform's own pages")),
    }
}

/// The live session of this request's cookie, checked for CSRF first. `Ok(None)`: no cookie.
/// A cookie that names no live session is a 401: the browser must sign in again.
pub async fn from_cookie(
    req: &HttpRequest,
    state: &web::Data<AppState>,
) -> Result<Option<Session>, ApiError> {
    let Some(value) = cookie_value(req) else {
        return Ok(None);
    };
    check_csrf(req)?;
    let ended = || {
        ApiError::unauthorized(
            "the session has ended (signed out, expired or revoked): sign in again",
        )
    };
    let secret = SessionSecret::parse(value).ok_or_else(ended)?;
    let hash = session_hash(state.config.keys.sessions.expose(), &secret);
    let found = db::run(&state.pool, move |c| sessions::find_session(c, &hash)).await?;
    let live = found.ok_or_else(ended)?;
    Ok(Some(Session {
        role: live.role,
        subject: live.subject,
        token_version: live.token_version,
    }))
}

/// `Set-Cookie` for a new session (or, with `None`, one that deletes the cookie).
fn set_cookie(state: &AppState, session: Option<(&SessionSecret, i64)>) -> String {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = match session {
        Some((secret, secs)) => (secret.expose(), secs),
        None => ("", 0),
    };
    format!("{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// `GET /signin/{secret}`: what the link would do, and a button that does it. Uses nothing.
async fn show_link(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = SessionSecret::parse(&path) else {
        return Ok(pages::link_problem(sessions::LinkProblem::Unknown));
    };
    let hash = session_hash(state.config.keys.sessions.expose(), &secret);
    let peeked = db::run(&state.pool, move |c| {
        let link = match sessions::peek_link(c, &hash)? {
            Ok(link) => link,
            Err(p) => return Ok(Err(p)),
        };
        // The name shown is the cardholder's own (a page for the link's holder only).
        let name = match link.role {
            SessionRole::Cardholder => UserId::parse(&link.subject)
                .ok()
                .map(|u| admin::card_show(c, &u))
                .transpose()?
                .and_then(Result::ok)
                .map(|v| v.name),
            SessionRole::Terminal | SessionRole::Admin => None,
        };
        Ok(Ok((link, name)))
    })
    .await?;
    Ok(match peeked {
        Ok((link, name)) => {
            pages::sign_in_page(&secret, &link, name.as_deref(), state.config.campus_offset)
        }
        Err(p) => pages::link_problem(p),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    secret: String,
}

/// Where a form POST comes from, for browsers that say: our own origin only (a page elsewhere
/// must not sign the visitor in as someone else, "login CSRF"). Without `Sec-Fetch-Site`,
/// `Origin` must name this host; without either, it is not a browser's cross-site form.
fn same_origin_form(req: &HttpRequest) -> bool {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = h("sec-fetch-site") {
        return site == "same-origin";
    }
    match (h("origin"), h("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, o)| o.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// `POST /signin` (the button of the page above): uses the link once, starts the session, sets
/// the cookie and sends the browser to its role's page. A session the browser had is ended.
async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ApiError> {
    if !same_origin_form(&req) {
        return Ok(pages::forbidden_form());
    }
    let Some(link) = SessionSecret::parse(&form.secret) else {
        return Ok(pages::link_problem(sessions::LinkProblem::Unknown));
    };
    let key = state.config.keys.sessions.expose().to_vec();
    let link_hash = session_hash(&key, &link);
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let new_hash = session_hash(&key, &secret);
    let old_hash = cookie_value(&req)
        .and_then(SessionSecret::parse)
        .map(|s| session_hash(&key, &s));
    let redeemed = db::run(&state.pool, move |c| {
        let redeemed = sessions::redeem_link(c, &link_hash, &new_hash)?;
        if let (Ok(_), Some(old)) = (&redeemed, old_hash) {
            sessions::end_session(c, &old)?;
        }
        Ok(redeemed)
    })
    .await?;
    Ok(match redeemed {
        Ok(session) => started(&state, &secret, &session),
        Err(p) => pages::link_problem(p),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenForm {
    token: String,
}

/// How long the link that a token sign-in makes and uses at once is valid (it is used in the
/// same transaction; the deadline only bounds a row left behind by a crash).
const TOKEN_LINK_SECS: i64 = 60;

/// `POST /signin/token` (the POS page's form): a till signs in with its own terminal token
/// (from `admin terminal add` or `rotate`) instead of a link. The token must verify as a
/// terminal's, of the terminal's current version; then a one-time link is made and used in one
/// transaction, so the session is exactly what a link would have started (the till's role and
/// subject, 12 hours, the per-subject limit) and the token itself is never stored.
async fn sign_in_with_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    if !same_origin_form(&req) {
        return Ok(pages::forbidden_form());
    }
    let claims = match state.jwt.verify(Role::Terminal, form.token.trim()) {
        Ok(c) => c,
        Err(e) => {
            log::info!("a till's token sign-in refused: {e}");
            return Ok(pages::token_refused(false));
        }
    };
    let (Some(m), Some(t)) = (
        claims
            .merchant_id
            .as_deref()
            .and_then(|m| MerchantId::parse(m).ok()),
        claims
            .terminal_id
            .as_deref()
            .and_then(|t| TerminalId::parse(t).ok()),
    ) else {
        return Ok(pages::token_refused(false));
    };
    let key = state.config.keys.sessions.expose().to_vec();
    let old_hash = cookie_value(&req)
        .and_then(SessionSecret::parse)
        .map(|s| session_hash(&key, &s));
    let link = SessionSecret::generate(&mut rand::rngs::OsRng);
    let link_hash = session_hash(&key, &link);
    let secret = SessionSecret::generate(&mut rand::rngs::OsRng);
    let new_hash = session_hash(&key, &secret);
    let subject = crate::ops::tokens::terminal_subject(&m, &t);
    let version = claims.ver;
    let redeemed = db::run(&state.pool, move |c| {
        c.transaction(|c| {
            // A rotated or removed terminal's older tokens sign nobody in.
            if admin::terminal_token_version(c, &m, &t)? != Some(version) {
                return Ok(Err(sessions::LinkProblem::Revoked));
            }
            sessions::create_link(
                c,
                sessions::NewLink {
                    secret_hash: &link_hash,
                    role: SessionRole::Terminal,
                    subject: &subject,
                    token_version: version,
                    created_by: &format!("token:{subject}"),
                    expires_at: chrono::Utc::now() + chrono::Duration::seconds(TOKEN_LINK_SECS),
                },
            )?;
            let redeemed = sessions::redeem_link(c, &link_hash, &new_hash)?;
            if let (Ok(_), Some(old)) = (&redeemed, old_hash) {
                sessions::end_session(c, &old)?;
            }
            Ok(redeemed)
        })
    })
    .await?;
    Ok(match redeemed {
        Ok(session) => started(&state, &secret, &session),
        Err(_) => pages::token_refused(true),
    })
}

/// The answer that starts a session: the cookie, and the role's page.
fn started(
    state: &AppState,
    secret: &SessionSecret,
    session: &sessions::LiveSession,
) -> HttpResponse {
    let secs = (session.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, session.role.home()))
        .insert_header((header::SET_COOKIE, set_cookie(state, Some((secret, secs)))))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `POST /signout`: ends the session server-side and deletes the cookie. Harmless without one.
async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(value) = cookie_value(&req) {
        check_csrf(&req)?;
        if let Some(secret) = SessionSecret::parse(value) {
            let hash = session_hash(state.config.keys.sessions.expose(), &secret);
            db::run(&state.pool, move |c| sessions::end_session(c, &hash)).await?;
        }
    }
    Ok(HttpResponse::NoContent()
        .insert_header((header::SET_COOKIE, set_cookie(&state, None)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
