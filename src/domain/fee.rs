//! The 搭伙费 (meal surcharge): a rate by the cardholder's identity, optionally per merchant,
//! applied to the amount and rounded half-up to the fen.

use super::money::{Amount, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeRateError {
    #[error("fee rate {0:?} must be a decimal between 0 and 1 with at most 4 decimals, e.g. 0.10")]
    Invalid(String),
}

/// A surcharge rate in [0, 1] with at most four decimals (0.1234 = 12.34%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRate(Decimal);

impl FeeRate {
    pub const ZERO: FeeRate = FeeRate(Decimal::ZERO);

    pub fn parse(s: &str) -> Result<FeeRate, FeeRateError> {
        let ok_chars = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let d = Decimal::from_str(s)
            .ok()
            .filter(|_| ok_chars)
            .ok_or_else(|| FeeRateError::Invalid(s.to_owned()))?;
        FeeRate::try_from_decimal(d).map_err(|_| FeeRateError::Invalid(s.to_owned()))
    }

    pub fn try_from_decimal(d: Decimal) -> Result<FeeRate, FeeRateError> {
        if d < Decimal::ZERO || d > Decimal::ONE || d.round_dp(4) != d {
            return Err(FeeRateError::Invalid(d.to_string()));
        }
        Ok(FeeRate(d.normalize()))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// The fee for `amount`: `amount × rate`, rounded half-up to the fen.
    pub fn fee_for(self, amount: Amount) -> Money {
        Money::round_half_up(amount.value() * self.0)
    }
}

impl fmt::Display for FeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounding_table() {
        // (amount, rate, expected fee)
        let table = [
            ("10.00", "0.10", "1.00"),
            ("12.50", "0.10", "1.25"),
            ("0.05", "0.10", "0.01"), // 0.005 rounds half-up
            ("0.04", "0.10", "0.00"), // 0.004 rounds down
            ("0.15", "0.10", "0.02"), // 0.015
            ("0.01", "0.50", "0.01"), // 0.005
            ("1.01", "0.15", "0.15"), // 0.1515
            ("3.30", "0.15", "0.50"), // 0.495
            ("3.29", "0.15", "0.49"), // 0.4935
            ("99999.99", "1", "99999.99"),
            ("8.00", "0", "0.00"),
            ("7.77", "0.0001", "0.00"),
            ("50.00", "0.0001", "0.01"), // 0.005
        ];
        for (amount, rate, fee) in table {
            let a = Amount::parse(amount).unwrap();
            let r = FeeRate::parse(rate).unwrap();
            assert_eq!(r.fee_for(a).to_string(), fee, "{amount} × {rate}");
        }
    }

    #[test]
    fn rates_are_bounded() {
        for bad in ["-0.1", "1.01", "0.00001", "abc", "", "1e-2", " 0.1"] {
            assert!(FeeRate::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FeeRate::parse("0.1").is_ok());
        assert!(FeeRate::parse("1").is_ok());
    }
}
