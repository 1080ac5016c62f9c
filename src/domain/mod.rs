//! Pure domain types and rules: no I/O, no actix, lapin or diesel.
//!
//! Everything that crosses an edge (a message, an HTTP body, a CLI flag) is parsed into one of
//! these types first, so the rest of the code never sees an unchecked amount, id or code.

pub mod campus_qr;
pub mod fee;
pub mod identity;
pub mod ids;
pub mod money;
pub mod payment_code;
pub mod reason;
pub mod transaction;

pub use fee::{FeeRate, FeeRateError};
pub use identity::Identity;
pub use ids::{IdError, MerchantId, RequestId, TerminalId, TransactionId, UserId};
pub use money::{Amount, AmountError, Money};
pub use payment_code::{PaymentCode, PaymentCodeError};
pub use reason::DeclineReason;
pub use transaction::{PaymentMode, TxState};
