//! Read-only views: the ledger check, the daily per-merchant report, the operators' trail.

use super::{Ops, OpsError};
use crate::db::{self, audit, ledger, report};

/// The ledger invariants; `stuck_after_secs`: a request still `created` after this long has
/// lost its way.
pub async fn verify(ops: &Ops, stuck_after_secs: i64) -> Result<ledger::LedgerReport, OpsError> {
    Ok(db::run(&ops.pool, move |c| ledger::verify(c, stuck_after_secs)).await?)
}

/// One campus day per merchant (default: today in campus time), tied out to the ledger.
pub async fn daily(
    ops: &Ops,
    date: Option<chrono::NaiveDate>,
) -> Result<report::DailyReport, OpsError> {
    let offset = ops.config.campus_offset;
    let date = date.unwrap_or_else(|| chrono::Utc::now().with_timezone(&offset).date_naive());
    Ok(db::run(&ops.pool, move |c| report::daily(c, date, offset)).await?)
}

/// The newest operator actions, optionally about one subject (a user id, `merchant/terminal`).
pub async fn trail(
    ops: &Ops,
    subject: Option<String>,
    limit: i64,
) -> Result<Vec<audit::Action>, OpsError> {
    Ok(db::run(&ops.pool, move |c| {
        audit::recent(c, subject.as_deref(), limit)
    })
    .await?)
}

/// What the console's dashboard shows: today's payments (campus day) and the last `minutes`
/// minute by minute, and the queues with their consumers and the dead letters waiting. The
/// queues come from the broker's management API; when it does not answer, the payments are
/// still shown and `queues_error` says why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dashboard {
    pub at: chrono::DateTime<chrono::Utc>,
    pub payments: crate::db::listings::PaymentFigures,
    pub queues: Option<crate::admin::queues::QueueOverview>,
    pub queues_error: Option<String>,
    /// Messages in `pay.dead` (null when the broker did not answer).
    pub dead_letters: Option<u64>,
}

pub async fn dashboard(ops: &Ops, minutes: i64) -> Result<Dashboard, OpsError> {
    let offset = ops.config.campus_offset;
    let now = chrono::Utc::now();
    let today = now.with_timezone(&offset).date_naive();
    let from = today
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(offset).single())
        .map_or(now, |t| t.with_timezone(&chrono::Utc));
    let payments = db::run(&ops.pool, move |c| {
        crate::db::listings::payment_figures(c, from, minutes)
    })
    .await?;
    let (queues, queues_error) = match super::queues::overview(ops, false).await {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let dead_letters = queues.as_ref().and_then(|o| {
        o.pipeline
            .iter()
            .find(|q| q.name == crate::broker::topology::DEAD_QUEUE)
            .and_then(|q| q.ready.map(|r| r + q.unacked.unwrap_or(0)))
    });
    Ok(Dashboard {
        at: now,
        payments,
        queues,
        queues_error,
        dead_letters,
    })
}
