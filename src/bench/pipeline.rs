//! The pipeline scenario: a seeded campus, worker processes running every stage (or the
//! stages in this process), the load generator, and where the time goes per stage.

use super::children::{free_local_addr, wait_consumers, Children};
use super::env::{close, fill_broker_counts, postgres_version, rabbit_version, BenchEnv};
use super::load::{self, LoadOptions, LoadResult, Mode};
use super::report::{Latency, Report, Segment};
use super::{
    base_report, blocking, check, codes_needed, fail, fill_from_load, finish, interrupted,
    log_path, mode_of, seed, terminal_specs, BenchArgs, BenchError,
};
use campuspay::auth::JwtKeys;
use campuspay::broker::connection::connect_retrying;
use campuspay::broker::topology::{topology, StageName};
use campuspay::config::Config;
use campuspay::db;
use diesel::RunQueryDsl;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(super) async fn bench_pipeline(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, BenchError> {
    let mode = mode_of(args);
    let mut env = BenchEnv::create(config, true, true, args.keep).await?;
    let outcome = pipeline_inner(args, config, mode, &env, &stop).await;
    env.cleanup();
    finish(&outcome?, args)
}

async fn pipeline_inner(
    args: &BenchArgs,
    config: &Config,
    mode: Mode,
    env: &BenchEnv,
    stop: &watch::Receiver<bool>,
) -> Result<Report, BenchError> {
    let db_url = env.db_url.clone().unwrap_or_default();
    let pool = {
        let url = db_url.clone();
        blocking(move || {
            let pool = db::pool(&url, 4)?;
            let mut conn = pool.get().map_err(db::DbError::from)?;
            db::migrate(&mut conn)?;
            drop(conn);
            Ok(pool)
        })
        .await?
    };
    let conn = connect_retrying(&env.amqp_url, "campuspay bench setup", 5).await?;
    campuspay::admin::queues::set_up(
        &conn,
        &env.mgmt,
        &env.name,
        &topology(config.settlement_shards),
        campuspay::admin::queues::ExistingPolicies::Reset,
    )
    .await
    .map_err(|e| BenchError::Failed(format!("setting up the broker: {e}")))?;
    close(conn, &[]).await;
    check(stop)?;

    let n_codes = codes_needed(args);
    eprintln!(
        "[bench] seeding {} cards, {} terminals, {} merchants, {n_codes} payment codes …",
        args.cards, args.terminals, args.merchants
    );
    let seeded_at = Instant::now();
    let opts = seed::SeedOptions {
        cards: args.cards.max(1),
        terminals: args.terminals.max(1),
        merchants: args.merchants.max(1),
        codes: n_codes,
        broke_percent: args.broke_percent,
        code_ttl: chrono::Duration::hours(6),
        code_prefix: config.code_prefix,
    };
    let key = config.keys.payment_codes.clone();
    let campus = {
        let pool = pool.clone();
        blocking(move || {
            let mut c = pool.get().map_err(db::DbError::from)?;
            let campus = seed::seed(&mut c, &opts, key.expose())?;
            // Fresh statistics, so the planner knows the tables are no longer empty.
            diesel::sql_query("ANALYZE")
                .execute(&mut c)
                .map_err(db::DbError::from)?;
            Ok(campus)
        })
        .await?
    };
    eprintln!(
        "[bench] seeded in {:.1} s",
        seeded_at.elapsed().as_secs_f64()
    );
    check(stop)?;

    let jwt = JwtKeys::new(&config.keys);
    let specs = terminal_specs(&campus.terminals, &jwt)?;
    let mut report = base_report(args, "pipeline", mode);
    report.cards = Some(args.cards);
    report.terminals = Some(args.terminals);
    report.prefetch = Some(config.prefetch);
    report.pos_connections = Some(args.pos_connections.unwrap_or(args.terminals));
    report.workers = Some(args.workers);
    report.machine.rabbitmq = rabbit_version(env).await;
    report.machine.postgres = postgres_version(db_url.clone()).await;

    // The worker: child processes, or the stages in this process (`--workers 0`).
    let mut children = Children { procs: Vec::new() };
    let mut metrics_urls = Vec::new();
    let mut in_process = None;
    if args.workers == 0 {
        let mut c = config.clone();
        c.database_url = db_url.clone();
        c.amqp_url = env.amqp_url.clone();
        in_process = Some(campuspay::pipeline::Pipeline::start(
            &c,
            pool.clone(),
            &StageName::ALL,
        ));
    } else {
        for i in 0..args.workers {
            let log = if args.workers == 1 {
                log_path(args, &env.name, "worker")
            } else {
                log_path(args, &env.name, &format!("worker-{i}"))
            };
            let envs = [
                ("DATABASE_URL", db_url.as_str()),
                ("AMQP_URL", env.amqp_url.as_str()),
            ];
            // Several workers split the settlement shards between them, as an operator would
            // (`run --prefer-shards`); each stands by on the others'.
            let shards: Vec<String> = config
                .settlement_shards
                .all()
                .filter(|s| s % args.workers == i)
                .map(|s| s.to_string())
                .collect();
            let shards = shards.join(",");
            let mut run_args = vec!["run"];
            if args.workers > 1 && !shards.is_empty() {
                run_args.extend(["--prefer-shards", shards.as_str()]);
            }
            // Every worker serves its operations listener (`/metrics`) on a free port of its
            // own; it is scraped only when asked for.
            let addr = free_local_addr()?;
            if args.worker_metrics {
                metrics_urls.push(format!("http://{addr}/metrics"));
            }
            let mut envs = envs.to_vec();
            envs.push(("CAMPUSPAY_OPS_ADDR", addr.as_str()));
            // As in production, the platform runs beside the stages (on a free port of its
            // own): its result hub consumes the cardholders' copies of the results, which would
            // otherwise fall into `pay.unrouted` and cost the broker nothing to deliver.
            let http_addr = free_local_addr()?;
            if args.no_result_hub {
                run_args.push("--no-http");
            } else {
                envs.push(("CAMPUSPAY_HTTP_ADDR", http_addr.as_str()));
            }
            children.spawn(&run_args, &envs, &log)?;
        }
    }
    let queues: Vec<String> = StageName::ALL
        .iter()
        .flat_map(|s| s.queues(config.settlement_shards))
        .collect();
    let (warmed_tx, warmed_rx) = tokio::sync::oneshot::channel::<()>();
    if !args.no_analyze {
        let pool = pool.clone();
        actix_rt::spawn(async move {
            if warmed_rx.await.is_ok() {
                let started = Instant::now();
                let done = db::run(&pool, |c| Ok(diesel::sql_query("ANALYZE").execute(c)?)).await;
                match done {
                    Ok(_) => eprintln!(
                        "[bench] warm-up over: ANALYZE took {:.2} s",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => eprintln!("[bench] ANALYZE failed: {e}"),
                }
            }
        });
    }
    let res = async {
        wait_consumers(&env.amqp_url, &queues, &mut children, stop).await?;
        load::run(
            LoadOptions {
                amqp_url: env.amqp_url.clone(),
                terminals: specs,
                codes: campus.codes,
                mode,
                warmup: Duration::from_secs(args.warmup),
                duration: Duration::from_secs(args.duration),
                timeout: Duration::from_secs(args.timeout),
                connections: args.pos_connections.unwrap_or(args.terminals),
                max_in_flight: 200_000,
                worker_pids: if args.workers == 0 {
                    vec![std::process::id()]
                } else {
                    children.pids()
                },
                management: (!args.no_queue_stats).then(|| (env.mgmt.clone(), env.name.clone())),
                label: "pipeline".into(),
                metrics_urls: metrics_urls.clone(),
                warmed_up: Some(warmed_tx),
            },
            interrupted(stop.clone()),
        )
        .await
        .map_err(fail)
    }
    .await;
    if let Some(p) = in_process {
        p.shutdown().await;
    }
    let worker_exited = children.any_exited();
    children.stop(Duration::from_secs(15));
    let res = res?;
    fill_from_load(&mut report, &res, Duration::from_secs(args.timeout));
    if let Some(why) = worker_exited {
        report
            .notes
            .push(format!("a worker exited during the run: {why}"));
    }
    if args.workers == 0 {
        report
            .notes
            .push("stages ran inside the bench process (--workers 0): 'worker' CPU includes the load generator".into());
    }
    if !*stop.borrow() {
        fill_broker_counts(&mut report, config, &env.name, res.samples.len()).await;
        report.stages = stage_segments(
            &pool,
            &res,
            report.warmup_secs,
            report.warmup_secs + report.duration_secs,
        )
        .await;
        if !args.no_verify {
            let ledger = db::run(&pool, |c| db::ledger::verify(c, 300)).await;
            match ledger {
                Ok(l) => {
                    report.ledger_ok = Some(l.ok);
                    if !l.ok {
                        report.notes.push(format!("ledger verify failed: {l:?}"));
                    }
                }
                Err(e) => report
                    .notes
                    .push(format!("ledger verify could not run: {e}")),
            }
        }
    }
    Ok(report)
}

/// Where the time goes, from timestamps: POS publish → order stage (PostgreSQL `created_at`,
/// the order stage's transaction start) → settlement (`processed_at`) → result at the POS.
async fn stage_segments(pool: &db::Pool, res: &LoadResult, lo: f64, hi: f64) -> Vec<Segment> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        request_id: uuid::Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: chrono::DateTime<chrono::Utc>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        processed_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let Some(wall) = res.started_wall else {
        return Vec::new();
    };
    let rows = db::run(pool, |c| {
        Ok(diesel::sql_query(
            "SELECT request_id, created_at, processed_at FROM transactions WHERE state = 'approved'",
        )
        .load::<Row>(c)?)
    })
    .await;
    let Ok(rows) = rows else {
        return Vec::new();
    };
    let by_id: HashMap<
        uuid::Uuid,
        (
            chrono::DateTime<chrono::Utc>,
            Option<chrono::DateTime<chrono::Utc>>,
        ),
    > = rows
        .into_iter()
        .map(|r| (r.request_id, (r.created_at, r.processed_at)))
        .collect();
    let start: chrono::DateTime<chrono::Utc> = wall.into();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    let us = |d: chrono::TimeDelta| {
        u32::try_from(d.num_microseconds().unwrap_or(0).max(0)).unwrap_or(u32::MAX)
    };
    for s in res.samples.iter().filter(|s| s.sent >= lo && s.sent < hi) {
        let Some((created, Some(processed))) = by_id.get(&s.request_id) else {
            continue;
        };
        let sent = start + chrono::TimeDelta::microseconds((s.sent * 1e6) as i64);
        let recv = sent + chrono::TimeDelta::microseconds(i64::from(s.latency_us));
        a.push(us(*created - sent));
        b.push(us(*processed - *created));
        c.push(us(recv - *processed));
    }
    [
        (
            "POS publish → order stage starts (qr_validation + 2 queues)",
            a,
        ),
        ("order → settlement decides (order, fee + 2 queues)", b),
        ("settlement → result at POS (commit, fanout + 2 queues)", c),
    ]
    .into_iter()
    .filter_map(|(name, v)| {
        let l = Latency::of(v)?;
        Some(Segment {
            name: name.into(),
            p50_ms: l.p50_ms,
            p90_ms: l.p90_ms,
            p99_ms: l.p99_ms,
            mean_ms: l.mean_ms,
        })
    })
    .collect()
}
