//! Money in yuan with exactly two decimals (fen precision), never a float.
//!
//! `Amount` is what a payer is asked to pay: strictly positive and bounded. `Money` is any
//! signed ledger quantity (balances, postings, fees that may be zero).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest single payment the system accepts, in yuan. A campus canteen or shop never sees
/// more; anything above is a typo or an attack, and a bound keeps every sum far from overflow.
pub const MAX_AMOUNT_YUAN: i64 = 100_000;

/// Longest decimal string accepted before parsing: "100000.00" is 9 characters.
const MAX_AMOUNT_CHARS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a plain decimal like \"12.50\" (digits, optional '.', up to 2 decimals)")]
    Malformed(String),
    #[error("amount {0:?} has more than two decimals")]
    TooManyDecimals(String),
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount exceeds the maximum of {MAX_AMOUNT_YUAN}.00")]
    TooLarge,
}

/// A strictly positive amount of money with at most two decimals, at most `MAX_AMOUNT_YUAN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(Decimal);

impl Amount {
    /// Parses the wire form: ASCII digits, an optional '.', one or two decimals. No sign, no
    /// exponent, no whitespace, no leading zeros ("012"), no full-width digits.
    pub fn parse(s: &str) -> Result<Self, AmountError> {
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.len() > MAX_AMOUNT_CHARS {
            return Err(if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                AmountError::TooLarge
            } else {
                AmountError::Malformed(s.to_owned())
            });
        }
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return Err(AmountError::Malformed(s.to_owned()));
        }
        if let Some(f) = frac {
            if !digits(f) {
                return Err(AmountError::Malformed(s.to_owned()));
            }
            if f.len() > 2 {
                return Err(AmountError::TooManyDecimals(s.to_owned()));
            }
        }
        let value = Decimal::from_str(s).map_err(|_| AmountError::Malformed(s.to_owned()))?;
        Self::try_from_decimal(value)
    }

    /// Checks a decimal that came from a trusted source (the database) or arithmetic.
    pub fn try_from_decimal(value: Decimal) -> Result<Self, AmountError> {
        if value.scale() > 2 && value.round_dp(2) != value {
            return Err(AmountError::TooManyDecimals(value.to_string()));
        }
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value > Decimal::from(MAX_AMOUNT_YUAN) {
            return Err(AmountError::TooLarge);
        }
        let mut v = value;
        v.rescale(2);
        Ok(Amount(v))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn money(self) -> Money {
        Money(self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl TryFrom<String> for Amount {
    type Error = AmountError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Amount::parse(&s)
    }
}

impl From<Amount> for String {
    fn from(a: Amount) -> String {
        a.to_string()
    }
}

/// A signed quantity of money with exactly two decimals: a balance, a posting, a fee (≥ 0).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Rounds half-up (away from zero) to the fen. Used for computed values such as fees.
    pub fn round_half_up(value: Decimal) -> Money {
        let mut v = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        v.rescale(2);
        Money(v)
    }

    /// An exact number of fen (1/100 yuan).
    pub fn from_fen(fen: i64) -> Money {
        Money(Decimal::new(fen, 2))
    }

    /// Accepts only values already at fen precision (from the database).
    pub fn from_decimal(value: Decimal) -> Option<Money> {
        if value.round_dp(2) != value {
            return None;
        }
        let mut v = value;
        v.rescale(2);
        Some(Money(v))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn is_positive(self) -> bool {
        self.0.is_sign_positive() && !self.0.is_zero()
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }
}

// Money arithmetic. A ledger quantity is bounded by NUMERIC(18,2) (|x| < 10^16) and a batch sums
// at most a few thousand of them, far inside Decimal's 96-bit range (7.9 × 10^28): these
// operators cannot overflow on values the system can hold, and every result stays at fen
// precision because both operands are.
impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        Money(self.0 - other.0)
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        self.0 += other.0;
    }
}

impl std::ops::SubAssign for Money {
    fn sub_assign(&mut self, other: Money) {
        self.0 -= other.0;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl From<Money> for String {
    fn from(m: Money) -> String {
        m.to_string()
    }
}

/// Largest magnitude a ledger quantity may have: what NUMERIC(18,2) holds (16 integer digits).
const MAX_MONEY_INT_DIGITS: usize = 16;

impl TryFrom<String> for Money {
    type Error = AmountError;
    /// Parses a ledger quantity: optional '-', plain digits, up to two decimals, no exponent.
    /// Unlike `Amount`, zero and large balances are fine.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let rest = s.strip_prefix('-').unwrap_or(&s);
        let (int, frac) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int)
            || int.len() > MAX_MONEY_INT_DIGITS
            || (int.len() > 1 && int.starts_with('0'))
        {
            return Err(AmountError::Malformed(s.clone()));
        }
        if let Some(f) = frac {
            if !digits(f) {
                return Err(AmountError::Malformed(s.clone()));
            }
            if f.len() > 2 {
                return Err(AmountError::TooManyDecimals(s.clone()));
            }
        }
        let value = Decimal::from_str(&s).map_err(|_| AmountError::Malformed(s.clone()))?;
        Money::from_decimal(value).ok_or(AmountError::TooManyDecimals(s))
    }
}

impl From<Amount> for Money {
    fn from(a: Amount) -> Money {
        a.money()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals_and_normalises_to_two_places() {
        for (input, shown) in [
            ("12.50", "12.50"),
            ("12.5", "12.50"),
            ("12", "12.00"),
            ("0.01", "0.01"),
            ("0.5", "0.50"),
            ("100000", "100000.00"),
            ("100000.00", "100000.00"),
        ] {
            assert_eq!(Amount::parse(input).unwrap().to_string(), shown, "{input}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "-1",
            "-0.01",
            "0",
            "0.00",
            "0.001",
            "1.234",
            "1e3",
            "1E3",
            "NaN",
            "inf",
            " 1.00",
            "1.00 ",
            "+1",
            "1.",
            ".5",
            "01",
            "00.10",
            "１２",
            "1,00",
            "abc",
            "12.5a",
            "0x10",
            "100000.01",
            "999999999999999999999",
            "1..2",
            "1.2.3",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn specific_errors() {
        assert_eq!(Amount::parse("0"), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::parse("0.001"),
            Err(AmountError::TooManyDecimals("0.001".into()))
        );
        assert_eq!(Amount::parse("100000.01"), Err(AmountError::TooLarge));
        assert!(matches!(
            Amount::parse("-1"),
            Err(AmountError::Malformed(_))
        ));
    }

    #[test]
    fn serde_uses_strings() {
        let a: Amount = serde_json::from_str("\"3.10\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"3.10\"");
        assert!(
            serde_json::from_str::<Amount>("3.10").is_err(),
            "numbers are not money"
        );
        let m: Money = serde_json::from_str("\"-3.10\"").unwrap();
        assert_eq!(m.to_string(), "-3.10");
        // Balances and totals may exceed the largest single payment.
        let big: Money = serde_json::from_str("\"199999.98\"").unwrap();
        assert_eq!(big.to_string(), "199999.98");
        for bad in [
            "\"1e3\"",
            "\"-\"",
            "\"1.234\"",
            "\" 1\"",
            "\"12345678901234567\"",
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn half_up_rounding() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(Money::round_half_up(d("0.125")).to_string(), "0.13");
        assert_eq!(Money::round_half_up(d("0.124")).to_string(), "0.12");
        assert_eq!(Money::round_half_up(d("0.005")).to_string(), "0.01");
        assert_eq!(Money::round_half_up(d("0.0049")).to_string(), "0.00");
    }
}
