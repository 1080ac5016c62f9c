//! One-time payment codes (付款码) for reverse scan: 18 digits, a two-digit prefix (`88` unless
//! configured otherwise), last digit a Luhn check digit so a scanner can reject a mistyped code
//! offline. Codes are generated from a CSPRNG (15 random digits ≈ 50 bits) and stored only as a
//! keyed hash (see `tsm`).
//!
//! The prefix is what a multi-tender till routes a scanned code by, so it must not be one the
//! big wallets use (`CodePrefix::parse` refuses those). Codes were issued with `28` before,
//! which is inside Alipay's range; they stay payable until they expire (at most the code TTL,
//! a day), so parsing accepts `28` beside the configured prefix.

use rand::Rng;
use std::fmt;

pub const CODE_LEN: usize = 18;

/// Prefixes other payment codes start with, which a till that takes several wallets routes by:
/// (first, last, whose). WeChat Pay: 18 digits starting 10–15; Alipay: 16–24 digits starting
/// 25–30; UnionPay's QuickPass codes: 62 (its card BIN range); e-CNY (digital yuan): 19 digits
/// starting 01.
const TAKEN: [(u8, u8, &str); 4] = [
    (1, 1, "e-CNY (digital yuan)"),
    (10, 15, "WeChat Pay (10-15)"),
    (25, 30, "Alipay (25-30)"),
    (62, 62, "UnionPay (62)"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodePrefixError {
    #[error("a payment-code prefix is exactly two ASCII digits")]
    Format,
    #[error(
        "prefix {prefix} is used by {owner}: a till routing by prefix would send our codes there"
    )]
    Taken { prefix: String, owner: &'static str },
}

/// The two digits every payment code this campus issues starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodePrefix(u8);

impl CodePrefix {
    /// The default, free in every wallet's table above.
    pub const DEFAULT: CodePrefix = CodePrefix(88);
    /// What codes were issued with before the prefix became configurable; still accepted.
    pub const LEGACY: CodePrefix = CodePrefix(28);

    /// A configured prefix: two digits, none that another wallet uses.
    pub fn parse(s: &str) -> Result<CodePrefix, CodePrefixError> {
        let b = s.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_digit) {
            return Err(CodePrefixError::Format);
        }
        let n = (b[0] - b'0') * 10 + (b[1] - b'0');
        match TAKEN.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&n)) {
            Some((_, _, owner)) => Err(CodePrefixError::Taken {
                prefix: s.to_owned(),
                owner,
            }),
            None => Ok(CodePrefix(n)),
        }
    }

    /// Whether `code` (already known to be 18 digits) starts with this prefix.
    fn starts(self, code: &str) -> bool {
        code.as_bytes().get(..2) == Some(&[b'0' + self.0 / 10, b'0' + self.0 % 10][..])
    }
}

impl fmt::Display for CodePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentCodeError {
    #[error("payment code must be exactly {CODE_LEN} ASCII digits")]
    Format,
    #[error("payment code must start with {0} (or {legacy}, the earlier prefix)", legacy = CodePrefix::LEGACY)]
    Prefix(CodePrefix),
    #[error("payment code check digit is wrong (mistyped?)")]
    CheckDigit,
}

/// A syntactically valid payment code. Whether it exists, is unused and unexpired is decided by
/// the database, not here.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PaymentCode(String);

impl PaymentCode {
    /// A code as a till scanned it, for a campus that issues codes with `issuing`: codes with
    /// that prefix or the legacy `28` are accepted (whether one exists is looked up by its keyed
    /// hash, so accepting both costs nothing).
    pub fn parse(s: &str, issuing: CodePrefix) -> Result<PaymentCode, PaymentCodeError> {
        if s.len() != CODE_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PaymentCodeError::Format);
        }
        if !issuing.starts(s) && !CodePrefix::LEGACY.starts(s) {
            return Err(PaymentCodeError::Prefix(issuing));
        }
        if !luhn_valid(s) {
            return Err(PaymentCodeError::CheckDigit);
        }
        Ok(PaymentCode(s.to_owned()))
    }

    /// A fresh random code. `rng` must be a CSPRNG (the TSM passes `OsRng`/`thread_rng`).
    pub fn generate<R: Rng + rand::CryptoRng>(rng: &mut R, prefix: CodePrefix) -> PaymentCode {
        let mut s = String::with_capacity(CODE_LEN);
        s.push_str(&prefix.to_string());
        for _ in 0..(CODE_LEN - 2 - 1) {
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

    /// `88************1234`-style masking for logs.
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

    const P: CodePrefix = CodePrefix::DEFAULT;

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
            let c = PaymentCode::generate(&mut rng, P);
            assert_eq!(c.expose().len(), 18);
            assert!(c.expose().starts_with("88"));
            assert_eq!(PaymentCode::parse(c.expose(), P), Ok(c));
        }
        let other = CodePrefix::parse("07").unwrap();
        let c = PaymentCode::generate(&mut rng, other);
        assert!(c.expose().starts_with("07"), "{}", c.expose());
        assert_eq!(PaymentCode::parse(c.expose(), other), Ok(c.clone()));
        assert_eq!(
            PaymentCode::parse(c.expose(), P),
            Err(PaymentCodeError::Prefix(P))
        );
    }

    #[test]
    fn codes_issued_with_the_legacy_prefix_still_parse() {
        let mut rng = rand::rngs::OsRng;
        let old = PaymentCode::generate(&mut rng, CodePrefix::LEGACY);
        assert!(old.expose().starts_with("28"));
        for issuing in [P, CodePrefix::parse("77").unwrap()] {
            assert_eq!(PaymentCode::parse(old.expose(), issuing), Ok(old.clone()));
        }
        // Any other prefix is not ours, even with a valid check digit.
        let mut foreign = String::from("87");
        foreign.push_str(&old.expose()[2..17]);
        let digit = luhn_check_digit(&foreign);
        foreign.push(char::from(b'0' + digit));
        assert_eq!(
            PaymentCode::parse(&foreign, P),
            Err(PaymentCodeError::Prefix(P))
        );
    }

    #[test]
    fn prefixes_of_other_wallets_are_refused() {
        for ok in ["88", "00", "02", "09", "16", "24", "31", "61", "63", "99"] {
            assert_eq!(CodePrefix::parse(ok).unwrap().to_string(), ok);
        }
        for (taken, owner) in [
            ("01", "e-CNY"),
            ("10", "WeChat"),
            ("13", "WeChat"),
            ("15", "WeChat"),
            ("25", "Alipay"),
            ("28", "Alipay"),
            ("30", "Alipay"),
            ("62", "UnionPay"),
        ] {
            match CodePrefix::parse(taken) {
                Err(e @ CodePrefixError::Taken { .. }) => {
                    assert!(e.to_string().contains(owner), "{taken}: {e}")
                }
                other => panic!("{taken}: {other:?}"),
            }
        }
        for bad in ["", "8", "888", "8a", "-1", " 88", "８８"] {
            assert_eq!(
                CodePrefix::parse(bad),
                Err(CodePrefixError::Format),
                "{bad:?}"
            );
        }
        assert_eq!(CodePrefix::LEGACY.to_string(), "28");
    }

    #[test]
    fn format_errors() {
        let mut rng = rand::rngs::OsRng;
        let good = PaymentCode::generate(&mut rng, P).expose().to_owned();
        assert_eq!(
            PaymentCode::parse(&good[..17], P),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse(&format!("{good}0"), P),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse("88a456789012345678", P),
            Err(PaymentCodeError::Format)
        );
        assert_eq!(
            PaymentCode::parse("８８3456789012345678", P),
            Err(PaymentCodeError::Format)
        );
        // Change the last digit: Luhn catches every single-digit error.
        let last = good.as_bytes()[17] - b'0';
        let wrong = format!("{}{}", &good[..17], (last + 1) % 10);
        assert_eq!(
            PaymentCode::parse(&wrong, P),
            Err(PaymentCodeError::CheckDigit)
        );
        let mut other_prefix = good.clone();
        other_prefix.replace_range(0..2, "89");
        assert!(PaymentCode::parse(&other_prefix, P).is_err());
    }

    #[test]
    fn masking_hides_the_middle() {
        let mut rng = rand::rngs::OsRng;
        let c = PaymentCode::generate(&mut rng, P);
        let m = c.masked();
        assert_eq!(m.len(), 18);
        assert_eq!(&m[..2], "88");
        assert_eq!(&m[2..14], "************");
        assert!(!format!("{c:?}").contains(&c.expose()[2..14]));
    }
}
