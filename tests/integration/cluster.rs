//! Fault tests on a real cluster: three RabbitMQ nodes, each in a network namespace of its own,
//! and a PostgreSQL primary with a synchronous streaming standby (`scripts/cluster.sh`,
//! docs/CLUSTER.md). Each runs a steady stream of payments through `campuspay run` worker
//! processes, injects one fault, and checks the promises of the single-node fault tests
//! (`faults::assert_promises_kept`: every request exactly one final result, none lost, none
//! doubled, no negative balance, the ledger verifies). Each prints its figures (requests in
//! flight at the fault, how long until payments were decided again, the longest pause between
//! two decisions, re-sends, slowest result) for docs/RELIABILITY.md.
//!
//! Ignored in a plain `cargo test`: they need the cluster (root) and the machine to themselves.
//! `make test-cluster` starts the cluster, runs them one at a time with its settings
//! (`AMQP_URL` and `RABBITMQ_MANAGEMENT_URL` listing the three nodes, `DATABASE_URL` in libpq's
//! multi-host form) and deletes it. Each test leaves the cluster whole again, pass or fail.

use crate::faults::*;
use crate::helpers::*;
use std::process::Command;
use std::time::{Duration, Instant};

const PACE_MS: u64 = 100;
/// How many more decisions count as "payments flow again" after a fault.
const RESUMED_AFTER: i64 = 20;

fn script() -> String {
    format!("{}/scripts/cluster.sh", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/cluster.sh ARGS`, which must succeed; its standard output.
fn cluster_sh(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("scripts/cluster.sh runs");
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The setting `key` of the running cluster (exported by `make test-cluster`).
fn setting(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run the cluster tests with `make test-cluster`")
    })
}

/// Makes the cluster whole again when a test ends, however it ends: the PostgreSQL standby
/// rejoined after a promotion, every RabbitMQ node running and connected.
struct Restore {
    pg_promoted: bool,
}

impl Restore {
    fn new() -> Restore {
        // The settings come from a running cluster: check it is whole before breaking it.
        setting("CLUSTER_DIR");
        cluster_sh(&["up"]);
        Restore { pg_promoted: false }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let lenient = |args: &[&str]| {
            let _ = Command::new(script()).args(args).status();
        };
        if self.pg_promoted {
            lenient(&["pg-rejoin"]);
        }
        lenient(&["up"]);
    }
}

/// The fault's figures, printed for docs/RELIABILITY.md.
async fn figures(
    env: &TestEnv,
    fault: &str,
    in_flight: i64,
    resumed: Duration,
    report: &campuspay::sim::load::DriveReport,
) {
    // The longest pause between two consecutive decisions: how long nothing was decided.
    let pause_ms = env
        .count(
            "SELECT COALESCE((EXTRACT(EPOCH FROM MAX(gap)) * 1000)::bigint, 0) AS n FROM (
               SELECT processed_at - LAG(processed_at) OVER (ORDER BY processed_at) AS gap
               FROM transactions WHERE processed_at IS NOT NULL) g",
        )
        .await;
    let mut latencies = report.latencies.clone();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let slow = latencies
        .iter()
        .filter(|l| **l > Duration::from_secs(1))
        .count();
    eprintln!(
        "FIGURES {fault}: in flight at the fault {in_flight}; payments decided again {:.1} s after it; \
         longest pause between decisions {:.1} s; re-sends {}; results later than 1 s {slow}; \
         latency p50 {:?} p99 {:?} max {:?}",
        resumed.as_secs_f64(),
        pause_ms as f64 / 1000.0,
        report.resends,
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
}

/// Requests accepted but not yet decided: the payments in flight in the pipeline.
async fn in_flight(env: &TestEnv) -> i64 {
    env.count("SELECT COUNT(*) AS n FROM transactions WHERE state = 'created'")
        .await
}

/// Waits until every settlement shard has an active consumer.
async fn shards_consumed(env: &TestEnv) {
    let shards = env.config.settlement_shards;
    wait_for_shards(env, Duration::from_secs(60), |seen| {
        shards.all().all(|s| !active_on(seen, s).is_empty())
    })
    .await;
}

/// The node (1–3) leading quorum queue `queue` of the test's vhost.
fn leader_of(env: &TestEnv, queue: &str) -> String {
    cluster_sh(&["rabbit-leader", queue, &env.vhost])
        .trim()
        .to_owned()
}

/// 1. `kill -9` of the node leading the settlement queues mid-stream: the queues elect new
///    leaders on the other two nodes, the worker's and the tills' connections to the dead node
///    move to the others, and the node rejoins when restarted.
#[actix_rt::test]
#[ignore]
async fn cluster_settlement_leader_node_killed_mid_stream() {
    let _restore = Restore::new();
    let env = TestEnv::empty().await;
    let (tills, sent) = campus(&env).await;
    let _worker = Worker::spawn(&env);
    shards_consumed(&env).await;
    let stream = start_stream(&env, tills, PACE_MS);
    let at_fault = reach_mid_stream(&env, sent, 4).await;
    let node = leader_of(&env, "campuspay.settlement.0");
    let flying = in_flight(&env).await;
    eprintln!(
        "killing node {node} (leads campuspay.settlement.0) with {at_fault} of {sent} decided"
    );
    cluster_sh(&["rabbit-kill", &node]);
    let killed = Instant::now();
    wait_decided(&env, at_fault + RESUMED_AFTER, Duration::from_secs(90)).await;
    let resumed = killed.elapsed();
    let new_leader = leader_of(&env, "campuspay.settlement.0");
    assert_ne!(new_leader, node, "a surviving node leads the shard");
    cluster_sh(&["rabbit-start", &node]);
    eprintln!("node {node} restarted and rejoined the cluster");
    let report = stream.await.unwrap();
    assert_promises_kept(&env, &report, sent, "cluster: leader node killed").await;
    figures(&env, "leader node killed", flying, resumed, &report).await;
}

/// 2. A network partition: the node leading the settlement queues loses its link (its veth goes
///    down) while payments flow. The cluster runs `pause_minority`: the cut-off node, alone,
///    pauses, so it can neither accept publishes nor hand out deliveries that the majority
///    does not see (no split brain for a ledger's messages); clients notice by missed
///    heartbeats and reconnect to the majority. Then the link is healed and the node rejoins.
#[actix_rt::test]
#[ignore]
async fn cluster_node_partitioned_away_mid_stream_then_healed() {
    let _restore = Restore::new();
    let env = TestEnv::empty().await;
    let (tills, sent) = campus(&env).await;
    let _worker = Worker::spawn(&env);
    shards_consumed(&env).await;
    let stream = start_stream(&env, tills, PACE_MS);
    let at_fault = reach_mid_stream(&env, sent, 4).await;
    let node = leader_of(&env, "campuspay.settlement.0");
    let flying = in_flight(&env).await;
    eprintln!("cutting node {node} off with {at_fault} of {sent} decided");
    let cut = Instant::now();
    cluster_sh(&["partition", &node]);
    wait_decided(&env, at_fault + RESUMED_AFTER, Duration::from_secs(90)).await;
    let resumed = cut.elapsed();
    // Keep it cut off a while longer, then heal.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster_sh(&["heal", &node]);
    eprintln!("node {node} healed after {:?}", cut.elapsed());
    let report = stream.await.unwrap();
    assert_promises_kept(&env, &report, sent, "cluster: node partitioned").await;
    figures(&env, "node partitioned", flying, resumed, &report).await;
}

/// 3. The PostgreSQL primary stops hard mid-stream and the standby is promoted: the workers'
///    pools find the new primary through the multi-host `DATABASE_URL`
///    (`target_session_attrs=read-write`); every payment the tills were told was approved is
///    in it (synchronous replication), and the ledger verifies there.
#[actix_rt::test]
#[ignore]
async fn cluster_postgres_primary_lost_and_standby_promoted_mid_stream() {
    let mut restore = Restore::new();
    let env = TestEnv::empty().await;
    let (tills, sent) = campus(&env).await;
    let _worker = Worker::spawn(&env);
    shards_consumed(&env).await;
    let stream = start_stream(&env, tills, PACE_MS);
    let at_fault = reach_mid_stream(&env, sent, 4).await;
    let flying = in_flight(&env).await;
    eprintln!("stopping the PostgreSQL primary hard with {at_fault} of {sent} decided");
    let killed = Instant::now();
    restore.pg_promoted = true;
    cluster_sh(&["pg-kill-primary"]);
    cluster_sh(&["pg-promote"]);
    eprintln!(
        "standby promoted {:?} after the primary stopped",
        killed.elapsed()
    );
    wait_decided(&env, at_fault + RESUMED_AFTER, Duration::from_secs(90)).await;
    let resumed = killed.elapsed();
    let report = stream.await.unwrap();
    assert_promises_kept(&env, &report, sent, "cluster: PostgreSQL failover").await;
    figures(&env, "PostgreSQL failover", flying, resumed, &report).await;
}

/// 4. Two worker processes connected to different broker nodes split the settlement shards;
///    one is killed and the other takes over its shards (single active consumer across nodes).
#[actix_rt::test]
#[ignore]
async fn cluster_two_workers_on_different_nodes_one_killed() {
    let _restore = Restore::new();
    let env = TestEnv::empty().await;
    let a = vhost_url(&setting("AMQP_URL_1"), &env.vhost);
    let b = vhost_url(&setting("AMQP_URL_2"), &env.vhost);
    two_workers_one_killed(&env, &a, &b, "cluster: one of two workers killed").await;
}
