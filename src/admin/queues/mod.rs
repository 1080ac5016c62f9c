//! Operating the queues: `campuspay admin queues`, `admin queue purge`, `admin dead
//! list|show|replay|drop` and `admin topology check`.
//!
//! Reading dead letters never loses them. They are taken from `pay.dead` with manual acks
//! (`basic.get`), and every one that is not replayed or dropped is nacked back with requeue; if
//! the command dies half-way, the broker requeues whatever it still held when the connection
//! closes. A dead letter leaves `pay.dead` only after its replay was confirmed by the broker
//! (persistent, `mandatory`, publisher confirm), or after its drop was recorded and fsync'd in
//! the drop record file. A crash between the two steps leaves the dead letter in place: a
//! replay may then be published twice (the stages are idempotent), a drop recorded twice.
//!
//! Everything here takes the URLs (or a `Management` client) as parameters, so the integration
//! tests drive it against their own vhost; the command-line front end is `cli::broker` in the
//! binary. One file per operation: `overview` (admin queues), `purge`, `dead_letter` (decoding
//! a dead letter), `custody` (taking dead letters from pay.dead: list, show, replay, drop),
//! `policies` (setting up the broker with the queues' limits) and `topology_check`; this file holds the error and the helpers they share.

mod custody;
mod dead_letter;
mod overview;
mod policies;
mod purge;
mod topology_check;

pub use custody::{
    dead_drop, dead_list, dead_replay, dead_show, DeadListing, DropRecord, DropReport, NotDone,
    ReplayReport, Replayed, Selection, DEFAULT_DROP_RECORD,
};
pub use dead_letter::{
    amqp_to_json, dead_letter_id, decode_body, describe, Body, DeadLetter, DeadLetterDetail,
};
pub use overview::{
    queue_overview, summarize, warnings_for, QueueOverview, QueueRow, ResultGroup, BACKLOG_READY,
};
pub use policies::{apply_policies, set_up, ExistingPolicies, SetUp};
pub use purge::{purge, purge_protection, PurgeConfirm, Purged};
pub use topology_check::{
    committed_definitions, compare, topology_check, Drift, TopologyReport, DEFINITIONS_FILE,
};

use crate::admin::management::ManagementError;
use crate::broker::connection::connect_retrying;
use crate::broker::BrokerError;
use lapin::Connection;
use std::path::PathBuf;

/// How many dead letters one command reads by default, and at most. Every one read is held
/// unacked by this process until the command ends, so the ceiling bounds memory and the
/// number of messages invisible to other readers meanwhile.
pub const DEFAULT_DEAD_LIMIT: usize = 100;
pub const MAX_DEAD_LIMIT: usize = 10_000;
const CONNECT_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP_URL: {0}")]
    BadAmqpUrl(&'static str),
    #[error("refusing to purge {queue}: pass --yes to confirm; nothing was purged")]
    NotConfirmed { queue: String },
    #[error("refusing to purge {queue}: {why}. Pass --force as well if you really mean it; nothing was purged")]
    Protected { queue: String, why: &'static str },
    #[error("no queue {queue:?} in vhost {vhost:?}")]
    NoSuchQueue { queue: String, vhost: String },
    #[error("--limit {0} is out of range 1..={MAX_DEAD_LIMIT}")]
    BadLimit(usize),
    #[error(
        "no dead letter with id {id} among the {examined} read from pay.dead (raise --limit?)"
    )]
    NotFound { id: String, examined: usize },
    #[error("nothing selected: give dead-letter ids, or --all")]
    NothingSelected,
    #[error("unknown stage {0:?}: expected qr_validation, order, fee, settlement or fanout")]
    UnknownStage(String),
    #[error("--reason must say why the dead letters are dropped")]
    NoReason,
    #[error("drop record {}: {source}; nothing was dropped", path.display())]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("definitions {source_name}: {why}")]
    Definitions { source_name: String, why: String },
    #[error("background task: {0}")]
    Task(String),
}

// ---------------------------------------------------------------------------------------------
// Small pure helpers
// ---------------------------------------------------------------------------------------------

/// The vhost an AMQP URL names: its path, percent-decoded (`%2f` is `/`); no path is `/`.
pub fn vhost_of(amqp_url: &str) -> Result<String, QueuesError> {
    if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
        return Err(QueuesError::BadAmqpUrl(
            "must start with amqp:// or amqps://",
        ));
    }
    crate::broker::amqp_url::vhost(amqp_url).ok_or(QueuesError::BadAmqpUrl(
        "the vhost is not valid percent-encoded UTF-8",
    ))
}

pub fn check_limit(limit: usize) -> Result<usize, QueuesError> {
    if (1..=MAX_DEAD_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(QueuesError::BadLimit(limit))
    }
}

/// Terminal (`pos.*`) and cardholder (`user.*`) result queues.
pub(super) fn is_result_queue(name: &str) -> bool {
    name.starts_with("pos.") || name.starts_with("user.")
}

/// "45s", "3m12s", "2h05m", "3d04h".
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ManagementError> + Send + 'static,
) -> Result<T, QueuesError> {
    // ureq blocks: keep it off the thread that drives AMQP.
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueuesError::Task(e.to_string()))?
        .map_err(QueuesError::from)
}

pub(super) async fn connect(amqp_url: &str, what: &str) -> Result<Connection, QueuesError> {
    Ok(connect_retrying(
        amqp_url,
        &format!("campuspay admin {what}"),
        CONNECT_ATTEMPTS,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_is_the_decoded_path() {
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/%2f").unwrap(), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/%2F").unwrap(), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672").unwrap(), "/");
        assert_eq!(
            vhost_of("amqp://h/cp_test_1?heartbeat=10").unwrap(),
            "cp_test_1"
        );
        assert_eq!(vhost_of("amqps://h/a%20b").unwrap(), "a b");
        assert!(vhost_of("http://h/x").is_err());
        assert!(vhost_of("amqp://h/%zz").is_err());
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(192), "3m12s");
        assert_eq!(human_age(7500), "2h05m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600), "3d04h");
    }
}
