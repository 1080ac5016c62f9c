//! The bearer-token extractor: every phone route needs a cardholder's JWT and acts only for
//! that cardholder.

use super::error::ApiError;
use super::AppState;
use crate::auth::Role;
use crate::domain::UserId;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use std::future::{ready, Ready};

pub struct Cardholder(pub UserId);

impl FromRequest for Cardholder {
    type Error = ApiError;
    type Future = Ready<Result<Cardholder, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(cardholder(req))
    }
}

/// An operator with an admin token (`campuspay admin token --admin NAME`).
pub struct Admin(pub String);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer(req).and_then(|claims| {
            if claims.role == Role::Admin {
                Ok(Admin(claims.sub))
            } else {
                Err(ApiError::new(
                    403,
                    "forbidden",
                    "this route needs an admin token",
                ))
            }
        }))
    }
}

fn bearer(req: &HttpRequest) -> Result<crate::auth::Claims, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(500, "internal_error", "application state missing"))?;
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
        .verify(token.trim())
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

fn cardholder(req: &HttpRequest) -> Result<Cardholder, ApiError> {
    let claims = bearer(req)?;
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
    Ok(Cardholder(user))
}
