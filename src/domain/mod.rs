//! Pure domain types and rules: no I/O, no actix, lapin or diesel.
//!
//! Everything that crosses an edge (a message, an HTTP body, a CLI flag) is parsed into one of
//! these types first, so the rest of the code never sees an unchecked amount, id or code. The
//! money decisions live here too (settlement, refunds, fee rules, journal entries), so they are
//! tested without a database; `db` only loads, locks and writes what they decide.

/// For enums stored and sent by name: `as_str`, `parse`, `ALL` and `Display` from one list, so
/// each name is spelled once.
macro_rules! named_enum {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<$t> {
                match s {
                    $($s => Some($t::$v),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: tables format states with widths (`{:<9}`).
                f.pad(self.as_str())
            }
        }
    };
}

pub mod campus_qr;
pub mod card;
pub mod fee;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod order;
pub mod payment_code;
pub mod pin;
pub mod reason;
pub mod refund;
pub mod refusal;
pub mod session;
pub mod settlement;
pub mod transaction;

pub use card::{CardId, CardLimits, CardStatus};
pub use fee::{FeeRate, FeeRateError, FeeRule, FeeRuleId};
pub use identity::Identity;
pub use ids::{IdError, MerchantId, RequestId, TerminalId, TransactionId, UserId};
pub use ledger::{AccountId, AccountKind, EntryKind, JournalEntry, LegKind};
pub use money::{Amount, AmountError, Money};
pub use order::{OrderState, OrderStatus, QrKind};
pub use payment_code::{CodePrefix, CodePrefixError, CodeState, PaymentCode, PaymentCodeError};
pub use reason::DeclineReason;
pub use refusal::Refusal;
pub use session::{SessionRole, SessionSecret};
pub use transaction::{PaymentMode, TxState};
