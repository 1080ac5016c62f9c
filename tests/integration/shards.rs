//! Changing the number of settlement shards (`CAMPUSPAY_SETTLEMENT_SHARDS`) while payments
//! flow, the way docs/CLUSTER.md tells an operator to: stop the fee stage so that nothing new
//! enters settlement, let the settlement shards drain, restart everything with the new count.
//! Nothing is lost or doubled, and a worker refuses to start while a shard beyond its count
//! still holds a payment.

use crate::faults::*;
use crate::helpers::*;
use campuspay::broker::topology::{settlement_key, settlement_queue, STAGE};
use lapin::options::{BasicPublishOptions, QueuePurgeOptions};
use lapin::BasicProperties;
use std::process::Command;
use std::time::Duration;

/// Messages (ready and unacked) in each of the first `n` settlement queues.
async fn settlement_depths(env: &TestEnv, n: u32) -> Vec<u64> {
    let (m, vhost) = (env.mgmt().clone(), env.vhost.clone());
    blocking(move || {
        (0..n)
            .map(|s| {
                m.queue(&vhost, &settlement_queue(s))
                    .ok()
                    .and_then(|q| q["messages"].as_u64())
                    .unwrap_or(u64::MAX)
            })
            .collect()
    })
    .await
}

/// `campuspay run` with `shards` settlement shards, expected to refuse to start: its stderr.
fn refused_run(env: &TestEnv, shards: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_campuspay"))
        .args(["run", "--no-http"])
        .env("CAMPUSPAY_ENV", "development")
        .env("CAMPUSPAY_OPS_ADDR", "127.0.0.1:0")
        .env("CAMPUSPAY_SETTLEMENT_SHARDS", shards)
        .env("DATABASE_URL", &env.config.database_url)
        .env("AMQP_URL", &env.config.amqp_url)
        .env("RUST_LOG", "error")
        .output()
        .expect("campuspay runs");
    assert_eq!(out.status.code(), Some(1), "run must refuse: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[actix_rt::test]
async fn the_shard_count_changes_after_a_drain_with_nothing_lost_or_doubled() {
    let env = TestEnv::empty().await;
    let url = env.config.amqp_url.clone();
    let (tills, sent) = campus(&env).await;
    let mut four = Worker::spawn(&env);
    let stream = start_stream(&env, tills, 100);
    let at_change = reach_mid_stream(&env, sent, 4).await;

    // 1. Stop the fee stage: everything but fee runs on, so settlement drains while new
    //    requests wait in campuspay.fee.
    assert!(four.terminate().success());
    let mut draining = Worker::spawn_on(
        &env,
        &url,
        &["--stages", "qr_validation,order,settlement,fanout"],
    );
    eventually(
        "the four settlement shards drained",
        WAIT,
        Duration::from_millis(500),
        || async {
            match settlement_depths(&env, 4).await {
                d if d.iter().all(|n| *n == 0) => Ok(()),
                d => Err(format!("{d:?}")),
            }
        },
    )
    .await;
    assert!(draining.terminate().success());

    // A payment left in a shard beyond the new count would never be read: a worker with the
    // new count refuses to start while one is there.
    let channel = env.conn.create_channel().await.unwrap();
    channel
        .basic_publish(
            STAGE.into(),
            settlement_key(3).as_str().into(),
            BasicPublishOptions::default(),
            b"left behind",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    eventually(
        "the message reached shard 3",
        WAIT,
        Duration::from_millis(200),
        || async {
            match settlement_depths(&env, 4).await[3] {
                1 => Ok(()),
                n => Err(format!("{n} messages")),
            }
        },
    )
    .await;
    let refusal = refused_run(&env, "2");
    assert!(
        refusal.contains("campuspay.settlement.3 (1 messages)"),
        "{refusal}"
    );
    channel
        .queue_purge(
            settlement_queue(3).as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await
        .unwrap();

    // 2. Resume with two shards.
    let _two = Worker::spawn_env(&env, &url, &[], &[("CAMPUSPAY_SETTLEMENT_SHARDS", "2")]);
    let report = stream.await.unwrap();
    eprintln!("shard count changed from 4 to 2 with {at_change} of {sent} decided");
    assert_promises_kept(&env, &report, sent, "shard count 4 → 2").await;
    // The management API's counts lag a few seconds behind.
    eventually(
        "nothing left in any shard",
        WAIT,
        Duration::from_millis(500),
        || async {
            match settlement_depths(&env, 4).await {
                d if d == [0, 0, 0, 0] => Ok(()),
                d => Err(format!("{d:?}")),
            }
        },
    )
    .await;
}
