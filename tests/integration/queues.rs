//! Operating the queues against the real broker: purge guards, the queue overview, dead letters
//! (list without loss, replay that succeeds, replay that fails again, drop with a record) and
//! topology drift.

use crate::helpers::*;
use campuspay::admin::queues::{
    self, dead_drop, dead_list, dead_replay, purge, queue_overview, DeadLetter, PurgeConfirm,
    QueuesError, Selection,
};
use campuspay::broker::topology::{provision_result_queue, DEAD, DEAD_QUEUE, RESULTS, STAGE};
use campuspay::broker::{Outgoing, Publisher};
use campuspay::domain::{
    Amount, DeclineReason, MerchantId, PaymentMode, RequestId, TerminalId, TxState,
};
use campuspay::messages::internal::{FinalResult, Outcome, PaymentItem, StageBatch};
use lapin::options::{
    BasicGetOptions, BasicRejectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use std::time::Duration;

const LIMIT: usize = 100;

/// Ready messages in a queue, exactly (a passive declare, not the lagging statistics).
async fn depth(env: &TestEnv, queue: &str) -> u32 {
    let channel = env.conn.create_channel().await.unwrap();
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = channel.close(200, "done".into()).await;
    q.message_count()
}

/// Waits until a queue holds `expected` ready messages. Messages nacked back to a quorum queue
/// are counted again only once the queue has applied the return, a moment after the nack.
async fn depth_becomes(env: &TestEnv, queue: &str, expected: u32) {
    let what = format!("{queue} holds {expected} ready messages");
    eventually(&what, WAIT, Duration::from_millis(100), || async {
        match depth(env, queue).await {
            n if n == expected => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await
}

async fn publisher(env: &TestEnv) -> Publisher {
    Publisher::new(&env.conn, Duration::from_secs(10))
        .await
        .unwrap()
}

/// Lists pay.dead until `done` holds for what it shows.
async fn dead_until(
    env: &TestEnv,
    what: &str,
    done: impl Fn(&[DeadLetter]) -> bool,
) -> Vec<DeadLetter> {
    eventually(what, WAIT, Duration::from_millis(200), || async {
        let listing = dead_list(&env.config.amqp_url, LIMIT).await.unwrap();
        if done(&listing.letters) {
            Ok(listing.letters)
        } else {
            Err(format!("pay.dead shows {:?}", listing.letters))
        }
    })
    .await
}

#[actix_rt::test]
async fn purge_needs_yes_and_money_moving_stage_queues_need_force() {
    // No stage runs, so what is published stays where it lands.
    let env = TestEnv::empty().await;
    let amqp = env.config.amqp_url.clone();
    provision_result_queue(&env.conn, "pos.m9.t9")
        .await
        .unwrap();
    let p = publisher(&env).await;
    for i in 0..3 {
        p.publish(Outgoing::json(
            RESULTS,
            "pos.m9.t9".into(),
            format!("{{\"n\":{i}}}").into_bytes(),
        ))
        .await
        .unwrap();
    }
    assert_eq!(depth(&env, "pos.m9.t9").await, 3);

    // Without --yes: refused, nothing purged.
    let err = purge(&amqp, "pos.m9.t9", PurgeConfirm::default())
        .await
        .unwrap_err();
    assert!(matches!(err, QueuesError::NotConfirmed { .. }), "{err}");
    assert!(err.to_string().contains("--yes"), "{err}");
    let force_only = PurgeConfirm {
        yes: false,
        force: true,
    };
    assert!(matches!(
        purge(&amqp, "pos.m9.t9", force_only).await,
        Err(QueuesError::NotConfirmed { .. })
    ));
    assert_eq!(depth(&env, "pos.m9.t9").await, 3);
    // With --yes: purged, and the count is exact.
    let yes = PurgeConfirm {
        yes: true,
        force: false,
    };
    let done = purge(&amqp, "pos.m9.t9", yes).await.unwrap();
    assert_eq!(done.purged, 3);
    assert_eq!(done.vhost, env.vhost);
    assert_eq!(depth(&env, "pos.m9.t9").await, 0);

    // A money-moving stage queue: --yes alone is refused, with the reason.
    for _ in 0..2 {
        p.publish(Outgoing::binary(STAGE, "order".into(), vec![2, 0]))
            .await
            .unwrap();
    }
    assert_eq!(depth(&env, "campuspay.order").await, 2);
    for q in ["campuspay.order", "campuspay.fee", "campuspay.settlement.1"] {
        let err = purge(&amqp, q, yes).await.unwrap_err();
        assert!(matches!(err, QueuesError::Protected { .. }), "{q}: {err}");
        assert!(err.to_string().contains("accepted payments"), "{err}");
    }
    assert_eq!(depth(&env, "campuspay.order").await, 2);
    let both = PurgeConfirm {
        yes: true,
        force: true,
    };
    assert_eq!(
        purge(&amqp, "campuspay.order", both).await.unwrap().purged,
        2
    );
    assert_eq!(depth(&env, "campuspay.order").await, 0);

    // Neither qr_validation nor a missing queue needs --force; the latter is an error.
    assert_eq!(
        purge(&amqp, "campuspay.qr_validation", yes)
            .await
            .unwrap()
            .purged,
        0
    );
    assert!(matches!(
        purge(&amqp, "pos.nobody.here", yes).await,
        Err(QueuesError::NoSuchQueue { .. })
    ));
}

#[actix_rt::test]
async fn the_overview_lists_the_pipeline_queues_and_warns_about_missing_consumers() {
    let mut env = TestEnv::empty().await;
    let mgmt = env.mgmt().clone();
    // The management statistics lag by a few seconds: poll.
    let every = Duration::from_millis(500);
    let o = eventually("every queue has statistics", WAIT, every, || async {
        let o = queue_overview(&mgmt, &env.vhost, true, env.config.settlement_shards)
            .await
            .unwrap();
        if o.pipeline.iter().all(|r| r.consumers.is_some()) {
            Ok(o)
        } else {
            Err(format!("{o:?}"))
        }
    })
    .await;
    let names: Vec<&str> = o.pipeline.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "campuspay.qr_validation",
            "campuspay.order",
            "campuspay.fee",
            "campuspay.settlement.0",
            "campuspay.settlement.1",
            "campuspay.settlement.2",
            "campuspay.settlement.3",
            "campuspay.fanout",
            "pay.dead",
            "pay.unrouted",
        ]
    );
    assert!(o.missing.is_empty());
    // Every pipeline queue is replicated: pay.unrouted too (a cluster node's loss must not
    // make results unroutable).
    assert!(o
        .pipeline
        .iter()
        .all(|q| q.kind.as_deref() == Some("quorum")));
    let no_consumer = o
        .warnings
        .iter()
        .filter(|w| w.contains("has no consumer"))
        .count();
    assert_eq!(no_consumer, 8, "{:?}", o.warnings);

    // With the pipeline running, every stage queue has its consumer.
    env.start_pipeline();
    eventually("no warnings once the stages run", WAIT, every, || async {
        let o = queue_overview(&mgmt, &env.vhost, false, env.config.settlement_shards)
            .await
            .unwrap();
        if o.warnings.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", o.warnings))
        }
    })
    .await;
}

#[actix_rt::test]
async fn dead_list_shows_stage_reason_origin_and_age_and_keeps_every_dead_letter() {
    let env = TestEnv::start().await;
    let pos = env.pos("m1", "t1").await;
    let key = pos.routing_key("scan");
    pos.publish_raw(&key, b"this is not json".to_vec(), None)
        .await
        .unwrap();
    let letters = dead_until(&env, "one dead letter", |l| l.len() == 1).await;
    let l = &letters[0];
    assert_eq!(l.stage, "qr_validation");
    assert_eq!(l.reason, "not_json");
    assert_eq!(l.dead_lettered_by, "stage");
    assert_eq!(l.queue.as_deref(), Some("campuspay.qr_validation"));
    assert_eq!(l.original_exchange.as_deref(), Some("pay.requests"));
    assert_eq!(l.original_routing_key.as_deref(), Some(key.as_str()));
    assert_eq!(l.body_bytes, 16);
    assert_eq!(l.replayed, 0);
    let age = l.age_secs.expect("an age");
    assert!((0..60).contains(&age), "{age}");

    // Listing loses nothing and the id stays the same.
    for _ in 0..3 {
        let again = dead_list(&env.config.amqp_url, LIMIT).await.unwrap();
        assert_eq!(again.letters.len(), 1);
        assert_eq!(again.letters[0].id, l.id);
        assert!(!again.more);
    }
    depth_becomes(&env, DEAD_QUEUE, 1).await;
    // The limit bounds what is read.
    assert!(matches!(
        dead_list(&env.config.amqp_url, 0).await,
        Err(QueuesError::BadLimit(0))
    ));

    // `show` decodes it (not JSON, not a batch: hex and text) and gives it back.
    let shown = queues::dead_show(&env.config.amqp_url, &l.id, LIMIT)
        .await
        .unwrap();
    assert_eq!(shown.len(), 1);
    match &shown[0].body {
        queues::Body::Hex { text, .. } => assert_eq!(text.as_deref(), Some("this is not json")),
        other => panic!("{other:?}"),
    }
    assert_eq!(shown[0].headers["x-campuspay-reason"], "not_json");
    depth_becomes(&env, DEAD_QUEUE, 1).await;
    assert!(matches!(
        queues::dead_show(&env.config.amqp_url, "000000000000", LIMIT).await,
        Err(QueuesError::NotFound { .. })
    ));
}

#[actix_rt::test]
async fn broker_dead_letters_are_read_from_x_death_and_replay_to_their_queue() {
    // No stage runs: a message is rejected from campuspay.fee by hand, as a stage's broker
    // delivery limit would.
    let env = TestEnv::empty().await;
    let p = publisher(&env).await;
    p.publish(Outgoing::binary(STAGE, "fee".into(), vec![2, 1, 2, 3]))
        .await
        .unwrap();
    let channel = env.conn.create_channel().await.unwrap();
    let reject = |channel: lapin::Channel| async move {
        let every = Duration::from_millis(100);
        let m = eventually("a message on campuspay.fee", WAIT, every, || async {
            channel
                .basic_get("campuspay.fee".into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap()
                .ok_or_else(|| "the queue is empty".to_owned())
        })
        .await;
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    };
    reject(channel.clone()).await;
    let letters = dead_until(&env, "a broker dead letter", |l| l.len() == 1).await;
    let l = &letters[0];
    assert_eq!(l.dead_lettered_by, "broker");
    assert_eq!(l.stage, "fee");
    assert_eq!(l.reason, "rejected");
    assert_eq!(l.queue.as_deref(), Some("campuspay.fee"));
    assert_eq!(l.original_exchange.as_deref(), Some(STAGE));
    assert_eq!(l.original_routing_key.as_deref(), Some("fee"));
    assert!(l.age_secs.is_some_and(|a| (0..60).contains(&a)), "{l:?}");

    let report = dead_replay(
        &env.config.amqp_url,
        &Selection::All {
            stage: Some("fee".into()),
        },
        LIMIT,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.replayed.len(), 1);
    assert_eq!(report.replayed[0].exchange, STAGE);
    assert_eq!(report.replayed[0].routing_key, "fee");
    depth_becomes(&env, "campuspay.fee", 1).await;
    depth_becomes(&env, DEAD_QUEUE, 0).await;

    // Dead again: the broker's history and the replay count both show.
    reject(channel).await;
    let letters = dead_until(&env, "the dead letter again", |l| l.len() == 1).await;
    assert_eq!(letters[0].reason, "rejected");
    assert_eq!(letters[0].replayed, 1);
    let shown = queues::dead_show(&env.config.amqp_url, &letters[0].id, LIMIT)
        .await
        .unwrap();
    assert_eq!(shown[0].headers["x-death"][0]["count"], 2);
    assert_eq!(shown[0].headers["x-campuspay-replayed"], "1");
}

fn declined_item(request_id: RequestId) -> PaymentItem {
    PaymentItem {
        request_id,
        mode: PaymentMode::ReverseScan,
        merchant_id: MerchantId::parse("m1").unwrap(),
        terminal_id: TerminalId::parse("t1").unwrap(),
        amount: Some(Amount::parse("5.00").unwrap()),
        code_hash: None,
        card: None,
        transaction_id: None,
        fee: None,
        fee_rule_id: None,
        pin_verified: false,
        outcome: Outcome::Done(FinalResult {
            status: TxState::Declined,
            reason: Some(DeclineReason::UnknownCode),
            processed_at: chrono::Utc::now(),
            balance_after: None,
        }),
    }
}

#[actix_rt::test]
async fn a_replayed_stage_batch_reaches_fanout_and_the_pos_gets_exactly_one_result() {
    let env = TestEnv::start().await;
    let mut pos = env.pos("m1", "t1").await;
    let rid = RequestId::new_random();
    let body = StageBatch {
        items: vec![declined_item(rid)],
    }
    .encode(env.config.keys.stage_mac.expose())
    .unwrap();
    // A dead letter exactly as the fan-out stage would have written it.
    let p = publisher(&env).await;
    p.publish(
        Outgoing::binary(DEAD, "fanout".into(), body)
            .with_header("x-campuspay-stage", "fanout")
            .with_header("x-campuspay-reason", "test_fault")
            .with_header("x-campuspay-queue", "campuspay.fanout")
            .with_header("x-original-exchange", STAGE)
            .with_header("x-original-routing-key", "fanout"),
    )
    .await
    .unwrap();
    let letters = dead_until(&env, "the batch", |l| l.len() == 1).await;
    assert_eq!(letters[0].stage, "fanout");
    assert_eq!(letters[0].reason, "test_fault");
    // `show` decodes the batch.
    let shown = queues::dead_show(&env.config.amqp_url, &letters[0].id, LIMIT)
        .await
        .unwrap();
    match &shown[0].body {
        queues::Body::StageBatch { items, .. } => {
            assert_eq!(items[0]["request_id"], rid.to_string())
        }
        other => panic!("{other:?}"),
    }
    assert_quiet(pos.results()).await;

    let report = dead_replay(
        &env.config.amqp_url,
        &Selection::Ids(vec![letters[0].id.clone()]),
        LIMIT,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.replayed.len(), 1);
    assert_eq!(report.replayed[0].exchange, STAGE);
    assert_eq!(report.replayed[0].routing_key, "fanout");
    assert_eq!(report.replayed[0].replayed, 1);

    let (r, raw) = pos
        .results()
        .next_raw(WAIT)
        .await
        .unwrap()
        .expect("the replayed result");
    schema_check("result.v1", &raw);
    assert_eq!(r.request_id, rid);
    assert_eq!(r.status, TxState::Declined);
    assert_eq!(r.reason, Some(DeclineReason::UnknownCode));
    assert_quiet(pos.results()).await;
    depth_becomes(&env, DEAD_QUEUE, 0).await;

    // Asking for an id that is not there replays nothing and says so.
    let report = dead_replay(
        &env.config.amqp_url,
        &Selection::Ids(vec!["feedfacecafe".into()]),
        LIMIT,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(!report.ok());
    assert_eq!(report.not_found, ["feedfacecafe"]);
}

#[actix_rt::test]
async fn a_replay_that_fails_again_is_dead_again_not_lost_and_marked_replayed() {
    let env = TestEnv::start().await;
    let pos = env.pos("m1", "t1").await;
    let key = pos.routing_key("scan");
    pos.publish_raw(&key, b"still not json".to_vec(), None)
        .await
        .unwrap();
    let first = dead_until(&env, "the dead letter", |l| l.len() == 1).await;
    for round in 1..=2u32 {
        let id = dead_list(&env.config.amqp_url, LIMIT)
            .await
            .unwrap()
            .letters[0]
            .id
            .clone();
        let report = dead_replay(
            &env.config.amqp_url,
            &Selection::Ids(vec![id]),
            LIMIT,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.replayed[0].exchange, "pay.requests");
        assert_eq!(report.replayed[0].routing_key, key);
        assert_eq!(report.replayed[0].replayed, round);
        // qr_validation dead-letters it again: exactly one dead letter, marked.
        let again = dead_until(&env, "the dead letter again", |l| {
            l.len() == 1 && l[0].replayed == round
        })
        .await;
        assert_eq!(again[0].stage, "qr_validation");
        assert_eq!(again[0].reason, "not_json");
        assert_eq!(again[0].original_routing_key.as_deref(), Some(key.as_str()));
        assert_eq!(again[0].body_bytes, first[0].body_bytes);
    }
    depth_becomes(&env, DEAD_QUEUE, 1).await;
}

#[actix_rt::test]
async fn drop_removes_exactly_the_selected_dead_letter_and_records_it() {
    let env = TestEnv::start().await;
    let pos = env.pos("m1", "t1").await;
    let key = pos.routing_key("scan");
    for body in ["poison one", "poison two"] {
        pos.publish_raw(&key, body.as_bytes().to_vec(), None)
            .await
            .unwrap();
    }
    let letters = dead_until(&env, "two dead letters", |l| l.len() == 2).await;
    let victim = letters.iter().find(|l| l.body_bytes == 10).unwrap().clone();
    let record = std::env::temp_dir().join(format!(
        "campuspay-drops-{}.jsonl",
        uuid::Uuid::new_v4().simple()
    ));
    let amqp = env.config.amqp_url.clone();

    // No reason, or an unknown id: nothing goes.
    assert!(matches!(
        dead_drop(&amqp, std::slice::from_ref(&victim.id), " ", &record, LIMIT).await,
        Err(QueuesError::NoReason)
    ));
    let r = dead_drop(&amqp, &["000000000000".into()], "typo", &record, LIMIT)
        .await
        .unwrap();
    assert!(r.dropped.is_empty());
    assert_eq!(r.not_found, ["000000000000"]);
    depth_becomes(&env, DEAD_QUEUE, 2).await;
    assert!(!record.exists());

    let r = dead_drop(
        &amqp,
        std::slice::from_ref(&victim.id),
        "firmware 1.2 sends junk; fixed in 1.3",
        &record,
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(r.dropped.len(), 1);
    let left = dead_list(&amqp, LIMIT).await.unwrap().letters;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, victim.id);
    depth_becomes(&env, DEAD_QUEUE, 1).await;

    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let rec: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(rec["id"], victim.id.as_str());
    assert_eq!(rec["vhost"], env.vhost.as_str());
    assert_eq!(rec["stage"], "qr_validation");
    assert_eq!(rec["dead_reason"], "not_json");
    assert_eq!(rec["drop_reason"], "firmware 1.2 sends junk; fixed in 1.3");
    assert_eq!(rec["original_routing_key"], key.as_str());
    assert_eq!(rec["body_bytes"], 10);
    assert!(rec["dropped_at"].is_string());
    let _ = std::fs::remove_file(&record);
}

#[actix_rt::test]
async fn topology_check_finds_no_drift_on_a_fresh_vhost_and_reports_changes() {
    let env = TestEnv::empty().await;
    // A terminal's result queue is not drift.
    let _pos = env.pos("m1", "t1").await;
    let r = env.check_topology().await;
    assert!(r.ok, "{:?}", r.drift);
    assert!(r.drift.is_empty());

    let channel = env.conn.create_channel().await.unwrap();
    channel
        .queue_unbind(
            "campuspay.fee".into(),
            STAGE.into(),
            "fee".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // The fan-out queue comes back as a classic queue, bound as before.
    channel
        .queue_delete("campuspay.fanout".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    channel
        .queue_declare(
            "campuspay.fanout".into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            "campuspay.fanout".into(),
            STAGE.into(),
            "fanout".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let r = env.check_topology().await;
    assert!(!r.ok);
    assert_eq!(
        drift_found(&r),
        [
            ("different", "queue", "campuspay.fanout"),
            (
                "missing",
                "binding",
                "pay.stage -> queue campuspay.fee key \"fee\""
            ),
        ],
        "{:?}",
        r.drift
    );
    assert!(r.drift.iter().all(|d| d.source == "broker"));
    assert!(r.drift[0].detail.contains("x-queue-type"), "{:?}", r.drift);
}
