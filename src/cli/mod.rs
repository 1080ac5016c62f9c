//! The `campuspay` command line (the README's CLI reference). Verbs and flags here are pinned: admin scripts
//! depend on them. Every command that prints data has `--json`.
//!
//! One file per verb group, holding its clap types and its handler: `run` (migrate, topology,
//! run), `qr`, `admin` and the groups under it (`merchant`, `card`, `fee`, `token`, `reports`,
//! `broker`), `phone`, `pos`, `demo`. This file parses, dispatches, and holds what the groups
//! share.

mod admin;
mod broker;
mod card;
mod demo;
mod fee;
mod merchant;
mod phone;
mod pos;
mod qr;
mod reports;
mod run;
mod token;

use campuspay::config::Config;
use campuspay::db::{self, DbError};
use campuspay::domain::{Amount, FeeRate, PaymentCode};
use campuspay::sim;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "campuspay",
    version,
    about = "Campus-card QR payments: pipeline, admin and simulators"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Declare exchanges, queues and bindings on the broker.
    Topology {
        /// Print the topology as RabbitMQ definitions JSON instead of declaring it.
        #[arg(long)]
        print_definitions: bool,
    },
    /// Run pipeline stages (all by default) until SIGTERM or Ctrl-C.
    Run {
        /// Comma-separated subset: qr_validation,order,fee,settlement,fanout
        #[arg(long, value_delimiter = ',')]
        stages: Vec<String>,
        /// Do not serve the payment platform's HTTP API (CAMPUSPAY_HTTP_ADDR).
        #[arg(long)]
        no_http: bool,
        /// Settlement shards this process should be the active consumer of (e.g. `0,1`);
        /// on the others it stands by and registers after CAMPUSPAY_STANDBY_DELAY_MS, so it
        /// takes them over only if their process goes away. Default: all shards.
        #[arg(long, value_delimiter = ',')]
        prefer_shards: Vec<u32>,
    },
    /// Merchant QR payloads (EMV merchant-presented mode).
    Qr {
        #[command(subcommand)]
        command: qr::QrCommand,
    },
    /// Back-office commands.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Simulated phone.
    Phone {
        #[command(subcommand)]
        command: phone::PhoneCommand,
    },
    /// Simulated POS terminal.
    Pos {
        #[command(subcommand)]
        command: pos::PosCommand,
    },
    /// Seed a demo campus and run a scripted lunch hour through the whole pipeline; print the
    /// wallet's address and sign-in links for a few demo cardholders.
    Demo {
        /// Ordinary payments (scripted failures come on top).
        #[arg(long, default_value_t = 240)]
        payments: usize,
        #[arg(long)]
        json: bool,
        /// Then keep the pipeline and the platform (CAMPUSPAY_HTTP_ADDR) running, as `run`
        /// does, so a person can open the wallet and pay at a simulated till.
        #[arg(long)]
        serve: bool,
    },
    /// Measure throughput and latency on a fresh database and vhost (docs/PERFORMANCE.md).
    Bench(Box<crate::bench::BenchArgs>),
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    Amount::parse(s).map_err(|e| e.to_string())
}
fn parse_rate(s: &str) -> Result<FeeRate, String> {
    FeeRate::parse(s).map_err(|e| e.to_string())
}
/// Checks a typed code offline the way QR validation will (`CAMPUSPAY_CODE_PREFIX` or `28`).
fn parse_code(s: &str) -> Result<PaymentCode, String> {
    let prefix = campuspay::config::code_prefix().map_err(|e| e.to_string())?;
    PaymentCode::parse(s, prefix).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("configuration: {0}")]
    Config(#[from] campuspay::config::ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Broker(#[from] campuspay::broker::BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Auth(#[from] campuspay::auth::AuthError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    #[error(transparent)]
    Ops(#[from] campuspay::ops::OpsError),
    #[error(transparent)]
    Queues(#[from] campuspay::admin::queues::QueuesError),
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("QR image: {0}")]
    QrImage(#[from] campuspay::qr::RenderError),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Serve {
        addr: String,
        source: std::io::Error,
    },
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The command line asks for something that cannot be (clap checks the rest).
    #[error("{0}")]
    Usage(String),
    /// Starting would do harm (e.g. leave messages in queues nothing reads).
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// The exit status: 2 for a usage error, as clap's own, 1 for everything else.
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Config(_)
            | CliError::Refused(_)
            | CliError::Db(_)
            | CliError::Broker(_)
            | CliError::Amqp(_)
            | CliError::Auth(_)
            | CliError::Sim(_)
            | CliError::Bench(_)
            | CliError::Ops(_)
            | CliError::Queues(_)
            | CliError::File { .. }
            | CliError::QrImage(_)
            | CliError::Serve { .. }
            | CliError::Task(_) => ExitCode::FAILURE,
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        outln!("{}", human(value));
    }
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Decoding a QR payload needs no settings (and no secrets).
    if let Command::Qr { command } = cli.command {
        return qr::run(command);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every amqps:// connection of this process trusts the configured CA bundle.
    if let Err(e) = campuspay::broker::connection::trust_cas(config.amqp_ca.clone()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let system = actix_rt::System::new();
    match system.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn pool(config: &Config) -> Result<db::Pool, CliError> {
    let url = config.database_url.clone();
    let size = config.db_pool_size;
    // Building the pool opens a connection: keep that off the async thread.
    Ok(tokio::task::spawn_blocking(move || db::pool(&url, size)).await??)
}

async fn dispatch(command: Command, config: Config) -> Result<ExitCode, CliError> {
    match command {
        Command::Migrate => run::migrate(config).await,
        Command::Topology { print_definitions } => run::topology(print_definitions, config).await,
        Command::Qr { command } => Ok(qr::run(command)),
        Command::Run {
            stages,
            no_http,
            prefer_shards,
        } => run::run(stages, no_http, prefer_shards, config).await,
        // Broker-only admin commands must work while PostgreSQL is down: no pool.
        Command::Admin {
            command: admin::AdminCommand::Broker(c),
        } => admin::broker_admin(c, config).await,
        Command::Admin { command } => admin::run(command, config).await,
        Command::Phone { command } => phone::run(command, config).await,
        Command::Pos { command } => pos::run(command, config).await,
        Command::Bench(args) => Ok(crate::bench::run(*args, config).await?),
        Command::Demo {
            payments,
            json,
            serve,
        } => demo::run(payments, json, serve, config).await,
    }
}
