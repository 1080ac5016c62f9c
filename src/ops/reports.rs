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
