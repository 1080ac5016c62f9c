//! One key per purpose. Two secrets are configured (`CAMPUSPAY_JWT_SECRET` for tokens,
//! `CAMPUSPAY_CODE_KEY` for everything keyed by the card backend); each purpose gets its own
//! key derived from them with HKDF-SHA256 (RFC 5869), so a key leaked or misused for one job —
//! a terminal token forged, a QR signature brute-forced — says nothing about the others, and
//! a token signed for one role can never verify as another.

use crate::config::Secret;
use hkdf::Hkdf;
use sha2::Sha256;

/// Bumped if a derivation ever changes: every key derived under another label is different.
const LABEL: &str = "campuspay/v1/";

fn derive(master: &[u8], purpose: &str) -> Secret {
    let hk = Hkdf::<Sha256>::new(None, master);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: `expand` cannot fail here.
    let _ = hk.expand(format!("{LABEL}{purpose}").as_bytes(), &mut okm);
    Secret::new(okm.to_vec())
}

#[derive(Clone, Debug)]
pub struct Keys {
    /// Signs terminals' JWTs.
    pub terminal_tokens: Secret,
    /// Signs cardholders' JWTs (the phone API).
    pub cardholder_tokens: Secret,
    /// Signs operators' JWTs.
    pub admin_tokens: Secret,
    /// HMAC under which sign-in links and browser sessions are stored.
    pub sessions: Secret,
    /// HMAC under which payment codes are stored and looked up.
    pub payment_codes: Secret,
    /// Signs dynamic merchant QR codes.
    pub qr_signatures: Secret,
    /// HMAC under which PINs are stored.
    pub pin_hashes: Secret,
    /// Authenticates the internal messages between stages.
    pub stage_mac: Secret,
}

impl Keys {
    pub fn derive(jwt_secret: &[u8], code_key: &[u8]) -> Keys {
        Keys {
            terminal_tokens: derive(jwt_secret, "token/terminal"),
            cardholder_tokens: derive(jwt_secret, "token/cardholder"),
            admin_tokens: derive(jwt_secret, "token/admin"),
            sessions: derive(jwt_secret, "session"),
            payment_codes: derive(code_key, "payment-code"),
            qr_signatures: derive(code_key, "qr-signature"),
            pin_hashes: derive(code_key, "pin-hash"),
            stage_mac: derive(code_key, "stage-mac"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_has_its_own_key_and_derivation_is_stable() {
        let k = Keys::derive(b"j".repeat(32).as_slice(), b"c".repeat(32).as_slice());
        let all = [
            &k.terminal_tokens,
            &k.cardholder_tokens,
            &k.admin_tokens,
            &k.sessions,
            &k.payment_codes,
            &k.qr_signatures,
            &k.pin_hashes,
            &k.stage_mac,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.expose().len(), 32);
            for b in &all[i + 1..] {
                assert_ne!(a.expose(), b.expose());
            }
        }
        let again = Keys::derive(b"j".repeat(32).as_slice(), b"c".repeat(32).as_slice());
        assert_eq!(again.stage_mac.expose(), k.stage_mac.expose());
        let other = Keys::derive(b"J".repeat(32).as_slice(), b"c".repeat(32).as_slice());
        assert_ne!(other.terminal_tokens.expose(), k.terminal_tokens.expose());
        assert_eq!(other.payment_codes.expose(), k.payment_codes.expose());
    }
}
