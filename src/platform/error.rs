//! HTTP errors: JSON `{"code": "<stable snake_case>", "message": "<for humans>"}`, with a few
//! more fields for the codes that need them (`pin_invalid`: `tries_left`; `pin_locked`:
//! `locked_until`; `not_awaiting_confirmation`: `status` and `reason`).

use crate::db::confirmations::{ConfirmProblem, NotAwaiting};
use crate::db::forward::OrderProblem;
use crate::db::DbError;
use crate::domain::{DeclineReason, Refusal, TxState};
use crate::messages::format_time;
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
    /// What some codes carry besides, at the top level of the body.
    #[serde(flatten)]
    pub details: Option<ErrorDetails>,
}

/// The fields an error body has besides `code` and `message`, by code.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ErrorDetails {
    /// `pin_invalid`: wrong PINs left before the PIN locks (null when nothing was counted: a
    /// PIN that is not 6 digits, a card without a PIN).
    PinInvalid { tries_left: Option<i32> },
    /// `pin_locked`: until when (RFC 3339).
    PinLocked { locked_until: String },
    /// `not_awaiting_confirmation`: where the payment stands instead.
    NotAwaiting {
        status: &'static str,
        reason: Option<DeclineReason>,
    },
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    fn with(mut self, details: ErrorDetails) -> ApiError {
        self.details = Some(details);
        self
    }
    /// `403 pin_invalid` with the wrong PINs left before it locks, when they were counted.
    pub fn pin_invalid(tries_left: Option<i32>, message: impl Into<String>) -> ApiError {
        ApiError::new(403, "pin_invalid", message).with(ErrorDetails::PinInvalid { tries_left })
    }
    /// `403 pin_locked` until `until`.
    pub fn pin_locked(
        until: chrono::DateTime<chrono::Utc>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(403, "pin_locked", message).with(ErrorDetails::PinLocked {
            locked_until: format_time(until),
        })
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
            OrderProblem::PinInvalid { tries_left } => {
                return ApiError::pin_invalid(tries_left, p.to_string())
            }
            OrderProblem::PinLocked { until } => return ApiError::pin_locked(until, p.to_string()),
        };
        ApiError::new(status, code, p.to_string())
    }
}

/// `status` of a `not_awaiting_confirmation` body: what `result.v1` would say, or
/// `processing` while the payment is in the pipeline.
fn standing_name(n: NotAwaiting) -> (&'static str, Option<DeclineReason>) {
    match n {
        NotAwaiting::Processing => ("processing", None),
        NotAwaiting::Final { status, reason } => (
            match status {
                TxState::Approved => "approved",
                TxState::Declined | TxState::Voided => "declined",
                TxState::Reversed => "reversed",
                // Not final: `NotAwaiting::Final` never holds these.
                TxState::Created | TxState::AwaitingConfirmation => "processing",
            },
            reason,
        ),
    }
}

impl From<ConfirmProblem> for ApiError {
    fn from(p: ConfirmProblem) -> ApiError {
        match p {
            ConfirmProblem::NotFound => ApiError::new(404, "not_found", p.to_string()),
            ConfirmProblem::PinInvalid { tries_left } => {
                ApiError::pin_invalid(tries_left, p.to_string())
            }
            ConfirmProblem::PinLocked { until } => ApiError::pin_locked(until, p.to_string()),
            ConfirmProblem::NotAwaiting(n) => {
                let (status, reason) = standing_name(n);
                let message = match reason {
                    Some(r) => format!("{p}: it is {status} ({r})"),
                    None => format!("{p}: it is {status}"),
                };
                ApiError::new(409, "not_awaiting_confirmation", message)
                    .with(ErrorDetails::NotAwaiting { status, reason })
            }
        }
    }
}
