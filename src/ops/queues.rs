//! The broker side of the back office: queue overview, purge, dead letters (list, show, replay,
//! drop) and the topology check, over `admin::queues`. These work while PostgreSQL is down
//! (they need only the broker); the changes are recorded on the operators' trail when the
//! database answers, and logged when it does not.

use super::{Operator, Ops};
use crate::admin::management::Management;
use crate::admin::queues::{
    self, DeadLetterDetail, DeadListing, DropReport, PurgeConfirm, Purged, QueueOverview,
    QueuesError, ReplayReport, Selection, TopologyReport,
};
use std::path::Path;

fn management(ops: &Ops) -> Result<(Management, String), QueuesError> {
    Ok((
        Management::new(&ops.config.management_url)?,
        queues::vhost_of(&ops.config.amqp_url)?,
    ))
}

pub async fn overview(ops: &Ops, list_results: bool) -> Result<QueueOverview, QueuesError> {
    let (m, vhost) = management(ops)?;
    queues::queue_overview(&m, &vhost, list_results, ops.config.settlement_shards).await
}

pub async fn purge(
    ops: &Ops,
    who: &Operator,
    queue: &str,
    confirm: PurgeConfirm,
) -> Result<Purged, QueuesError> {
    let p = queues::purge(&ops.config.amqp_url, queue, confirm).await?;
    ops.record(
        who,
        "queue.purge",
        queue.to_owned(),
        serde_json::json!({ "purged": p.purged, "force": confirm.force }),
    )
    .await;
    Ok(p)
}

pub async fn dead_list(ops: &Ops, limit: usize) -> Result<DeadListing, QueuesError> {
    queues::dead_list(&ops.config.amqp_url, limit).await
}

pub async fn dead_show(
    ops: &Ops,
    id: &str,
    limit: usize,
) -> Result<Vec<DeadLetterDetail>, QueuesError> {
    queues::dead_show(&ops.config.amqp_url, id, limit).await
}

/// Re-publishes dead letters where they came from (confirmed), then removes them.
pub async fn dead_replay(
    ops: &Ops,
    who: &Operator,
    selection: &Selection,
    limit: usize,
) -> Result<ReplayReport, QueuesError> {
    let r = queues::dead_replay(
        &ops.config.amqp_url,
        selection,
        limit,
        ops.config.confirm_timeout,
    )
    .await?;
    let ids: Vec<&str> = r.replayed.iter().map(|x| x.id.as_str()).collect();
    ops.record(
        who,
        "dead.replay",
        "pay.dead".into(),
        serde_json::json!({ "replayed": ids }),
    )
    .await;
    Ok(r)
}

/// Drops dead letters after recording each in `record` (JSON Lines).
pub async fn dead_drop(
    ops: &Ops,
    who: &Operator,
    ids: &[String],
    reason: &str,
    record: &Path,
    limit: usize,
) -> Result<DropReport, QueuesError> {
    let r = queues::dead_drop(&ops.config.amqp_url, ids, reason, record, limit).await?;
    let dropped: Vec<&str> = r.dropped.iter().map(|x| x.id.as_str()).collect();
    ops.record(
        who,
        "dead.drop",
        "pay.dead".into(),
        serde_json::json!({ "dropped": dropped, "reason": reason }),
    )
    .await;
    Ok(r)
}

/// The live broker compared with the code's topology and the committed definitions file
/// (`definitions`: another file instead).
pub async fn topology_check(
    ops: &Ops,
    definitions: Option<&Path>,
) -> Result<TopologyReport, QueuesError> {
    let (m, vhost) = management(ops)?;
    let (committed, name) = queues::committed_definitions(definitions)?;
    queues::topology_check(&m, &vhost, &committed, &name, ops.config.settlement_shards).await
}
