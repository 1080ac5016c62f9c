//! The 搭伙费 (meal surcharge): a rate by the cardholder's identity, optionally per merchant,
//! applied to the amount and rounded half-up to the fen.

use super::identity::Identity;
use super::ids::MerchantId;
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

/// `fee_rules.id`: stored with each transaction, so a fee can be traced to the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeeRuleId(pub i64);

/// A surcharge rule: `identity` pays `rate` at `merchant` (or at every merchant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRule {
    pub id: FeeRuleId,
    pub identity: Identity,
    pub merchant: Option<MerchantId>,
    pub rate: FeeRate,
}

/// The rule for (`identity`, `merchant`): the newest merchant-specific one, else the newest
/// general one, else none (no fee). `rules` must be in force already and newest first.
pub fn pick_rule<'a>(
    rules: &'a [FeeRule],
    identity: Identity,
    merchant: &MerchantId,
) -> Option<&'a FeeRule> {
    rules
        .iter()
        .find(|r| r.identity == identity && r.merchant.as_ref() == Some(merchant))
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.identity == identity && r.merchant.is_none())
        })
}

/// The fee and the rule that made it (zero and none when no rule applies).
pub fn fee_for(
    rules: &[FeeRule],
    identity: Identity,
    merchant: &MerchantId,
    amount: Amount,
) -> (Money, Option<FeeRuleId>) {
    match pick_rule(rules, identity, merchant) {
        Some(rule) => (rule.rate.fee_for(amount), Some(rule.id)),
        None => (Money::ZERO, None),
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

    #[test]
    fn the_newest_merchant_rule_wins_then_the_newest_general_one() {
        let m = |s: &str| MerchantId::parse(s).unwrap();
        let rule = |id, identity, merchant: Option<&str>, rate| FeeRule {
            id: FeeRuleId(id),
            identity,
            merchant: merchant.map(m),
            rate: FeeRate::parse(rate).unwrap(),
        };
        // Newest first, as the database hands them over.
        let rules = vec![
            rule(5, Identity::External, None, "0.20"),
            rule(4, Identity::Temporary, Some("market"), "0"),
            rule(3, Identity::External, Some("market"), "0.05"),
            rule(2, Identity::Temporary, None, "0.10"),
            rule(1, Identity::External, Some("market"), "0.50"),
        ];
        let pick = |i, merchant| pick_rule(&rules, i, &m(merchant)).map(|r| r.id.0);
        assert_eq!(pick(Identity::External, "market"), Some(3));
        assert_eq!(pick(Identity::External, "cafe"), Some(5));
        assert_eq!(pick(Identity::Temporary, "market"), Some(4));
        assert_eq!(pick(Identity::Temporary, "cafe"), Some(2));
        assert_eq!(pick(Identity::Student, "market"), None);
        let amount = Amount::parse("12.50").unwrap();
        assert_eq!(
            fee_for(&rules, Identity::Temporary, &m("cafe"), amount),
            (Money::from_fen(125), Some(FeeRuleId(2)))
        );
        assert_eq!(
            fee_for(&rules, Identity::Staff, &m("cafe"), amount),
            (Money::ZERO, None)
        );
    }
}
