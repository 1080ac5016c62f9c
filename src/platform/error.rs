//! HTTP errors: JSON `{"code": "<stable snake_case>", "message": "<for humans>"}`.

use crate::db::forward::OrderProblem;
use crate::db::DbError;
use crate::domain::Refusal;
use crate::ops::OpsError;
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

/// The database failing: never the caller's fault, never detailed to the caller.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        log::error!("database error in HTTP handler: {e}");
        ApiError::new(
            503,
            "unavailable",
            "the payment platform is temporarily unavailable",
        )
    }
}

/// A business refusal: the request was understood and is not allowed; nothing changed.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let (status, code) = match &r {
            Refusal::UnknownMerchant(_)
            | Refusal::UnknownTerminal(..)
            | Refusal::NoCard(_)
            | Refusal::UnknownTransaction(_) => (404, "not_found"),
            Refusal::MerchantExists(_)
            | Refusal::TerminalExists(..)
            | Refusal::CardholderExists(_) => (409, "conflict"),
            Refusal::InvalidName(_)
            | Refusal::InvalidPin
            | Refusal::ReasonTooLong { .. }
            | Refusal::TooManyRows { .. }
            | Refusal::InvalidBatch { .. }
            | Refusal::InvalidLifetime { .. } => (400, "invalid_body"),
            Refusal::CardFrozen(_) => (403, "card_frozen"),
            Refusal::Refund(_) => (422, "rejected"),
        };
        ApiError::new(status, code, r.to_string())
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        match e {
            OpsError::Refused(r) => r.into(),
            OpsError::Db(e) => e.into(),
            OpsError::Broker(e) => {
                log::warn!("broker error in HTTP handler: {e}");
                ApiError::new(
                    503,
                    "unavailable",
                    format!("the broker is unavailable: {e}"),
                )
            }
            OpsError::Auth(e) => {
                log::error!("token error in HTTP handler: {e}");
                ApiError::new(500, "internal_error", "could not issue the token")
            }
            OpsError::Management(e) => {
                log::warn!("broker management error in HTTP handler: {e}");
                ApiError::new(
                    503,
                    "unavailable",
                    format!("the broker's management API is unavailable: {e}"),
                )
            }
            OpsError::Task(e) => {
                log::error!("task failed in HTTP handler: {e}");
                ApiError::new(500, "internal_error", "the operation failed; see the logs")
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
            OrderProblem::PinInvalid { .. } => (403, "pin_invalid"),
            OrderProblem::PinLocked { .. } => (403, "pin_locked"),
        };
        ApiError::new(status, code, p.to_string())
    }
}
