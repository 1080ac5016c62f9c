//! Setting up the broker: the code's policies (the queues' limits), then its exchanges, queues
//! and bindings. Used by `campuspay topology`, the demo, the bench and the tests, so that each
//! creates its queues under the same limits.

use super::{blocking, QueuesError};
use crate::admin::management::Management;
use crate::broker::topology::Topology;
use lapin::Connection;
use serde::Serialize;
use std::collections::BTreeSet;

/// What setting up did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetUp {
    /// Policies written.
    pub policies_set: Vec<String>,
    /// Policies that existed and were left as they are (an operator may have tuned them).
    pub policies_kept: Vec<String>,
    /// Queues that exist with limits as arguments an earlier version gave them.
    pub queues_kept_with_arguments: Vec<String>,
}

/// Whether `campuspay topology` overwrites policies that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingPolicies {
    /// Leave them: they hold the operator's limits.
    Keep,
    /// Put the code's definitions back.
    Reset,
}

/// Writes the code's policies to `vhost`: the missing ones, or all with
/// [`ExistingPolicies::Reset`].
pub async fn apply_policies(
    mgmt: &Management,
    vhost: &str,
    topology: &Topology,
    existing: ExistingPolicies,
) -> Result<SetUp, QueuesError> {
    let (m, v) = (mgmt.clone(), vhost.to_owned());
    let wanted = topology.policies_json(vhost);
    blocking(move || {
        let present: BTreeSet<String> = m
            .policies(&v)?
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        let mut done = SetUp::default();
        for p in &wanted {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            if existing == ExistingPolicies::Keep && present.contains(&name) {
                done.policies_kept.push(name);
            } else {
                m.put_policy(&v, p)?;
                done.policies_set.push(name);
            }
        }
        Ok(done)
    })
    .await
}

/// Policies first, so that every queue is created under its limits, then the topology.
pub async fn set_up(
    conn: &Connection,
    mgmt: &Management,
    vhost: &str,
    topology: &Topology,
    existing: ExistingPolicies,
) -> Result<SetUp, QueuesError> {
    let mut done = apply_policies(mgmt, vhost, topology, existing).await?;
    done.queues_kept_with_arguments = topology.declare(conn).await?.kept_with_arguments;
    Ok(done)
}
