//! The transaction state machine shared by both payment modes:
//! `created → approved | declined | voided`, `approved → reversed`, and for a reverse scan above
//! the card's password-free amount `created → awaiting_confirmation → created | declined` (the
//! cardholder confirms with the PIN on the phone, or declines, or lets it time out; a POS
//! reversal declines it `voided`). Final states never change except `approved → reversed` (a
//! refund by compensating postings).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMode {
    ReverseScan,
    ForwardScan,
}

named_enum!(PaymentMode {
    ReverseScan => "reverse_scan",
    ForwardScan => "forward_scan",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    Created,
    /// Parked by settlement until the cardholder confirms the payment on the phone (not final:
    /// the POS has a `pending` answer).
    AwaitingConfirmation,
    Approved,
    Declined,
    Reversed,
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a transaction cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub from: TxState,
    pub to: TxState,
}

named_enum!(TxState {
    Created => "created",
    AwaitingConfirmation => "awaiting_confirmation",
    Approved => "approved",
    Declined => "declined",
    Reversed => "reversed",
    Voided => "voided",
});

impl TxState {
    /// A request in a final state has its result: re-sending it is all a retry may do.
    /// (`approved` is final for the request even though a later reversal may follow.)
    pub fn is_final(self) -> bool {
        !matches!(self, TxState::Created | TxState::AwaitingConfirmation)
    }

    pub fn can_become(self, to: TxState) -> bool {
        matches!(
            (self, to),
            (TxState::Created, TxState::Approved)
                | (TxState::Created, TxState::Declined)
                | (TxState::Created, TxState::Voided)
                | (TxState::Created, TxState::AwaitingConfirmation)
                // Confirmed with the PIN: settlement decides it again, now with the PIN.
                | (TxState::AwaitingConfirmation, TxState::Created)
                // Declined by the cardholder, timed out, or reversed by the POS (`voided`).
                | (TxState::AwaitingConfirmation, TxState::Declined)
                | (TxState::Approved, TxState::Reversed)
        )
    }

    pub fn transition(self, to: TxState) -> Result<TxState, InvalidTransition> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TxState::*;
    use super::*;

    #[test]
    fn allowed_transitions() {
        let all = [
            Created,
            AwaitingConfirmation,
            Approved,
            Declined,
            Reversed,
            Voided,
        ];
        let allowed = [
            (Created, Approved),
            (Created, Declined),
            (Created, Voided),
            (Created, AwaitingConfirmation),
            (AwaitingConfirmation, Created),
            (AwaitingConfirmation, Declined),
            (Approved, Reversed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.transition(to).is_ok(),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn finality_and_names() {
        assert!(!Created.is_final());
        assert!(!AwaitingConfirmation.is_final());
        assert_eq!(TxState::ALL.len(), 6);
        for s in [Approved, Declined, Reversed, Voided] {
            assert!(s.is_final());
            assert_eq!(TxState::parse(s.as_str()), Some(s));
        }
    }
}
