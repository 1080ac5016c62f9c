//! TSM (trusted service manager): issues batches of one-time payment codes to a phone so it can
//! pay even while offline. Codes come from the OS CSPRNG; only HMAC-SHA256(code_key, code) is
//! stored, so a database leak does not leak spendable codes.

use crate::db::{self, DbError, Pool};
use crate::domain::{CodePrefix, PaymentCode, Refusal, UserId};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;

/// Codes per batch (docs/ARCHITECTURE.md §1).
pub const BATCH_SIZE: usize = 10;

/// The keyed hash under which a code is stored and looked up.
pub fn code_hash(key: &[u8], code: &PaymentCode) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; keep the fallback
    // explicit rather than unwrap.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(code.expose().as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IssuedCodes {
    pub user_id: String,
    pub batch_id: uuid::Uuid,
    pub codes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// Issues a fresh batch of codes starting with `prefix`, superseding the card's unused codes.
/// Refused for a frozen or unknown card.
pub async fn issue(
    pool: &Pool,
    key: &[u8],
    user: &UserId,
    ttl: Duration,
    prefix: CodePrefix,
) -> Result<Result<IssuedCodes, Refusal>, DbError> {
    let mut rng = rand::rngs::OsRng;
    let codes: Vec<PaymentCode> = (0..BATCH_SIZE)
        .map(|_| PaymentCode::generate(&mut rng, prefix))
        .collect();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| code_hash(key, c)).collect();
    let batch_id = uuid::Uuid::new_v4();
    // The configured TTL is at most a day (config.rs), far inside chrono's range.
    let ttl = chrono::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(86_400));
    let expires_at = crate::messages::now_micros() + ttl;
    let u = user.clone();
    let stored = db::run(pool, move |conn| {
        db::codes::store_batch(conn, &u, &hashes, batch_id, expires_at)
    })
    .await?;
    if let Err(refusal) = stored {
        return Ok(Err(refusal));
    }
    Ok(Ok(IssuedCodes {
        user_id: user.to_string(),
        batch_id,
        codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
        expires_at,
    }))
}

/// The keyed hash under which a card's payment PIN is stored (never the PIN itself). The user
/// id is mixed in so two cards with the same PIN do not share a hash.
pub fn pin_hash(key: &[u8], user: &UserId, pin: &str) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"pin:");
            mac.update(user.as_str().as_bytes());
            mac.update(b":");
            mac.update(pin.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A PIN is 6 ASCII digits.
pub fn valid_pin(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}
