//! `campuspay admin queue purge`: dropping the ready messages of one queue, with the queues
//! that must not be purged without `--force`.

use super::{connect, vhost_of, QueuesError};
use crate::broker::topology::{Shards, StageName, DEAD_QUEUE};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Connection;
use serde::Serialize;

/// The queues of the stages that move money. What sits in them was accepted: QR validation
/// passed, and from `fee` on a transaction row exists and the payment code is spent. Purging
/// them leaves those payments without a result, stuck in `created`.
fn money_moving_queues() -> Vec<String> {
    [StageName::Order, StageName::Fee, StageName::Settlement]
        .into_iter()
        .flat_map(|s| s.queues(Shards::WIDEST))
        .collect()
}

/// Why a queue must not be purged without `--force`, if it must not.
pub fn purge_protection(queue: &str) -> Option<&'static str> {
    if money_moving_queues().iter().any(|q| q == queue) {
        Some("it feeds a money-moving stage: purging would lose accepted payments (stuck in `created`, no result to the POS or the phone)")
    } else if queue == DEAD_QUEUE {
        Some("dead letters are kept for replay; `campuspay admin dead drop` removes chosen ones and records why")
    } else {
        None
    }
}

/// What the operator confirmed on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurgeConfirm {
    /// `--yes`: required for every purge.
    pub yes: bool,
    /// `--force`: required as well for the queues of `purge_protection`.
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub vhost: String,
    pub queue: String,
    /// Ready messages dropped, as counted by the broker (`purge-ok`).
    pub purged: u32,
}

/// Purges the ready messages of a queue (unacked ones stay with their consumer). The broker's
/// AMQP `queue.purge` is used rather than the management API's `DELETE .../contents`, because
/// only its reply says exactly how many messages went (the management statistics lag by
/// seconds).
pub async fn purge(
    amqp_url: &str,
    queue: &str,
    confirm: PurgeConfirm,
) -> Result<Purged, QueuesError> {
    if !confirm.yes {
        return Err(QueuesError::NotConfirmed {
            queue: queue.to_owned(),
        });
    }
    if let Some(why) = purge_protection(queue) {
        if !confirm.force {
            return Err(QueuesError::Protected {
                queue: queue.to_owned(),
                why,
            });
        }
    }
    let vhost = vhost_of(amqp_url)?;
    let conn = connect(amqp_url, "queue purge").await?;
    let result = purge_on(&conn, queue, &vhost).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(Purged {
        purged: result?,
        vhost,
        queue: queue.to_owned(),
    })
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if a.get_id() == 404)
}

async fn purge_on(conn: &Connection, queue: &str, vhost: &str) -> Result<u32, QueuesError> {
    let channel = conn.create_channel().await?;
    // A passive declare tells "no such queue" apart from other failures.
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    if let Err(e) = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        return Err(if is_not_found(&e) {
            QueuesError::NoSuchQueue {
                queue: queue.to_owned(),
                vhost: vhost.to_owned(),
            }
        } else {
            e.into()
        });
    }
    let purged = channel
        .queue_purge(queue.into(), Default::default())
        .await?;
    let _ = channel.close(200, "done".into()).await;
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_moving_queues_are_protected() {
        for q in [
            "campuspay.order",
            "campuspay.fee",
            "campuspay.settlement.0",
            "campuspay.settlement.3",
            "pay.dead",
        ] {
            assert!(purge_protection(q).is_some(), "{q}");
        }
        for q in [
            "campuspay.qr_validation",
            "campuspay.fanout",
            "pay.unrouted",
            "pos.m1.t1",
        ] {
            assert!(purge_protection(q).is_none(), "{q}");
        }
    }
}
