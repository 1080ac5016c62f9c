//! A card's lifecycle and limits: active or frozen (挂失), per-transaction and daily limits, and
//! the password-free amount above which the cardholder must give the payment PIN.

use super::{Amount, Money};
use std::fmt;

/// `cards.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardId(pub i64);

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    /// Reported lost: payments are declined `card_frozen`, codes revoked, no new codes.
    Frozen,
}

named_enum!(CardStatus {
    Active => "active",
    Frozen => "frozen",
});

/// The limits in force for a card: its own where set, else its identity's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardLimits {
    pub per_txn: Money,
    pub daily: Money,
    /// Above this amount the payment needs the cardholder's PIN.
    pub password_free: Money,
}

impl CardLimits {
    /// The password-free rule, for both scan directions: above the amount, the PIN is needed.
    pub fn needs_pin(&self, amount: Amount) -> bool {
        amount.money() > self.password_free
    }

    /// Whether `amount` fits the per-transaction limit and, with `spent_today` (approved
    /// amounts of this campus day, both scan directions), the daily limit.
    pub fn allows(&self, amount: Amount, spent_today: Money) -> bool {
        amount.money() <= self.per_txn && spent_today + amount.money() <= self.daily
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive() {
        let l = CardLimits {
            per_txn: Money::from_fen(20_000),
            daily: Money::from_fen(50_000),
            password_free: Money::from_fen(5_000),
        };
        let a = |s| Amount::parse(s).unwrap();
        assert!(!l.needs_pin(a("50.00")));
        assert!(l.needs_pin(a("50.01")));
        assert!(l.allows(a("200.00"), Money::ZERO));
        assert!(!l.allows(a("200.01"), Money::ZERO));
        assert!(l.allows(a("100.00"), Money::from_fen(40_000)));
        assert!(!l.allows(a("100.01"), Money::from_fen(40_000)));
    }
}
