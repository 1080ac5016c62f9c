//! Stable decline reason codes (docs/ARCHITECTURE.md §3). Terminals and phones switch on these strings:
//! never rename one.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    InvalidMessage,
    Unauthorized,
    UnknownCode,
    CodeUsed,
    CodeExpired,
    CodeRevoked,
    CardFrozen,
    InsufficientBalance,
    LimitExceeded,
    UnknownMerchant,
    UnknownTerminal,
    InvalidAmount,
    QrExpired,
    QrUsed,
    Voided,
    RateLimited,
    PinRequired,
    PinLocked,
    /// Not a decline: with status `pending`, the cardholder is asked to confirm on the phone.
    UserConfirming,
    /// The cardholder did not confirm in time.
    ConfirmationTimeout,
    /// The cardholder declined the payment on the phone.
    UserDeclined,
    ReversalWindowClosed,
    InternalError,
}

impl DeclineReason {
    pub const ALL: [DeclineReason; 23] = [
        DeclineReason::InvalidMessage,
        DeclineReason::Unauthorized,
        DeclineReason::UnknownCode,
        DeclineReason::CodeUsed,
        DeclineReason::CodeExpired,
        DeclineReason::CodeRevoked,
        DeclineReason::CardFrozen,
        DeclineReason::InsufficientBalance,
        DeclineReason::LimitExceeded,
        DeclineReason::UnknownMerchant,
        DeclineReason::UnknownTerminal,
        DeclineReason::InvalidAmount,
        DeclineReason::QrExpired,
        DeclineReason::QrUsed,
        DeclineReason::Voided,
        DeclineReason::RateLimited,
        DeclineReason::PinRequired,
        DeclineReason::PinLocked,
        DeclineReason::UserConfirming,
        DeclineReason::ConfirmationTimeout,
        DeclineReason::UserDeclined,
        DeclineReason::ReversalWindowClosed,
        DeclineReason::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::InvalidMessage => "invalid_message",
            DeclineReason::Unauthorized => "unauthorized",
            DeclineReason::UnknownCode => "unknown_code",
            DeclineReason::CodeUsed => "code_used",
            DeclineReason::CodeExpired => "code_expired",
            DeclineReason::CodeRevoked => "code_revoked",
            DeclineReason::CardFrozen => "card_frozen",
            DeclineReason::InsufficientBalance => "insufficient_balance",
            DeclineReason::LimitExceeded => "limit_exceeded",
            DeclineReason::UnknownMerchant => "unknown_merchant",
            DeclineReason::UnknownTerminal => "unknown_terminal",
            DeclineReason::InvalidAmount => "invalid_amount",
            DeclineReason::QrExpired => "qr_expired",
            DeclineReason::QrUsed => "qr_used",
            DeclineReason::Voided => "voided",
            DeclineReason::RateLimited => "rate_limited",
            DeclineReason::PinRequired => "pin_required",
            DeclineReason::PinLocked => "pin_locked",
            DeclineReason::UserConfirming => "user_confirming",
            DeclineReason::ConfirmationTimeout => "confirmation_timeout",
            DeclineReason::UserDeclined => "user_declined",
            DeclineReason::ReversalWindowClosed => "reversal_window_closed",
            DeclineReason::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<DeclineReason> {
        DeclineReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_serde() {
        for r in DeclineReason::ALL {
            assert_eq!(DeclineReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
