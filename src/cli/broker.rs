//! `campuspay admin queues`, `admin queue purge`, `admin dead list|show|replay|drop` and
//! `admin topology check`: the clap types, the text rendering and the front end over
//! `campuspay::admin::queues`. Broker only: these run while PostgreSQL is down.

use super::print;
use campuspay::admin::queues::{
    check_limit, human_age, Body, DeadLetter, DeadLetterDetail, DeadListing, DropReport,
    PurgeConfirm, QueueOverview, QueueRow, QueuesError, ReplayReport, Selection, TopologyReport,
    DEFAULT_DEAD_LIMIT, DEFAULT_DROP_RECORD,
};
use campuspay::ops::{queues, Operator, Ops};
use std::path::PathBuf;
use std::process::ExitCode;

fn parse_limit(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    check_limit(n).map_err(|e| e.to_string())
}

/// `campuspay admin …` commands that need only the broker (no database): flattened into
/// `AdminCommand`, so they read `admin queues`, `admin queue purge`, `admin dead …`,
/// `admin topology check`.
#[derive(Debug, clap::Subcommand)]
pub enum BrokerAdminCommand {
    /// Every pipeline queue: type, ready, unacked, consumers, publish/deliver rates, warnings.
    ///
    /// Warnings: a stage queue with no consumer; a stage queue with more than 1000 ready
    /// messages whose deliver rate is not above its publish rate (backlog not draining); a
    /// queue not running; messages waiting to be dead-lettered; dead letters in pay.dead; a
    /// result queue at 90% of its max length. Rates and counts come from the management API's
    /// statistics, which lag by a few seconds.
    Queues {
        /// List every result queue (pos.*, user.*) instead of a summary.
        #[arg(long)]
        results: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Operate on one queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The dead letters in pay.dead: list, show, replay, drop.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// The broker topology.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Drop every ready message of a queue and print how many went.
    ///
    /// Refuses without --yes. Refuses the queues of the money-moving stages (order, fee,
    /// settlement.N) and pay.dead without --force as well: their messages are accepted
    /// payments (or dead letters kept for replay).
    Purge {
        /// The queue's name (e.g. `campuspay.fee`, `pos.m1.t1`).
        name: String,
        /// Confirm the purge.
        #[arg(long)]
        yes: bool,
        /// Purge even a money-moving stage queue or pay.dead.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadCommand {
    /// The dead letters with their id, stage, reason, origin and age; nothing is removed.
    List {
        /// Read at most this many dead letters (1..=10000).
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter decoded: headers, and the body as JSON, a stage batch, or hex.
    Show {
        /// The dead letter's id (as `admin dead list` prints it).
        id: String,
        /// Read at most this many dead letters from the head of pay.dead.
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-publish dead letters where they came from (confirmed), then remove them.
    ///
    /// Each gets `x-campuspay-replayed: <count>`, so one that fails again shows it.
    Replay {
        /// The dead letters to act on, by id (as `admin dead list` prints them).
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every dead letter read (up to --limit).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With --all: only those of this stage.
        #[arg(long, requires = "all")]
        stage: Option<String>,
        /// Read at most this many dead letters from the head of pay.dead.
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove dead letters for good, recording each drop first.
    ///
    /// Each drop (id, stage, reasons, origin, body size and SHA-256, times) is appended as a
    /// JSON line to --record (default: dead-letters-dropped.jsonl in the current directory)
    /// and fsync'd before the dead letter is removed. The body itself is not kept.
    Drop {
        /// The dead letters to act on, by id (as `admin dead list` prints them).
        #[arg(required = true)]
        ids: Vec<String>,
        /// Why they are dropped (recorded).
        #[arg(long)]
        reason: String,
        /// The JSON Lines file the drops are appended to.
        #[arg(long, default_value = DEFAULT_DROP_RECORD)]
        record: PathBuf,
        /// Read at most this many dead letters from the head of pay.dead.
        #[arg(long, default_value_t = DEFAULT_DEAD_LIMIT, value_parser = parse_limit)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TopologyCommand {
    /// Compare the broker (and the committed definitions file) with the code's topology;
    /// exits non-zero on drift.
    Check {
        /// The committed definitions (default: rabbitmq/definitions.json, else the copy built
        /// into this binary).
        #[arg(long)]
        definitions: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

fn opt_rate(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into())
}

fn overview_text(o: &QueueOverview) -> String {
    let mut s = format!(
        "{:<28} {:<8} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
        "QUEUE", "TYPE", "READY", "UNACKED", "CONSUMERS", "PUBLISH/s", "DELIVER/s"
    );
    let row = |r: &QueueRow| {
        format!(
            "{:<28} {:<8} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
            r.name,
            opt(&r.kind),
            opt(&r.ready),
            opt(&r.unacked),
            opt(&r.consumers),
            opt_rate(r.publish_rate),
            opt_rate(r.deliver_rate)
        )
    };
    for r in &o.pipeline {
        s.push_str(&row(r));
    }
    for g in &o.results {
        s.push_str(&format!(
            "result queues {}*: {} queues, {} ready, {} unacked, {} with a consumer\n",
            g.prefix, g.queues, g.ready, g.unacked, g.with_consumers
        ));
    }
    if let Some(list) = &o.result_queues {
        for r in list {
            s.push_str(&row(r));
        }
    }
    if o.warnings.is_empty() {
        s.push_str("no warnings");
    } else {
        s.push_str("warnings:");
        for w in &o.warnings {
            s.push_str(&format!("\n  ! {w}"));
        }
    }
    s
}

fn letter_line(l: &DeadLetter) -> String {
    let origin = match (&l.original_exchange, &l.original_routing_key) {
        (Some(e), Some(k)) => format!("{} -> {k}", if e.is_empty() { "(default)" } else { e }),
        _ => "?".into(),
    };
    format!(
        "{:<14} {:>7} {:<14} {:<28} {:<40}{}",
        l.id,
        l.age_secs.map(human_age).unwrap_or_else(|| "?".into()),
        l.stage,
        format!("{} ({})", l.reason, l.dead_lettered_by),
        origin,
        if l.replayed > 0 {
            format!(" replayed {}x", l.replayed)
        } else {
            String::new()
        }
    )
}

fn listing_text(l: &DeadListing) -> String {
    if l.letters.is_empty() {
        return format!("pay.dead in vhost {} is empty", l.vhost);
    }
    let mut s = format!(
        "{:<14} {:>7} {:<14} {:<28} {:<40}\n",
        "ID", "AGE", "STAGE", "REASON (BY)", "ORIGIN (EXCHANGE -> KEY)"
    );
    for d in &l.letters {
        s.push_str(&letter_line(d));
        s.push('\n');
    }
    s.push_str(&format!(
        "{} dead letters{}",
        l.letters.len(),
        if l.more {
            "; pay.dead holds more: raise --limit to see them"
        } else {
            ""
        }
    ));
    s
}

fn detail_text(details: &[DeadLetterDetail]) -> String {
    let mut s = String::new();
    if details.len() > 1 {
        s.push_str(&format!(
            "{} identical copies of this dead letter\n",
            details.len()
        ));
    }
    for d in details.iter().take(1) {
        s.push_str(&letter_line(&d.letter));
        s.push_str(&format!(
            "\nproperties: {}\nheaders:\n{}\n",
            d.properties,
            serde_json::to_string_pretty(&d.headers).unwrap_or_default()
        ));
        match &d.body {
            Body::Json { value } => s.push_str(&format!(
                "body (JSON):\n{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            )),
            Body::StageBatch { version, items } => s.push_str(&format!(
                "body (stage batch, version {version}):\n{}",
                serde_json::to_string_pretty(items).unwrap_or_default()
            )),
            Body::Hex {
                hex,
                text,
                truncated,
                note,
            } => {
                if let Some(n) = note {
                    s.push_str(&format!("note: {n}\n"));
                }
                s.push_str(&format!(
                    "body ({} bytes{}):\n{hex}",
                    d.letter.body_bytes,
                    if *truncated { ", truncated" } else { "" }
                ));
                if let Some(t) = text {
                    s.push_str(&format!("\nas text: {t:?}"));
                }
            }
        }
    }
    s
}

fn replay_text(r: &ReplayReport) -> String {
    let mut s = String::new();
    for x in &r.replayed {
        s.push_str(&format!(
            "replayed {} ({}) to {} -> {} (replay #{})\n",
            x.id, x.stage, x.exchange, x.routing_key, x.replayed
        ));
    }
    for x in &r.failed {
        s.push_str(&format!(
            "NOT replayed {} ({}): {}; it stays in pay.dead\n",
            x.id, x.stage, x.why
        ));
    }
    for id in &r.not_found {
        s.push_str(&format!(
            "not found: {id} (among {} read; raise --limit?)\n",
            r.examined
        ));
    }
    s.push_str(&format!(
        "{} replayed, {} failed, {} not found",
        r.replayed.len(),
        r.failed.len(),
        r.not_found.len()
    ));
    s
}

fn drop_text(r: &DropReport) -> String {
    let mut s = String::new();
    for x in &r.dropped {
        s.push_str(&format!(
            "dropped {} ({}, {}, {} bytes)\n",
            x.id, x.stage, x.dead_reason, x.body_bytes
        ));
    }
    for id in &r.not_found {
        s.push_str(&format!(
            "not found: {id} (among {} read; raise --limit?)\n",
            r.examined
        ));
    }
    s.push_str(&format!(
        "{} dropped; recorded in {}",
        r.dropped.len(),
        r.record_file
    ));
    s
}

fn topology_text(r: &TopologyReport) -> String {
    let mut s = String::new();
    for d in &r.drift {
        s.push_str(&format!(
            "DRIFT [{}] {} {} {}{}\n",
            d.source,
            d.problem,
            d.object,
            d.name,
            if d.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", d.detail)
            }
        ));
    }
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    if r.ok {
        s.push_str(&format!(
            "no drift: vhost {} and {} match the code's topology",
            r.vhost, r.definitions_file
        ));
    } else {
        s.push_str(&format!("{} differences", r.drift.len()));
    }
    s
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one broker admin command; the vhost is the path of `AMQP_URL`.
/// The broker verbs, through `ops::queues` like `/admin/v1`'s. `ops` may hold a database
/// pool that cannot connect: these verbs need only the broker (the operators' trail is then
/// logged instead).
pub(super) async fn run(
    command: BrokerAdminCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, QueuesError> {
    match command {
        BrokerAdminCommand::Queues { results, json } => {
            let o = queues::overview(ops, results).await?;
            print(json, &o, overview_text);
        }
        BrokerAdminCommand::Queue {
            command:
                QueueCommand::Purge {
                    name,
                    yes,
                    force,
                    json,
                },
        } => {
            let p = queues::purge(ops, me, &name, PurgeConfirm { yes, force }).await?;
            print(json, &p, |p| {
                format!(
                    "purged {} messages from {} (vhost {})",
                    p.purged, p.queue, p.vhost
                )
            });
        }
        BrokerAdminCommand::Dead { command } => match command {
            DeadCommand::List { limit, json } => {
                let l = queues::dead_list(ops, limit).await?;
                print(json, &l, listing_text);
            }
            DeadCommand::Show { id, limit, json } => {
                let d = queues::dead_show(ops, &id, limit).await?;
                print(json, &d, |d| detail_text(d));
            }
            DeadCommand::Replay {
                ids,
                all,
                stage,
                limit,
                json,
            } => {
                let selection = if all {
                    Selection::All { stage }
                } else {
                    Selection::Ids(ids)
                };
                let r = queues::dead_replay(ops, me, &selection, limit).await?;
                print(json, &r, replay_text);
                return Ok(exit(r.ok()));
            }
            DeadCommand::Drop {
                ids,
                reason,
                record,
                limit,
                json,
            } => {
                let r = queues::dead_drop(ops, me, &ids, &reason, &record, limit).await?;
                print(json, &r, drop_text);
                return Ok(exit(r.not_found.is_empty()));
            }
        },
        BrokerAdminCommand::Topology {
            command: TopologyCommand::Check { definitions, json },
        } => {
            let r = queues::topology_check(ops, definitions.as_deref()).await?;
            print(json, &r, topology_text);
            return Ok(exit(r.ok));
        }
    }
    Ok(ExitCode::SUCCESS)
}
