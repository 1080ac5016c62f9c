//! Who is calling: every phone route needs a cardholder (a JWT, or the wallet page's session
//! cookie) and acts only for that cardholder; every `/admin/v1` route needs an operator's JWT
//! or the console's session cookie. A cardholder's token must also be of the
//! cardholder's current version (revocation, `ops::tokens::revoke_cardholder`), which costs one
//! indexed read per request.

use super::error::ApiError;
use super::{session, AppState};
use crate::auth::{AuthError, Claims, Role};
use crate::db::{self, admin};
use crate::domain::{SessionRole, UserId};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

pub struct Cardholder(pub UserId);

impl FromRequest for Cardholder {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Cardholder, ApiError>>;

    /// A bearer token when the request has an `Authorization` header (API clients, unchanged);
    /// otherwise the browser's session cookie (`platform::session`, with its CSRF rule).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            if req.headers().contains_key("authorization") || !session::has_cookie(&req) {
                return by_token(&req, &state).await;
            }
            let s = session::from_cookie(&req, &state)
                .await?
                .ok_or_else(|| ApiError::unauthorized("missing session cookie"))?;
            match s.role {
                SessionRole::Cardholder => UserId::parse(&s.subject)
                    .map(Cardholder)
                    .map_err(|_| ApiError::unauthorized("the session names no valid user")),
                SessionRole::Terminal | SessionRole::Admin => Err(ApiError::unauthorized(
                    "this route needs a cardholder's session",
                )),
            }
        })
    }
}

/// A cardholder's JWT of the cardholder's current version.
async fn by_token(req: &HttpRequest, state: &web::Data<AppState>) -> Result<Cardholder, ApiError> {
    let (user, version) = cardholder_claims(req, state)?;
    let u = user.clone();
    let current = db::run(&state.pool, move |c| admin::cardholder_token_version(c, &u)).await?;
    // No cardholder row: nothing to revoke, and the routes answer `not_found`.
    if current.is_some_and(|v| v != version) {
        return Err(ApiError::unauthorized(AuthError::Revoked.to_string()));
    }
    Ok(Cardholder(user))
}

/// An operator: an admin token (`campuspay admin token --admin NAME`) or the console's
/// session cookie of the Admin role (`admin token --admin NAME --link`, with the CSRF rule of
/// `platform::session` for changes). Holds who acts, `admin:NAME` either way, so the operators'
/// trail names the same person whichever way they signed in.
pub struct Admin(pub String);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            if req.headers().contains_key("authorization") || !session::has_cookie(&req) {
                let claims = bearer(&req, &state)?;
                return match claims.role {
                    Role::Admin => Ok(Admin(claims.sub)),
                    Role::Cardholder | Role::Terminal => Err(ApiError::new(
                        403,
                        "forbidden",
                        "this route needs an admin token",
                    )),
                };
            }
            let s = session::from_cookie(&req, &state)
                .await?
                .ok_or_else(|| ApiError::unauthorized("missing session cookie"))?;
            match s.role {
                SessionRole::Admin => Ok(Admin(operator_subject(&s.subject))),
                SessionRole::Cardholder | SessionRole::Terminal => Err(ApiError::new(
                    403,
                    "forbidden",
                    "this route needs an operator's session",
                )),
            }
        })
    }
}

/// Who an operator's session acts as: the subject of an admin token for the same name.
pub fn operator_subject(name: &str) -> String {
    format!("admin:{name}")
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(500, "internal_error", "application state missing"))
}

/// A valid token of any role (a valid token of the wrong role is a 403, not a 401).
fn bearer(req: &HttpRequest, state: &AppState) -> Result<Claims, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("Authorization must be a Bearer token"))?;
    state
        .jwt
        .verify_any(token.trim())
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

fn cardholder_claims(req: &HttpRequest, state: &AppState) -> Result<(UserId, i32), ApiError> {
    let claims = bearer(req, state)?;
    if claims.role != Role::Cardholder {
        return Err(ApiError::unauthorized(
            "this route needs a cardholder token",
        ));
    }
    let user = claims
        .user_id
        .as_deref()
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| ApiError::unauthorized("token names no valid user"))?;
    Ok((user, claims.ver))
}
