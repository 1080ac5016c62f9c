//! Journal entries: the only shape in which money moves. An entry's legs sum to zero — the type
//! cannot be built otherwise — and each leg names its account by id, as the database resolved
//! it from the card and merchant rows, never as a message claimed it. `db::journal` is the one
//! writer that stores entries; the database checks the same invariant again at commit.

use super::{Amount, Money, TransactionId};
use std::fmt;
use uuid::Uuid;

/// A ledger account (`accounts.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of account: decides the lock order (cards first) and which balances may never go
/// below zero (cards and merchants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Card,
    Merchant,
    FeeIncome,
    TopupClearing,
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Payment,
    Topup,
    Reversal,
    Refund,
    Subsidy,
}

named_enum!(AccountKind {
    Card => "card",
    Merchant => "merchant",
    FeeIncome => "fee_income",
    TopupClearing => "topup_clearing",
});

named_enum!(EntryKind {
    Payment => "payment",
    Topup => "topup",
    Reversal => "reversal",
    Refund => "refund",
    Subsidy => "subsidy",
});

/// The role of one posting within its entry; unique per entry (`postings (entry_id, leg)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LegKind {
    /// The cardholder's account.
    Card,
    /// The merchant's account.
    Merchant,
    /// The school's fee income (搭伙费).
    Fee,
    /// The school's top-up clearing account (cash in, subsidies).
    Clearing,
}

named_enum!(LegKind {
    Card => "card",
    Merchant => "merchant",
    Fee => "fee",
    Clearing => "clearing",
});

impl LegKind {
    /// The kind of account a leg of this kind must post to.
    pub fn account_kind(self) -> AccountKind {
        match self {
            LegKind::Card => AccountKind::Card,
            LegKind::Merchant => AccountKind::Merchant,
            LegKind::Fee => AccountKind::FeeIncome,
            LegKind::Clearing => AccountKind::TopupClearing,
        }
    }
}

/// One posting: `amount` added to `account`'s balance (negative: taken from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub kind: LegKind,
    pub account: AccountId,
    pub amount: Money,
}

/// Longest memo stored with an entry (a refund's reason, a subsidy row's memo).
pub const MAX_MEMO_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("a journal entry needs at least two legs")]
    TooFewLegs,
    #[error("the {0:?} leg appears twice in one entry")]
    DuplicateLeg(LegKind),
    #[error("the {0:?} leg moves 0.00")]
    ZeroLeg(LegKind),
    #[error("the legs sum to {0}, not to zero")]
    Unbalanced(Money),
    #[error("a memo is at most {MAX_MEMO_CHARS} characters")]
    MemoTooLong,
}

/// A balanced set of postings under one id. Fields are private: the only way to get one is a
/// constructor that checks the legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    id: Uuid,
    kind: EntryKind,
    transaction: Option<TransactionId>,
    memo: String,
    legs: Vec<Leg>,
}

impl JournalEntry {
    /// Checks the legs: at least two, none zero, each leg kind once, summing to zero.
    pub fn new(
        id: Uuid,
        kind: EntryKind,
        transaction: Option<TransactionId>,
        memo: &str,
        legs: Vec<Leg>,
    ) -> Result<JournalEntry, EntryError> {
        if legs.len() < 2 {
            return Err(EntryError::TooFewLegs);
        }
        if memo.chars().count() > MAX_MEMO_CHARS {
            return Err(EntryError::MemoTooLong);
        }
        let mut seen: Vec<LegKind> = Vec::with_capacity(legs.len());
        for leg in &legs {
            if leg.amount.is_zero() {
                return Err(EntryError::ZeroLeg(leg.kind));
            }
            if seen.contains(&leg.kind) {
                return Err(EntryError::DuplicateLeg(leg.kind));
            }
            seen.push(leg.kind);
        }
        let sum: Money = legs.iter().map(|l| l.amount).sum();
        if !sum.is_zero() {
            return Err(EntryError::Unbalanced(sum));
        }
        Ok(JournalEntry {
            id,
            kind,
            transaction,
            memo: memo.to_owned(),
            legs,
        })
    }

    /// A payment: the card pays `amount + fee`, the merchant gets `amount`, the school's fee
    /// income gets `fee` (no fee leg when the fee is zero). Its id is the transaction's.
    pub fn payment(
        transaction: TransactionId,
        card: AccountId,
        merchant: AccountId,
        fee_income: AccountId,
        amount: Amount,
        fee: Money,
    ) -> Result<JournalEntry, EntryError> {
        let mut legs = vec![
            Leg {
                kind: LegKind::Card,
                account: card,
                amount: -(amount.money() + fee),
            },
            Leg {
                kind: LegKind::Merchant,
                account: merchant,
                amount: amount.money(),
            },
        ];
        if !fee.is_zero() {
            legs.push(Leg {
                kind: LegKind::Fee,
                account: fee_income,
                amount: fee,
            });
        }
        JournalEntry::new(
            transaction.0,
            EntryKind::Payment,
            Some(transaction),
            "",
            legs,
        )
    }

    /// Money going back to a card (a reversal or a refund): `amount` from the merchant, `fee`
    /// from the school's fee income.
    #[allow(clippy::too_many_arguments)]
    pub fn compensation(
        id: Uuid,
        kind: EntryKind,
        transaction: TransactionId,
        memo: &str,
        card: AccountId,
        merchant: AccountId,
        fee_income: AccountId,
        amount: Money,
        fee: Money,
    ) -> Result<JournalEntry, EntryError> {
        let mut legs = vec![Leg {
            kind: LegKind::Card,
            account: card,
            amount: amount + fee,
        }];
        if !amount.is_zero() {
            legs.push(Leg {
                kind: LegKind::Merchant,
                account: merchant,
                amount: -amount,
            });
        }
        if !fee.is_zero() {
            legs.push(Leg {
                kind: LegKind::Fee,
                account: fee_income,
                amount: -fee,
            });
        }
        JournalEntry::new(id, kind, Some(transaction), memo, legs)
    }

    /// Money onto a card from the school's clearing account (a top-up or a subsidy).
    pub fn credit(
        id: Uuid,
        kind: EntryKind,
        memo: &str,
        card: AccountId,
        clearing: AccountId,
        amount: Amount,
    ) -> Result<JournalEntry, EntryError> {
        JournalEntry::new(
            id,
            kind,
            None,
            memo,
            vec![
                Leg {
                    kind: LegKind::Card,
                    account: card,
                    amount: amount.money(),
                },
                Leg {
                    kind: LegKind::Clearing,
                    account: clearing,
                    amount: -amount.money(),
                },
            ],
        )
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn kind(&self) -> EntryKind {
        self.kind
    }
    pub fn transaction(&self) -> Option<TransactionId> {
        self.transaction
    }
    pub fn memo(&self) -> &str {
        &self.memo
    }
    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(kind: LegKind, account: i64, fen: i64) -> Leg {
        Leg {
            kind,
            account: AccountId(account),
            amount: Money::from_fen(fen),
        }
    }

    #[test]
    fn refuses_unbalanced_and_malformed_entries() {
        let id = Uuid::new_v4();
        let new = |legs| JournalEntry::new(id, EntryKind::Topup, None, "", legs);
        assert_eq!(
            new(vec![leg(LegKind::Card, 1, 100)]),
            Err(EntryError::TooFewLegs)
        );
        assert_eq!(
            new(vec![
                leg(LegKind::Card, 1, 100),
                leg(LegKind::Clearing, 2, -99)
            ]),
            Err(EntryError::Unbalanced(Money::from_fen(1)))
        );
        assert_eq!(
            new(vec![
                leg(LegKind::Card, 1, 100),
                leg(LegKind::Card, 3, -100)
            ]),
            Err(EntryError::DuplicateLeg(LegKind::Card))
        );
        assert_eq!(
            new(vec![leg(LegKind::Card, 1, 0), leg(LegKind::Clearing, 2, 0)]),
            Err(EntryError::ZeroLeg(LegKind::Card))
        );
        assert!(new(vec![
            leg(LegKind::Card, 1, 100),
            leg(LegKind::Clearing, 2, -100)
        ])
        .is_ok());
        let long = "x".repeat(MAX_MEMO_CHARS + 1);
        assert_eq!(
            JournalEntry::new(
                id,
                EntryKind::Refund,
                None,
                &long,
                vec![leg(LegKind::Card, 1, 5), leg(LegKind::Merchant, 2, -5)]
            ),
            Err(EntryError::MemoTooLong)
        );
    }

    #[test]
    fn payment_and_compensation_shapes() {
        let tx = TransactionId::new_random();
        let amount = Amount::parse("20.00").unwrap();
        let fee = Money::from_fen(200);
        let p = JournalEntry::payment(tx, AccountId(1), AccountId(2), AccountId(3), amount, fee)
            .unwrap();
        assert_eq!(p.id(), tx.0);
        assert_eq!(
            p.legs(),
            &[
                leg(LegKind::Card, 1, -2200),
                leg(LegKind::Merchant, 2, 2000),
                leg(LegKind::Fee, 3, 200)
            ]
        );
        // No fee: no fee leg (postings never hold 0.00).
        let p = JournalEntry::payment(
            tx,
            AccountId(1),
            AccountId(2),
            AccountId(3),
            amount,
            Money::ZERO,
        )
        .unwrap();
        assert_eq!(p.legs().len(), 2);
        // A refund of the fee only still balances.
        let c = JournalEntry::compensation(
            Uuid::new_v4(),
            EntryKind::Refund,
            tx,
            "fee only",
            AccountId(1),
            AccountId(2),
            AccountId(3),
            Money::ZERO,
            Money::from_fen(50),
        )
        .unwrap();
        assert_eq!(
            c.legs(),
            &[leg(LegKind::Card, 1, 50), leg(LegKind::Fee, 3, -50)]
        );
    }
}
