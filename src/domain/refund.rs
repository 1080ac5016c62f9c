//! Refunds (退款) and reversals of approved payments, decided without I/O. A refund gives back
//! part or all of what remains of a payment, with the 搭伙费 in proportion; the last refund
//! takes whatever fee is left, so the fee comes back exactly. A POS reversal gives back
//! everything that remains.

use super::{Amount, Money, TxState};
use chrono::{DateTime, Utc};

/// What a payment took from the card (its fee may be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paid {
    pub amount: Amount,
    pub fee: Money,
}

/// What earlier refunds of the same payment gave back, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refunded {
    pub amount: Money,
    pub fee: Money,
}

/// What one refund or reversal gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundPlan {
    /// Of the payment's amount (taken back from the merchant).
    pub amount: Money,
    /// Of the fee (taken back from the school's fee income).
    pub fee: Money,
    /// Amount still refundable afterwards.
    pub remaining: Money,
}

impl RefundPlan {
    /// Nothing remains: the payment is `reversed` from now on.
    pub fn completes(&self) -> bool {
        self.remaining.is_zero()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefusal {
    #[error("the transaction moved no money (declined before it was recorded)")]
    MovedNoMoney,
    #[error("the transaction is {0}: only an approved payment can be refunded")]
    NotApproved(TxState),
    #[error("a refund of {asked} is more than the {remaining} that remains")]
    MoreThanRemains { asked: Amount, remaining: Money },
}

/// A refund of `asked` (default: everything that remains) of a payment in `state`.
pub fn plan_refund(
    state: TxState,
    paid: Option<Paid>,
    done: Refunded,
    asked: Option<Amount>,
) -> Result<RefundPlan, RefundRefusal> {
    let paid = paid.ok_or(RefundRefusal::MovedNoMoney)?;
    if state != TxState::Approved {
        return Err(RefundRefusal::NotApproved(state));
    }
    let remaining = paid.amount.money() - done.amount;
    let amount = asked.map(Amount::money).unwrap_or(remaining);
    if !amount.is_positive() || amount > remaining {
        return Err(RefundRefusal::MoreThanRemains {
            asked: asked.unwrap_or(paid.amount),
            remaining,
        });
    }
    let fee_left = paid.fee - done.fee;
    let fee = if amount == remaining {
        fee_left
    } else {
        Money::round_half_up(paid.fee.value() * amount.value() / paid.amount.value()).min(fee_left)
    };
    Ok(RefundPlan {
        amount,
        fee,
        remaining: remaining - amount,
    })
}

/// A POS reversal of an approved payment: everything that earlier refunds did not give back.
pub fn plan_reversal(paid: Paid, done: Refunded) -> RefundPlan {
    RefundPlan {
        amount: paid.amount.money() - done.amount,
        fee: paid.fee - done.fee,
        remaining: Money::ZERO,
    }
}

/// How far back a POS may reverse its own payments: a stolen till token must not refund old
/// sales; later an operator refunds (`ops::money::refund`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalWindow {
    /// Payments of the current campus day (the default).
    CampusDay,
    /// Payments of the last so many seconds.
    Seconds(u32),
}

impl ReversalWindow {
    /// The earliest processing time a payment may have to be reversed now.
    pub fn opens_at(self, now: DateTime<Utc>, campus_day_start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            ReversalWindow::CampusDay => campus_day_start,
            ReversalWindow::Seconds(s) => now - chrono::Duration::seconds(i64::from(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paid(amount_fen: i64, fee_fen: i64) -> Paid {
        Paid {
            amount: Amount::try_from_decimal(Money::from_fen(amount_fen).value()).unwrap(),
            fee: Money::from_fen(fee_fen),
        }
    }

    fn amount(fen: i64) -> Amount {
        Amount::try_from_decimal(Money::from_fen(fen).value()).unwrap()
    }

    #[test]
    fn refusals() {
        let ok = Refunded::default();
        assert_eq!(
            plan_refund(TxState::Voided, None, ok, None),
            Err(RefundRefusal::MovedNoMoney)
        );
        assert_eq!(
            plan_refund(TxState::Declined, Some(paid(1000, 0)), ok, None),
            Err(RefundRefusal::NotApproved(TxState::Declined))
        );
        assert_eq!(
            plan_refund(
                TxState::Approved,
                Some(paid(1000, 0)),
                ok,
                Some(amount(1001))
            ),
            Err(RefundRefusal::MoreThanRemains {
                asked: amount(1001),
                remaining: Money::from_fen(1000)
            })
        );
    }

    #[test]
    fn partial_then_rest_gives_back_the_fee_exactly() {
        // 20.00 + 10 % fee 2.00; refund 3.33 (fee 0.33), then the rest (fee 1.67).
        let p = paid(2000, 200);
        let first = plan_refund(
            TxState::Approved,
            Some(p),
            Refunded::default(),
            Some(amount(333)),
        )
        .unwrap();
        assert_eq!(
            (first.amount, first.fee),
            (Money::from_fen(333), Money::from_fen(33))
        );
        assert!(!first.completes());
        let done = Refunded {
            amount: first.amount,
            fee: first.fee,
        };
        let rest = plan_refund(TxState::Approved, Some(p), done, None).unwrap();
        assert_eq!(
            (rest.amount, rest.fee),
            (Money::from_fen(1667), Money::from_fen(167))
        );
        assert!(rest.completes());
        // A reversal after the partial refund gives back only the rest too.
        assert_eq!(plan_reversal(p, done), rest);
    }

    proptest! {
        /// However a payment is refunded in parts, the parts never exceed what was paid, the
        /// fee never goes back more than once, and a full refund returns exactly amount + fee.
        #[test]
        fn refunds_in_parts_return_exactly_what_was_paid(
            amount_fen in 1i64..100_000,
            fee_permille in 0i64..1000,
            parts in proptest::collection::vec(1i64..50_000, 0..6),
        ) {
            let fee_fen = amount_fen * fee_permille / 1000;
            let p = paid(amount_fen, fee_fen);
            let mut done = Refunded::default();
            for part in parts {
                match plan_refund(TxState::Approved, Some(p), done, Some(amount(part))) {
                    Ok(plan) => {
                        prop_assert!(!plan.fee.is_negative());
                        done.amount += plan.amount;
                        done.fee += plan.fee;
                        prop_assert!(done.amount <= p.amount.money());
                        prop_assert!(done.fee <= p.fee);
                        if plan.completes() { break; }
                    }
                    Err(RefundRefusal::MoreThanRemains { .. }) => {
                        prop_assert!(Money::from_fen(part) > p.amount.money() - done.amount);
                    }
                    Err(e) => prop_assert!(false, "unexpected refusal {e}"),
                }
            }
            if done.amount < p.amount.money() {
                let rest = plan_refund(TxState::Approved, Some(p), done, None).unwrap();
                done.amount += rest.amount;
                done.fee += rest.fee;
            }
            prop_assert_eq!(done.amount, p.amount.money());
            prop_assert_eq!(done.fee, p.fee);
        }
    }
}
