//! HTTP errors: JSON `{"code": "<stable snake_case>", "message": "<for humans>"}`.

use crate::db::forward::OrderProblem;
use crate::db::DbError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        match e {
            DbError::NotFound(what) => ApiError::new(404, "not_found", format!("{what} not found")),
            DbError::Rejected(why) if why.contains("frozen") => {
                ApiError::new(403, "card_frozen", why)
            }
            DbError::Rejected(why) => ApiError::new(422, "rejected", why),
            DbError::Conflict(what) => {
                ApiError::new(409, "conflict", format!("{what} already exists"))
            }
            other => {
                log::error!("database error in HTTP handler: {other}");
                ApiError::new(
                    503,
                    "unavailable",
                    "the payment platform is temporarily unavailable",
                )
            }
        }
    }
}

impl From<OrderProblem> for ApiError {
    fn from(p: OrderProblem) -> ApiError {
        let (status, code) = match p {
            OrderProblem::UnknownMerchant => (404, "unknown_merchant"),
            OrderProblem::UnknownTerminal => (404, "unknown_terminal"),
            OrderProblem::QrTampered => (400, "invalid_qr"),
            OrderProblem::QrExpired => (410, "qr_expired"),
            OrderProblem::QrUsed => (409, "qr_used"),
            OrderProblem::NotFound => (404, "not_found"),
            OrderProblem::AmountRequired => (400, "amount_required"),
            OrderProblem::AmountMismatch => (400, "amount_mismatch"),
            OrderProblem::AlreadySubmitted => (409, "already_submitted"),
            OrderProblem::CardFrozen => (403, "card_frozen"),
            OrderProblem::NoCard => (404, "no_card"),
            OrderProblem::PinRequired => (403, "pin_required"),
            OrderProblem::PinInvalid => (403, "pin_invalid"),
        };
        ApiError::new(status, code, p.to_string())
    }
}
