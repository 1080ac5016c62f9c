//! # campuspay
//!
//! A campus-card (一卡通) QR payment system. Cardholders pay campus merchants with their phone;
//! POS terminals and phones learn the result asynchronously. `docs/ARCHITECTURE.md` describes
//! the whole; this is the map of the library:
//!
//! ```text
//!  POS ──AMQP──▶ pay.requests ─▶ [qr_validation] ─▶ [order] ─▶ [fee] ─▶ [settlement ×4] ─▶ [fanout] ─▶ pay.results
//!  phone ─HTTP─▶ platform ──────────────────────────▶ [order]
//!                  └── a confirmed / declined reverse scan ─────────▶ [settlement]
//!  POS page ─HTTP─▶ platform (`/pos/v1`) ──AMQP──▶ pay.requests, as the session's terminal
//! ```
//!
//! Who owns what:
//! - `domain`: pure types and rules — money, ids, codes, identities, card limits, states, and
//!   the money decisions (settlement, refunds, fee rules, journal entries). No I/O.
//! - `emv`: the generic EMV merchant-presented QR codec (data objects, CRC, `describe`); pure,
//!   and independent of `domain`, whose `campus_qr` maps the campus codes onto it.
//! - `messages`: wire types — JSON for the outside (`scan.v1`, `result.v1`), versioned bincode
//!   batches between stages — and their conversion into domain types.
//! - `broker`: lapin only. The topology (`pay.requests`, `pay.stage`, `pay.results`,
//!   `pay.dead`, the `campuspay.<stage>` quorum queues), the confirmed publisher and the
//!   consumer loop that feeds stage actors with natural batches.
//! - `db`: diesel only. One repository per job: `validation`, `orders`, `fees`, `settle` for
//!   the stages; `confirmations` (the cardholder's confirmations, the sweeper's pass); `journal`, the one writer of the ledger (settlement, reversals, refunds,
//!   top-ups, subsidies), which also owns the lock order; `admin`, `cards`, `codes`,
//!   `forward`, `refunds`, `subsidy`, `report`, `ledger` (the invariants), `audit`;
//!   `sessions` (sign-in links and browser sessions); `till` (a till's sales of the day).
//! - `pipeline`: one actor per stage; `Pipeline::start` runs any subset of them, and with
//!   settlement the confirmation sweeper.
//! - `ops`: the back office's use cases, shared by the CLI, `/admin/v1` and the console.
//! - `platform`: actix-web — the phone's API, `/admin/v1`, the event streams, the till page's
//!   bridge `/pos/v1` (`till`, fed from the till's own queue by `till_feed`); the browser
//!   pages (the wallet at `/app`, the till at `/pos`, compiled in from `web/`) and their
//!   sessions.
//! - `tsm`: issues one-time payment codes, stored as keyed hashes; PIN hashes.
//! - `admin`: the RabbitMQ management API, queue and dead-letter operations. `sim`: POS and
//!   phone simulators, demo campus and lunch hour.
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
pub mod health;
pub mod keys;
pub mod messages;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod platform;
pub mod qr;
pub mod sim;
pub mod tsm;
