//! Internal stage messages: a batch of payments, bincode (2.x, serde) after a version byte and
//! followed by an HMAC-SHA256 tag under the stage MAC key (`keys::Keys::stage_mac`).
//!
//! Every item carries its own id, idempotency key and outcome, so one message can hold many
//! payments while acks and results stay per payment at the edges (docs/ARCHITECTURE.md §2).
//!
//! The tag is what lets a stage believe an item (its card, its "PIN verified" fact, its
//! outcome): only the pipeline's own processes hold the key, and a message whose tag does not
//! verify — forged by someone who can publish on the broker, or altered — is dead-lettered
//! unread and moves nothing. It is checked before bincode ever parses the body.

use crate::domain::{
    Amount, DeclineReason, Identity, MerchantId, Money, PaymentMode, RequestId, TerminalId,
    TransactionId, TxState, UserId,
};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// 2: items carry `pin_verified`. 3: the batch carries an HMAC-SHA256 tag. 4: an outcome may
/// be `AwaitingConfirmation`.
pub const VERSION: u8 = 4;
/// Length of the tag at the end of an encoded batch.
pub const MAC_LEN: usize = 32;
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
    #[error("stage message is not authenticated: its MAC does not verify")]
    BadMac,
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

/// A reverse scan parked until its cardholder confirms it on the phone: what fan-out needs to
/// tell the POS (`pending`) and to ask the cardholder (`confirmation_request.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingConfirmation {
    /// When settlement parked it: the pending answer's `processed_at`.
    pub requested_at: DateTime<Utc>,
    /// Unconfirmed by then, it is declined `confirmation_timeout`.
    pub expires_at: DateTime<Utc>,
    pub merchant_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Still moving down the pipeline.
    Pending,
    /// Decided: the item goes straight to fan-out.
    Done(FinalResult),
    /// Not final, but answered for now: the item goes to fan-out, which answers `pending` and
    /// asks the cardholder; the confirmation, a decline or the deadline brings it back to
    /// settlement.
    AwaitingConfirmation(AwaitingConfirmation),
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
    /// The cardholder proved the PIN (forward scan above the password-free amount; a reverse
    /// scan confirmed on the phone, which settlement also checks on the transaction itself).
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

/// HMAC takes keys of any length, so this never fails; the callers still map the error.
fn mac(key: &[u8]) -> Result<Hmac<Sha256>, hmac::digest::InvalidLength> {
    Hmac::<Sha256>::new_from_slice(key)
}

impl StageBatch {
    /// The version byte, the bincode body, then the tag over both.
    pub fn encode(&self, key: &[u8]) -> Result<Vec<u8>, EncodeError> {
        if self.items.len() > MAX_BATCH_ITEMS {
            return Err(EncodeError(format!("{} items", self.items.len())));
        }
        let mut out = vec![VERSION];
        let body = bincode::serde::encode_to_vec(self, config())
            .map_err(|e| EncodeError(e.to_string()))?;
        out.extend_from_slice(&body);
        let mut m = mac(key).map_err(|e| EncodeError(e.to_string()))?;
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        Ok(out)
    }

    /// Checks the tag (in constant time), then decodes.
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<StageBatch, DecodeError> {
        let (&version, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        if bytes.len() < 1 + MAC_LEN {
            return Err(DecodeError::BadMac);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut m = mac(key).map_err(|_| DecodeError::BadMac)?;
        m.update(signed);
        m.verify_slice(tag).map_err(|_| DecodeError::BadMac)?;
        Self::decode_unverified(signed)
    }

    /// Decodes without checking the tag — for showing a dead letter to an operator, never for
    /// acting on it. `bytes` may carry the tag or not.
    pub fn decode_unverified(bytes: &[u8]) -> Result<StageBatch, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let body = match body.len().checked_sub(MAC_LEN) {
            // With a tag, bincode stops short of it: try the body without it first.
            Some(n) if Self::parse(&body[..n]).is_ok() => &body[..n],
            _ => body,
        };
        Self::parse(body)
    }

    fn parse(body: &[u8]) -> Result<StageBatch, DecodeError> {
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

    const KEY: &[u8] = b"stage-mac-key-for-the-unit-tests";

    #[test]
    fn round_trip() {
        let b = StageBatch {
            items: vec![item(), item()],
        };
        let bytes = b.encode(KEY).unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(StageBatch::decode(&bytes, KEY).unwrap(), b);
        assert_eq!(StageBatch::decode_unverified(&bytes).unwrap(), b);
    }

    #[test]
    fn an_awaiting_outcome_round_trips() {
        let mut i = item();
        i.outcome = Outcome::AwaitingConfirmation(AwaitingConfirmation {
            requested_at: crate::messages::now_micros(),
            expires_at: crate::messages::now_micros() + chrono::Duration::seconds(60),
            merchant_name: "First Canteen".into(),
        });
        assert!(!i.is_pending());
        let b = StageBatch { items: vec![i] };
        assert_eq!(StageBatch::decode(&b.encode(KEY).unwrap(), KEY).unwrap(), b);
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        let b = StageBatch {
            items: vec![item()],
        };
        let mut bytes = b.encode(KEY).unwrap();
        assert_eq!(StageBatch::decode(&[], KEY), Err(DecodeError::Empty));
        bytes[0] = 1;
        assert_eq!(
            StageBatch::decode(&bytes, KEY),
            Err(DecodeError::Version(1))
        );
        assert!(StageBatch::decode(b"\x04{\"json\":true}", KEY).is_err());
        bytes[0] = VERSION;
        bytes.truncate(bytes.len() - 3);
        assert!(StageBatch::decode(&bytes, KEY).is_err());
    }

    #[test]
    fn a_forged_or_altered_batch_does_not_verify() {
        let b = StageBatch {
            items: vec![item()],
        };
        let good = b.encode(KEY).unwrap();
        // Encoded under another key: a forger without ours.
        let forged = b.encode(b"another-key-another-key-another!").unwrap();
        assert_eq!(StageBatch::decode(&forged, KEY), Err(DecodeError::BadMac));
        // One bit changed anywhere (the "PIN verified" flag, an amount): refused.
        for i in [1, good.len() / 2, good.len() - 1] {
            let mut altered = good.clone();
            altered[i] ^= 1;
            assert_eq!(
                StageBatch::decode(&altered, KEY),
                Err(DecodeError::BadMac),
                "byte {i}"
            );
        }
        // No tag at all: refused.
        let untagged = &good[..good.len() - MAC_LEN];
        assert_eq!(StageBatch::decode(untagged, KEY), Err(DecodeError::BadMac));
    }
}
