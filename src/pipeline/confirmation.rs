//! The confirmation sweeper: hands back to settlement every parked reverse scan that must be
//! decided again and that nobody else handed back lately — past its deadline (settlement
//! declines it `confirmation_timeout`), declined by its cardholder, or confirmed — so that a
//! payment waiting for its cardholder always ends in one final result, whichever process dies
//! when.
//!
//! Why a sweeper, in every process that runs settlement, rather than a timer message per
//! payment (a per-message TTL and a dead-letter route back to settlement): the state lives in
//! PostgreSQL, where the deadline is one indexed column, so the sweeper keeps nothing in memory
//! and loses nothing when its process dies (another process's sweeper, or its own after a
//! restart, finds the same rows); several sweepers never take one row twice (`FOR UPDATE SKIP
//! LOCKED`); and a hand-over whose publish was lost is found again too. The price is the
//! precision of the deadline: up to one sweep interval late.
//!
//! The sweeper decides nothing: settlement does, on the locked row, idempotently. A pass stamps
//! the rows it takes (`confirm_sent_at`) before it publishes, so a lost publish is retried one
//! `RESEND_AFTER_SECS` later and a slow settlement queue is not flooded with copies. Each pass
//! takes at most `SWEEP_LIMIT` rows.

use super::{to_settlement, Deps, StageError};
use crate::broker::PublisherSlot;
use crate::db::{self, confirmations};
use std::time::Duration;
use tokio::sync::watch;

/// How often a process sweeps. The database finds the due rows through a partial index of the
/// open confirmations only, so a pass costs one small query when there is nothing to do.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A row handed to settlement is handed again only this long after, if still not settled.
pub const RESEND_AFTER_SECS: i64 = 30;
/// Rows per pass; the rest wait for the next pass.
pub const SWEEP_LIMIT: i64 = 500;

/// One pass: hands the due payments to their settlement shards. Returns how many.
pub async fn sweep_once(deps: &Deps, publisher: &PublisherSlot) -> Result<usize, StageError> {
    let items = db::run(&deps.pool, |c| {
        confirmations::due(c, RESEND_AFTER_SECS, SWEEP_LIMIT)
    })
    .await?;
    if items.is_empty() {
        return Ok(0);
    }
    let n = items.len();
    let messages = to_settlement(
        &deps.keys.stage_mac,
        deps.settlement_shards,
        items,
        &super::Trace::default(),
    )?;
    publisher.publish(&messages).await?;
    Ok(n)
}

/// Sweeps every `SWEEP_EVERY` until `shutdown`.
pub async fn run(deps: Deps, publisher: PublisherSlot, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match sweep_once(&deps, &publisher).await {
            Ok(0) => {}
            Ok(n) => log::info!("confirmation sweeper: handed {n} payments back to settlement"),
            // Nothing is lost: the rows stay due and are taken again by a later pass.
            Err(e) => log::warn!("confirmation sweeper: {e}; trying again later"),
        }
    }
}
