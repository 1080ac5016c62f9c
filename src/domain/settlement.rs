//! Settlement's decisions, without I/O. Given a batch of payments in arrival order and the
//! locked state of their cards, it says which are approved (with the journal entry to post and
//! the balance left) and which are declined and why. `db::payments::settle` loads and locks
//! what this needs and writes what it returns; the rules live here, where they can be tested
//! without a database.
//!
//! The rules, in the order they are checked for each payment:
//! 1. the per-transaction and the daily limit (approved amounts of the campus day, both scan
//!    directions, including earlier payments of this batch) → `limit_exceeded`;
//! 2. above the password-free amount the payment needs a verified PIN. A forward scan without
//!    one is declined `pin_required` (the phone sends the PIN with the order). A reverse scan
//!    without one is parked for the cardholder to confirm on the phone (`AwaitConfirmation`,
//!    WeChat Pay micropay's USERPAYING) — unless it would be declined anyway, which is said at
//!    once: `pin_required` when the card has no PIN to confirm with, `insufficient_balance`
//!    when the balance does not cover it. Once confirmed it comes back with the PIN verified;
//! 3. the balance must cover amount + fee → `insufficient_balance`.
//!
//! A card's payments are taken in arrival order: an earlier payment that is approved lowers
//! the balance and raises the day's spending the later ones see; a declined one changes
//! nothing. So a card never goes below zero, whatever the batch holds.

use super::card::{CardId, CardLimits};
use super::ledger::{AccountId, JournalEntry};
use super::{Amount, DeclineReason, Money, PaymentMode, TransactionId};
use std::collections::HashMap;

/// One payment to settle, as recorded by the order and fee stages and read back from the
/// database (never taken from a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub transaction: TransactionId,
    pub card: CardId,
    pub merchant_account: AccountId,
    pub mode: PaymentMode,
    pub amount: Amount,
    pub fee: Money,
    /// The cardholder proved the PIN for this payment (forward scan: with the order; reverse
    /// scan: by confirming it on the phone, as recorded on the transaction).
    pub pin_verified: bool,
}

/// A card as settlement sees it, with its account locked for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBook {
    pub account: AccountId,
    pub balance: Money,
    /// `None` when the card has no limits in force (every identity has defaults, so only a
    /// card whose cardholder row is missing).
    pub limits: Option<CardLimits>,
    /// Approved amounts of this campus day so far.
    pub spent_today: Money,
    /// The card has a payment PIN, so its cardholder can confirm a payment with it.
    pub has_pin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved {
        balance_after: Money,
        entry: JournalEntry,
    },
    Declined(DeclineReason),
    /// Not decided yet: the cardholder must confirm it with the PIN on the phone. Nothing is
    /// spent or reserved; the confirmed payment is decided again against the balance then.
    AwaitConfirmation,
}

/// Decides every payment in order, updating `cards` as approvals spend from them. Returns one
/// verdict per payment, index for index.
pub fn decide(
    payments: &[Payment],
    cards: &mut HashMap<CardId, CardBook>,
    fee_income: AccountId,
) -> Vec<Verdict> {
    payments
        .iter()
        .map(|p| match cards.get_mut(&p.card) {
            None => Verdict::Declined(DeclineReason::InternalError),
            Some(card) => decide_one(p, card, fee_income),
        })
        .collect()
}

fn decide_one(p: &Payment, card: &mut CardBook, fee_income: AccountId) -> Verdict {
    if let Some(limits) = &card.limits {
        if !limits.allows(p.amount, card.spent_today) {
            return Verdict::Declined(DeclineReason::LimitExceeded);
        }
        if limits.needs_pin(p.amount) && !p.pin_verified {
            return match p.mode {
                PaymentMode::ForwardScan => Verdict::Declined(DeclineReason::PinRequired),
                PaymentMode::ReverseScan if !card.has_pin => {
                    Verdict::Declined(DeclineReason::PinRequired)
                }
                PaymentMode::ReverseScan if card.balance < p.amount.money() + p.fee => {
                    Verdict::Declined(DeclineReason::InsufficientBalance)
                }
                PaymentMode::ReverseScan => Verdict::AwaitConfirmation,
            };
        }
    }
    let total = p.amount.money() + p.fee;
    if card.balance < total {
        return Verdict::Declined(DeclineReason::InsufficientBalance);
    }
    let entry = match JournalEntry::payment(
        p.transaction,
        card.account,
        p.merchant_account,
        fee_income,
        p.amount,
        p.fee,
    ) {
        Ok(e) => e,
        // Only a negative fee could unbalance a payment; the fee stage never computes one.
        Err(_) => return Verdict::Declined(DeclineReason::InternalError),
    };
    card.balance -= total;
    card.spent_today += p.amount.money();
    Verdict::Approved {
        balance_after: card.balance,
        entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::LegKind;
    use proptest::prelude::*;

    const FEE: AccountId = AccountId(1);

    fn limits(per_txn: i64, daily: i64, password_free: i64) -> CardLimits {
        CardLimits {
            per_txn: Money::from_fen(per_txn),
            daily: Money::from_fen(daily),
            password_free: Money::from_fen(password_free),
        }
    }

    fn book(account: i64, balance_fen: i64, l: Option<CardLimits>) -> CardBook {
        CardBook {
            account: AccountId(account),
            balance: Money::from_fen(balance_fen),
            limits: l,
            spent_today: Money::ZERO,
            has_pin: true,
        }
    }

    fn pay(card: i64, amount_fen: i64, fee_fen: i64, mode: PaymentMode, pin: bool) -> Payment {
        Payment {
            transaction: TransactionId::new_random(),
            card: CardId(card),
            merchant_account: AccountId(100),
            mode,
            amount: Amount::try_from_decimal(Money::from_fen(amount_fen).value()).unwrap(),
            fee: Money::from_fen(fee_fen),
            pin_verified: pin,
        }
    }

    fn declined(v: &Verdict) -> Option<DeclineReason> {
        match v {
            Verdict::Declined(r) => Some(*r),
            Verdict::Approved { .. } | Verdict::AwaitConfirmation => None,
        }
    }

    fn approved(v: &Verdict) -> bool {
        match v {
            Verdict::Approved { .. } => true,
            Verdict::Declined(_) | Verdict::AwaitConfirmation => false,
        }
    }

    /// What a verdict says, for comparing lists of them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Said {
        Approved,
        Declined(DeclineReason),
        Awaiting,
    }

    fn said(v: &Verdict) -> Said {
        match v {
            Verdict::Approved { .. } => Said::Approved,
            Verdict::Declined(r) => Said::Declined(*r),
            Verdict::AwaitConfirmation => Said::Awaiting,
        }
    }

    #[test]
    fn the_rules_in_order() {
        let l = limits(20_000, 30_000, 5_000);
        let mut cards = HashMap::from([(CardId(1), book(10, 100_000, Some(l)))]);
        let r = PaymentMode::ReverseScan;
        let f = PaymentMode::ForwardScan;
        let batch = [
            pay(1, 20_001, 0, r, false),  // over the per-transaction limit
            pay(1, 5_001, 0, r, false),   // above password-free, reverse scan: ask the phone
            pay(1, 5_001, 0, f, false),   // forward scan without the PIN
            pay(1, 5_001, 0, f, true),    // forward scan with the PIN
            pay(1, 5_000, 500, r, false), // at the password-free amount; the fee is charged
            pay(9, 100, 0, r, false),     // a card settlement knows nothing of
        ];
        let v = decide(&batch, &mut cards, FEE);
        assert_eq!(
            v.iter().map(said).collect::<Vec<_>>(),
            vec![
                Said::Declined(DeclineReason::LimitExceeded),
                Said::Awaiting,
                Said::Declined(DeclineReason::PinRequired),
                Said::Approved,
                Said::Approved,
                Said::Declined(DeclineReason::InternalError),
            ]
        );
        // 1000.00 − 50.01 − (50.00 + 5.00) = 894.99; spent 100.01 of the 300.00 daily limit.
        assert_eq!(cards[&CardId(1)].balance, Money::from_fen(89_499));
        assert_eq!(cards[&CardId(1)].spent_today, Money::from_fen(10_001));
        match &v[4] {
            Verdict::Approved {
                balance_after,
                entry,
            } => {
                assert_eq!(*balance_after, Money::from_fen(89_499));
                let fee_leg = entry
                    .legs()
                    .iter()
                    .find(|l| l.kind == LegKind::Fee)
                    .unwrap();
                assert_eq!(fee_leg.amount, Money::from_fen(500));
                assert_eq!(fee_leg.account, FEE);
            }
            other => panic!("expected an approval, got {other:?}"),
        }
    }

    #[test]
    fn a_reverse_scan_above_the_password_free_amount_waits_for_the_phone_unless_doomed() {
        let l = limits(20_000, 30_000, 5_000);
        let r = PaymentMode::ReverseScan;
        let mut cards = HashMap::from([
            (CardId(1), book(10, 10_000, Some(l))),
            (CardId(2), {
                let mut b = book(11, 100_000, Some(l));
                b.has_pin = false;
                b
            }),
        ]);
        let v = decide(
            &[
                pay(1, 8_000, 0, r, false), // asks the phone; nothing is spent or reserved
                pay(1, 8_000, 0, r, false), // so a second one asks too
                pay(1, 9_900, 200, r, false), // 99.00 + 2.00 > 100.00: declined at once
                pay(1, 20_001, 0, r, false), // over the limit: declined at once
                pay(2, 8_000, 0, r, false), // no PIN to confirm with
                pay(1, 8_000, 0, r, true),  // confirmed on the phone: approved
                pay(1, 8_000, 0, r, true),  // confirmed, but the balance is gone now
            ],
            &mut cards,
            FEE,
        );
        assert_eq!(
            v.iter().map(said).collect::<Vec<_>>(),
            vec![
                Said::Awaiting,
                Said::Awaiting,
                Said::Declined(DeclineReason::InsufficientBalance),
                Said::Declined(DeclineReason::LimitExceeded),
                Said::Declined(DeclineReason::PinRequired),
                Said::Approved,
                Said::Declined(DeclineReason::InsufficientBalance),
            ]
        );
        assert_eq!(cards[&CardId(1)].balance, Money::from_fen(2_000));
        assert_eq!(cards[&CardId(1)].spent_today, Money::from_fen(8_000));
    }

    #[test]
    fn a_decline_does_not_spend_and_a_later_smaller_payment_goes_through() {
        let mut cards = HashMap::from([(CardId(1), book(10, 1_000, None))]);
        let r = PaymentMode::ReverseScan;
        let v = decide(
            &[
                pay(1, 800, 0, r, false),
                pay(1, 300, 0, r, false),
                pay(1, 200, 0, r, false),
            ],
            &mut cards,
            FEE,
        );
        assert_eq!(
            v.iter().map(declined).collect::<Vec<_>>(),
            vec![None, Some(DeclineReason::InsufficientBalance), None]
        );
        assert_eq!(cards[&CardId(1)].balance, Money::ZERO);
    }

    #[test]
    fn the_daily_limit_counts_both_scan_directions_and_what_was_spent_before() {
        let l = limits(20_000, 30_000, 20_000);
        let mut b = book(10, 1_000_000, Some(l));
        b.spent_today = Money::from_fen(10_000);
        let mut cards = HashMap::from([(CardId(1), b)]);
        let v = decide(
            &[
                pay(1, 15_000, 0, PaymentMode::ForwardScan, true),
                pay(1, 5_001, 0, PaymentMode::ReverseScan, false),
                pay(1, 5_000, 0, PaymentMode::ReverseScan, false),
            ],
            &mut cards,
            FEE,
        );
        assert_eq!(
            v.iter().map(declined).collect::<Vec<_>>(),
            vec![None, Some(DeclineReason::LimitExceeded), None]
        );
    }

    fn arb_payment() -> impl Strategy<Value = Payment> {
        (
            0i64..4,
            1i64..30_000,
            0i64..3_000,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(card, amount, fee, forward, pin)| {
                let mode = if forward {
                    PaymentMode::ForwardScan
                } else {
                    PaymentMode::ReverseScan
                };
                pay(card, amount, fee, mode, pin)
            })
    }

    fn arb_cards() -> impl Strategy<Value = HashMap<CardId, CardBook>> {
        proptest::collection::vec(
            (
                0i64..50_000,
                proptest::option::of((1i64..30_000, 1i64..60_000, 1i64..10_000)),
                0i64..20_000,
                any::<bool>(),
            ),
            4,
        )
        .prop_map(|cards| {
            cards
                .into_iter()
                .enumerate()
                .map(|(i, (balance, l, spent, has_pin))| {
                    let mut b = book(10 + i as i64, balance, l.map(|(p, d, f)| limits(p, d, f)));
                    b.spent_today = Money::from_fen(spent);
                    b.has_pin = has_pin;
                    (CardId(i as i64), b)
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever the batch, no card goes below zero, every entry balances, each approval
        /// takes exactly amount + fee, and a batch decides exactly like the same payments taken
        /// one at a time in arrival order (so batching changes nothing).
        #[test]
        fn never_below_zero_balanced_and_in_arrival_order(
            payments in proptest::collection::vec(arb_payment(), 0..40),
            cards in arb_cards(),
        ) {
            let before = cards.clone();
            let mut batch_cards = cards.clone();
            let verdicts = decide(&payments, &mut batch_cards, FEE);
            prop_assert_eq!(verdicts.len(), payments.len());

            let mut one_by_one = cards;
            for (p, v) in payments.iter().zip(&verdicts) {
                let single = decide(std::slice::from_ref(p), &mut one_by_one, FEE);
                prop_assert_eq!(said(&single[0]), said(v));
            }
            prop_assert_eq!(&one_by_one, &batch_cards);

            for (id, card) in &batch_cards {
                prop_assert!(!card.balance.is_negative(), "card {} below zero", id);
                let taken: Money = payments
                    .iter()
                    .zip(&verdicts)
                    .filter(|(p, v)| p.card == *id && approved(v))
                    .map(|(p, _)| p.amount.money() + p.fee)
                    .sum();
                prop_assert_eq!(before[id].balance - taken, card.balance);
                if let Some(l) = &card.limits {
                    // Spending only grows through approvals that fit the limit.
                    prop_assert!(
                        card.spent_today <= l.daily || card.spent_today == before[id].spent_today
                    );
                }
            }
            for v in &verdicts {
                if let Verdict::Approved { entry, .. } = v {
                    let sum: Money = entry.legs().iter().map(|l| l.amount).sum();
                    prop_assert!(sum.is_zero());
                }
            }
            // The phone is asked only for a reverse scan without a verified PIN, above the
            // password-free amount, that would otherwise go through: within the limits (as
            // the card stood when it was decided), with a PIN to confirm with and the balance
            // to pay it.
            let mut replay = before.clone();
            for (p, v) in payments.iter().zip(&verdicts) {
                if let (Verdict::AwaitConfirmation, Some(card)) = (v, replay.get(&p.card)) {
                    let l = card.limits.as_ref();
                    prop_assert_eq!(p.mode, PaymentMode::ReverseScan);
                    prop_assert!(!p.pin_verified && card.has_pin);
                    prop_assert!(l.is_some_and(|l| l.needs_pin(p.amount)));
                    prop_assert!(l.is_some_and(|l| l.allows(p.amount, card.spent_today)));
                    prop_assert!(card.balance >= p.amount.money() + p.fee);
                }
                decide(std::slice::from_ref(p), &mut replay, FEE);
            }
        }
    }
}
