//! A phone's order (forward scan, 正扫): what kind of merchant QR code it came from, and where it
//! stands.

use serde::Serialize;

/// The three kinds of merchant-presented code (EMV tag 01 `11` static, `12` dynamic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QrKind {
    /// Printed for a counter: merchant only; results go to the merchant's `counter` terminal.
    StaticMerchant,
    /// Printed for one till.
    StaticTerminal,
    /// Shown by a till with the amount in it; single-use, expires.
    Dynamic,
}

named_enum!(QrKind {
    StaticMerchant => "static_merchant",
    StaticTerminal => "static_terminal",
    Dynamic => "dynamic",
});

/// The order row's own state: `open` until the cardholder confirms, then `submitted` (from
/// there the transaction of the same id carries the outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    Open,
    Submitted,
}

named_enum!(OrderState {
    Open => "open",
    Submitted => "submitted",
});

/// What the phone is shown: the order's state, then its transaction's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Waiting for the cardholder to confirm.
    Open,
    /// Confirmed, in the pipeline.
    Processing,
    Approved,
    Declined,
    Reversed,
    Voided,
}

impl OrderStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, OrderStatus::Open | OrderStatus::Processing)
    }
}

impl From<super::TxState> for OrderStatus {
    fn from(s: super::TxState) -> OrderStatus {
        match s {
            // Only a reverse scan waits for a confirmation; an order was confirmed already.
            super::TxState::Created | super::TxState::AwaitingConfirmation => {
                OrderStatus::Processing
            }
            super::TxState::Approved => OrderStatus::Approved,
            super::TxState::Declined => OrderStatus::Declined,
            super::TxState::Reversed => OrderStatus::Reversed,
            super::TxState::Voided => OrderStatus::Voided,
        }
    }
}
