//! Internal stage messages: a batch of payments, bincode (2.x, serde) after a version byte.
//!
//! Every item carries its own id, idempotency key and outcome, so one message can hold many
//! payments while acks and results stay per payment at the edges (docs/ARCHITECTURE.md §2).

use crate::domain::{
    Amount, DeclineReason, Identity, MerchantId, Money, PaymentMode, RequestId, TerminalId,
    TransactionId, TxState, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// 2: items carry `pin_verified`.
pub const VERSION: u8 = 2;
/// Upper bound on items in one stage message; stages never build larger ones.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Upper bound on an encoded batch (a payment item is ~200 bytes).
const MAX_ENCODED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unsupported stage message version {0} (this build speaks {VERSION})")]
    Version(u8),
    #[error("stage message does not decode: {0}")]
    Bincode(String),
    #[error("stage message has {0} items (limit {MAX_BATCH_ITEMS})")]
    TooManyItems(usize),
}

#[derive(Debug, thiserror::Error)]
#[error("stage message does not encode: {0}")]
pub struct EncodeError(String);

/// The card behind a payment, as resolved by QR validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRef {
    pub card_id: i64,
    pub account_id: i64,
    pub user_id: UserId,
    pub identity: Identity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalResult {
    pub status: TxState,
    pub reason: Option<DeclineReason>,
    pub processed_at: DateTime<Utc>,
    pub balance_after: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Still moving down the pipeline.
    Pending,
    /// Decided: the item goes straight to fan-out.
    Done(FinalResult),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentItem {
    pub request_id: RequestId,
    pub mode: PaymentMode,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    /// `None` only for a request declined because its amount did not parse.
    pub amount: Option<Amount>,
    /// HMAC of the payment code (reverse scan, until the order stage consumes it).
    pub code_hash: Option<Vec<u8>>,
    pub card: Option<CardRef>,
    pub transaction_id: Option<TransactionId>,
    pub fee: Option<Money>,
    pub fee_rule_id: Option<i64>,
    /// The cardholder proved the PIN (forward scan above the password-free amount).
    pub pin_verified: bool,
    pub outcome: Outcome,
}

impl PaymentItem {
    pub fn decline(&mut self, reason: DeclineReason, at: DateTime<Utc>) {
        self.outcome = Outcome::Done(FinalResult {
            status: TxState::Declined,
            reason: Some(reason),
            processed_at: at,
            balance_after: None,
        });
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.outcome, Outcome::Pending)
    }

    /// The idempotency scope of `request_id`: who created it.
    pub fn request_scope(&self) -> String {
        match self.mode {
            PaymentMode::ReverseScan => format!("pos:{}:{}", self.merchant_id, self.terminal_id),
            PaymentMode::ForwardScan => match &self.card {
                Some(c) => format!("user:{}", c.user_id),
                None => format!("pos:{}:{}", self.merchant_id, self.terminal_id),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageBatch {
    pub items: Vec<PaymentItem>,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENCODED_BYTES>()
}

impl StageBatch {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.items.len() > MAX_BATCH_ITEMS {
            return Err(EncodeError(format!("{} items", self.items.len())));
        }
        let mut out = vec![VERSION];
        let body = bincode::serde::encode_to_vec(self, config())
            .map_err(|e| EncodeError(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<StageBatch, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let (batch, used): (StageBatch, usize) = bincode::serde::decode_from_slice(body, config())
            .map_err(|e| DecodeError::Bincode(e.to_string()))?;
        if used != body.len() {
            return Err(DecodeError::Bincode("trailing bytes".into()));
        }
        if batch.items.len() > MAX_BATCH_ITEMS {
            return Err(DecodeError::TooManyItems(batch.items.len()));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> PaymentItem {
        PaymentItem {
            request_id: RequestId::new_random(),
            mode: PaymentMode::ReverseScan,
            merchant_id: MerchantId::parse("m1").unwrap(),
            terminal_id: TerminalId::parse("t1").unwrap(),
            amount: Some(Amount::parse("12.50").unwrap()),
            code_hash: Some(vec![7; 32]),
            card: Some(CardRef {
                card_id: 3,
                account_id: 9,
                user_id: UserId::parse("u1").unwrap(),
                identity: Identity::External,
            }),
            transaction_id: Some(TransactionId::new_random()),
            fee: Some(Money::round_half_up(rust_decimal::Decimal::new(125, 2))),
            fee_rule_id: Some(4),
            pin_verified: false,
            outcome: Outcome::Done(FinalResult {
                status: TxState::Approved,
                reason: None,
                processed_at: crate::messages::now_micros(),
                balance_after: Some(Money::ZERO),
            }),
        }
    }

    #[test]
    fn round_trip() {
        let b = StageBatch {
            items: vec![item(), item()],
        };
        let bytes = b.encode().unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(StageBatch::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        let b = StageBatch {
            items: vec![item()],
        };
        let mut bytes = b.encode().unwrap();
        assert_eq!(StageBatch::decode(&[]), Err(DecodeError::Empty));
        bytes[0] = 1;
        assert_eq!(StageBatch::decode(&bytes), Err(DecodeError::Version(1)));
        assert!(StageBatch::decode(b"\x01{\"json\":true}").is_err());
        bytes[0] = VERSION;
        bytes.truncate(bytes.len() - 3);
        assert!(StageBatch::decode(&bytes).is_err());
    }
}
