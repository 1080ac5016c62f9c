//! One-time payment codes (付款码) for reverse scan: 18 digits, prefix `28`, last digit a Luhn
//! check digit so a scanner can reject a mistyped code offline. Codes are generated from a
//! CSPRNG (15 random digits ≈ 50 bits) and stored only as a keyed hash (see `tsm`).

use rand::Rng;
use std::fmt;

pub const CODE_LEN: usize = 18;
pub const CODE_PREFIX: &str = "28";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentCodeError {
    #[error("payment code must be exactly {CODE_LEN} ASCII digits")]
    Format,
    #[error("payment code must start with {CODE_PREFIX}")]
    Prefix,
    #[error("payment code check digit is wrong (mistyped?)")]
    CheckDigit,
}

/// A syntactically valid payment code. Whether it exists, is unused and unexpired is decided by
/// the database, not here.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PaymentCode(String);

impl PaymentCode {
    pub fn parse(s: &str) -> Result<PaymentCode, PaymentCodeError> {
        if s.len() != CODE_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PaymentCodeError::Format);
        }
        if !s.starts_with(CODE_PREFIX) {
            return Err(PaymentCodeError::Prefix);
        }
        if !luhn_valid(s) {
            return Err(PaymentCodeError::CheckDigit);
        }
        Ok(PaymentCode(s.to_owned()))
    }

    /// A fresh random code. `rng` must be a CSPRNG (the TSM passes `OsRng`/`thread_rng`).
    pub fn generate<R: Rng + rand::CryptoRng>(rng: &mut R) -> PaymentCode {
        let mut s = String::with_capacity(CODE_LEN);
        s.push_str(CODE_PREFIX);
        for _ in 0..(CODE_LEN - CODE_PREFIX.len() - 1) {
            s.push(char::from(b'0' + rng.gen_range(0..10u8)));
        }
        let check = luhn_check_digit(&s);
        s.push(char::from(b'0' + check));
        PaymentCode(s)
    }

    /// The full code. Only the TSM response and the POS ever need it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `28**********1234`-style masking for logs.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks anything that may be a payment code: keeps the first 2 and the last 4 characters.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

impl fmt::Debug for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentCode({})", self.masked())
    }
}

impl fmt::Display for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The Luhn digit that makes `payload` + digit valid.
pub fn luhn_check_digit(payload: &str) -> u8 {
    // Walking from the right, the digit next to the (future) check digit is doubled.
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    // `sum % 10` is at most 9, so the result fits a u8.
    ((10 - (sum % 10)) % 10) as u8
}

pub fn luhn_valid(s: &str) -> bool {
    match s.as_bytes().split_last() {
        Some((last, payload)) if last.is_ascii_digit() && !payload.is_empty() => {
            let payload = std::str::from_utf8(payload).unwrap_or("");
            payload.bytes().all(|b| b.is_ascii_digit()) && luhn_check_digit(payload) == last - b'0'
        }
        _ => false,
    }
}

/// A stored code's life: issued `unused`; then `used` by one payment, `superseded` by the
/// card's next batch, or `revoked` by a freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeState {
    Unused,
    Used,
    Superseded,
    Revoked,
}

named_enum!(CodeState {
    Unused => "unused",
    Used => "used",
    Superseded => "superseded",
    Revoked => "revoked",
});

impl CodeState {
    /// Why a scan of a code in this state cannot pay (a code still `unused` that could not be
    /// claimed had expired).
    pub fn decline_reason(self) -> super::DeclineReason {
        match self {
            CodeState::Used => super::DeclineReason::CodeUsed,
            CodeState::Superseded | CodeState::Revoked => super::DeclineReason::CodeRevoked,
            CodeState::Unused => super::DeclineReason::CodeExpired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        // Classic examples: 79927398713 is valid; the check digit of 7992739871 is 3.
        assert_eq!(luhn_check_digit("7992739871"), 3);
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(luhn_valid("4111111111111111"));
    }

    #[test]
    fn generated_codes_parse() {
        let mut rng = rand::rngs::OsRng;
        for _ in 0..1000 {
            let c = PaymentCode::generate(&mut rng);
            assert_eq!(c.expose().len(), 18);
            assert!(c.expose().starts_with("28"));
            assert_eq!(PaymentCode::parse(c.expose()), Ok(c));
        }
    }

    #[test]
    fn format_errors() {
        let mut rng = rand::rngs::OsRng;
        let good = PaymentCode::generate(&mut rng).expose().to_owned();
        assert_eq!(
            PaymentCode::parse(&good[..17]),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse(&format!("{good}0")),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse("28a456789012345678"),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse("２８3456789012345678"),
            Err(PaymentCodeError::Format)
        );
        // Change the last digit: Luhn catches every single-digit error.
        let last = good.as_bytes()[17] - b'0';
        let wrong = format!("{}{}", &good[..17], (last + 1) % 10);
        assert_eq!(
            PaymentCode::parse(&wrong),
            Err(PaymentCodeError::CheckDigit)
        );
        let mut other_prefix = good.clone();
        other_prefix.replace_range(0..2, "29");
        assert!(PaymentCode::parse(&other_prefix).is_err());
    }

    #[test]
    fn masking_hides_the_middle() {
        let c = PaymentCode::parse("280000000000000006").unwrap_or_else(|_| {
            let mut rng = rand::rngs::OsRng;
            PaymentCode::generate(&mut rng)
        });
        let m = c.masked();
        assert_eq!(m.len(), 18);
        assert_eq!(&m[2..14], "************");
        assert!(!format!("{c:?}").contains(&c.expose()[2..14]));
    }
}
