//! Business refusals of back-office operations: the request was understood and is not allowed,
//! and nothing changed. Each front end maps them exhaustively to its own words (the CLI's
//! message and exit code, an HTTP status and code); none of them is an infrastructure failure.

use super::refund::RefundRefusal;
use super::{MerchantId, TerminalId, TransactionId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("merchant {0} not found")]
    UnknownMerchant(MerchantId),
    #[error("terminal {0}/{1} not found")]
    UnknownTerminal(MerchantId, TerminalId),
    #[error("card of {0} not found")]
    NoCard(UserId),
    #[error("transaction {0} not found")]
    UnknownTransaction(TransactionId),
    #[error("merchant {0} already exists")]
    MerchantExists(MerchantId),
    #[error("terminal {0}/{1} already exists")]
    TerminalExists(MerchantId, TerminalId),
    #[error("cardholder {0} already exists")]
    CardholderExists(UserId),
    #[error("{0} name must be 1 to 100 characters")]
    InvalidName(&'static str),
    #[error("the card of {0} is frozen")]
    CardFrozen(UserId),
    #[error("a PIN is exactly 6 digits")]
    InvalidPin,
    #[error("{0}")]
    Refund(#[from] RefundRefusal),
    #[error("a refund reason is at most {max} characters")]
    ReasonTooLong { max: usize },
    #[error("a subsidy file may hold at most {max} rows")]
    TooManyRows { max: usize },
    #[error(
        "a subsidy batch needs a name of 1 to {max} characters (e.g. \"2026-11 meal subsidy\")"
    )]
    InvalidBatch { max: usize },
    #[error("{what} lives {min_secs} to {max_secs} seconds")]
    InvalidLifetime {
        what: &'static str,
        min_secs: i64,
        max_secs: i64,
    },
}
