//! # campuspay
//!
//! A campus-card (一卡通) QR payment system. Cardholders pay campus merchants with their phone;
//! POS terminals and phones learn the result asynchronously. The architecture (DESIGN.md):
//!
//! ```text
//!  POS ──AMQP──▶ pay.requests ─▶ [qr_validation] ─▶ [order] ─▶ [fee] ─▶ [settlement ×4] ─▶ [fanout] ─▶ pay.results
//! ```
//!
//! Who owns what:
//! - `domain`: pure types and rules (money, ids, codes, fees, the transaction state machine).
//! - `emv`: the generic EMV merchant-presented QR codec (data objects, CRC, `describe`); pure,
//!   and independent of `domain`, whose `campus_qr` maps the campus codes onto it.
//! - `messages`: wire types — JSON for the outside (`scan.v1`, `result.v1`), versioned bincode
//!   batches between stages — and their conversion into domain types.
//! - `broker`: lapin only. The topology (`pay.requests`, `pay.stage`, `pay.results`,
//!   `pay.dead`, the `campuspay.<stage>` quorum queues), the confirmed publisher and the
//!   consumer loop that feeds stage actors with natural batches.
//! - `db`: diesel only. Tables by owner: `transactions` and `payment_codes` (state) are written
//!   by the order stage, `transactions.fee*` by fee, `accounts`/`journal_entries`/`postings` and
//!   the final transaction state by settlement; merchants, terminals, cards and fee rules by
//!   admin commands; `payment_codes` rows are created by the TSM.
//! - `pipeline`: one actor per stage; `Pipeline::start` runs any subset of them.
//! - `tsm`: issues one-time payment codes, stored as HMACs.
//! - `admin`: the RabbitMQ management API. `sim`: POS simulator, demo campus and lunch hour.
//!
//! The `campuspay` command line (`cli`) and `campuspay bench` (`bench`) belong to the binary
//! (`src/main.rs`), not to this library.
//!
//! Reliability rules: at-least-once on every hop; a stage acks its input only after its
//! database work is committed and its output is confirmed by the broker; every handler is
//! idempotent, keyed by unique constraints in PostgreSQL.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod db;
pub mod domain;
pub mod emv;
pub mod messages;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod platform;
pub mod qr;
pub mod sim;
pub mod tsm;
