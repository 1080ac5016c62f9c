//! `campuspay migrate`, `topology` and `run`: setting up the database and the broker, and
//! running the pipeline stages until a signal.

use super::{pool, CliError};
use campuspay::admin::management::Management;
use campuspay::admin::queues::{self, ExistingPolicies};
use campuspay::broker::connection::connect_retrying;
use campuspay::broker::topology::{self, StageName};
use campuspay::config::Config;
use campuspay::db;
use campuspay::pipeline::Pipeline;
use std::process::ExitCode;

pub(super) async fn migrate(config: Config) -> Result<ExitCode, CliError> {
    let pool = pool(&config).await?;
    let applied = db::run(&pool, db::migrate).await?;
    outln!("migrations applied: {}", applied.len());
    for m in applied {
        outln!("  {m}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn topology(
    print_definitions: bool,
    reset_policies: bool,
    config: Config,
) -> Result<ExitCode, CliError> {
    let t = topology::topology(config.settlement_shards);
    if print_definitions {
        outln!(
            "{}",
            serde_json::to_string_pretty(&t.definitions_json()).unwrap_or_default()
        );
    } else {
        let conn = connect_retrying(&config.amqp_url, "campuspay topology", 5).await?;
        for q in topology::replace_outdated(&conn, &t).await? {
            outln!("replaced {q} (declared by an earlier version with other arguments)");
        }
        let mgmt = Management::new(&config.management_url).map_err(queues::QueuesError::from)?;
        let vhost = queues::vhost_of(&config.amqp_url)?;
        let existing = if reset_policies {
            ExistingPolicies::Reset
        } else {
            ExistingPolicies::Keep
        };
        let done = queues::set_up(&conn, &mgmt, &vhost, &t, existing).await?;
        let _ = conn.close(200, "done".into()).await;
        outln!(
            "policies: {} set, {} kept as they are{}",
            done.policies_set.len(),
            done.policies_kept.len(),
            if done.policies_kept.is_empty() {
                ""
            } else {
                " (--reset-policies puts the code's back)"
            }
        );
        for q in &done.queues_kept_with_arguments {
            outln!(
                "kept {q}: an earlier version gave it its limits as queue arguments, which \
                 override the policies; drain it, delete it and run campuspay topology again \
                 to let the policies apply"
            );
        }
        outln!(
            "declared {} exchanges, {} queues, {} bindings",
            t.exchanges.len(),
            t.queues.len(),
            t.bindings.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run(
    stages: Vec<super::StageArg>,
    no_http: bool,
    prefer_shards: Vec<u32>,
    config: Config,
) -> Result<ExitCode, CliError> {
    // Listening for SIGTERM from the start: one that arrives while the process is still
    // connecting (a deploy that stops what it just started) then ends in a graceful shutdown
    // and exit 0 once it is up, instead of the signal's default, an abrupt kill.
    let stop = StopSignal::listen();
    let shards = config.settlement_shards;
    if let Some(bad) = prefer_shards.iter().find(|s| **s >= shards.count()) {
        return Err(CliError::Usage(format!(
            "--prefer-shards: there is no shard {bad} (shards are 0 to {}, CAMPUSPAY_SETTLEMENT_SHARDS={})",
            shards.count() - 1,
            shards.count()
        )));
    }
    let mut config = config;
    if !prefer_shards.is_empty() {
        config.preferred_shards = Some(prefer_shards);
    }
    let stages: Vec<StageName> = if stages.is_empty() {
        StageName::ALL.to_vec()
    } else {
        stages.into_iter().map(StageName::from).collect()
    };
    if stages.contains(&StageName::Fee) || stages.contains(&StageName::Settlement) {
        refuse_stranded_shards(&config).await?;
    }
    let pool = pool(&config).await?;
    let consumers = campuspay::health::Consumers::default();
    let ops = match config.ops_addr.resolve(!no_http) {
        None => None,
        Some(addr) => {
            let readiness = campuspay::platform::operations::Readiness {
                pool: Some(pool.clone()),
                consumers: consumers.clone(),
            };
            Some(
                campuspay::platform::operations::OpsListener::start(addr, readiness).map_err(
                    |source| CliError::Serve {
                        addr: addr.to_owned(),
                        source,
                    },
                )?,
            )
        }
    };
    let pipeline = Pipeline::start_reporting(&config, pool.clone(), &stages, consumers);
    let platform = if no_http {
        None
    } else {
        Some(
            campuspay::platform::Platform::start(&config, pool, &config.http_addr).map_err(
                |source| CliError::Serve {
                    addr: config.http_addr.clone(),
                    source,
                },
            )?,
        )
    };
    log::info!(
        "running stages: {}",
        stages
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    stop.received().await;
    log::info!("shutting down: finishing in-flight batches");
    if let Some(p) = platform {
        p.stop().await;
    }
    pipeline.shutdown().await;
    if let Some(ops) = ops {
        ops.stop().await;
    }
    log::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Refuses to route to, or consume, fewer settlement shards than hold messages: after a lowered
/// `CAMPUSPAY_SETTLEMENT_SHARDS` the cards of the shards beyond it would wait forever. When the
/// broker cannot be reached now, starts anyway (the consumers retry) with a warning.
async fn refuse_stranded_shards(config: &Config) -> Result<(), CliError> {
    let shards = config.settlement_shards;
    let conn = match connect_retrying(&config.amqp_url, "campuspay run (shard check)", 3).await {
        Ok(c) => c,
        Err(e) => {
            log::warn!("cannot check the settlement shards now ({e}); starting anyway");
            return Ok(());
        }
    };
    let stranded = topology::stranded_shards(&conn, shards).await;
    let _ = conn.close(200, "checked".into()).await;
    let stranded = stranded?;
    if stranded.is_empty() {
        return Ok(());
    }
    let list = stranded
        .iter()
        .map(|(q, n)| format!("{q} ({n} messages)"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(CliError::Refused(format!(
        "CAMPUSPAY_SETTLEMENT_SHARDS={} but {list} still hold payments that no process would read: run with the previous shard count until those queues are empty (docs/CLUSTER.md, \"Changing the shard count\")",
        shards.count()
    )))
}

/// SIGTERM or Ctrl-C, listened for from `listen` on.
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    fn listen() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignal {
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    async fn received(self) {
        #[cfg(unix)]
        if let Some(mut term) = self.term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
