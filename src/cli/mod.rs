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

/// The exit statuses of every `campuspay` command (README, "Exit status"); `examples/pos.py`
/// uses the same.
pub mod exit {
    /// Done; for a payment: approved.
    pub const OK: u8 = 0;
    /// An error (a message on standard error).
    pub const ERROR: u8 = 1;
    /// The command line is wrong (clap's own status).
    pub const USAGE: u8 = 2;
    /// The payment (or the request) was declined.
    pub const DECLINED: u8 = 3;
    /// No final outcome yet, or none known: still pending, or no answer in time. Ask again
    /// with the same request id (`pos query`).
    pub const UNKNOWN: u8 = 4;
}

const EXIT_STATUS_HELP: &str = "\
Exit status: 0 ok (a payment approved), 1 error, 2 usage error, 3 declined, 4 pending or
unknown outcome (ask again with the same --request-id).";

#[derive(Debug, Parser)]
#[command(
    name = "campuspay",
    version,
    about = "Campus-card QR payments: pipeline, admin and simulators",
    after_long_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Declare exchanges, queues and bindings on the broker, and the policies that set the
    /// queues' limits (through the management API, RABBITMQ_MANAGEMENT_URL).
    #[command(after_long_help = "\
Examples:
  campuspay topology                      # missing policies, then exchanges, queues, bindings
  campuspay topology --reset-policies     # also put back policies an operator changed
  campuspay topology --print-definitions > definitions.json

Queue limits (length, overflow, delivery limit, dead-lettering, TTL) are policies named
campuspay-*: change one with rabbitmqctl set_policy or the management UI, no queue is
redeclared. campuspay topology leaves existing policies as they are unless --reset-policies;
campuspay admin topology check lists tuned policies as notes and broken ones as drift.")]
    Topology {
        /// Print the topology as RabbitMQ definitions JSON instead of declaring it.
        #[arg(long)]
        print_definitions: bool,
        /// Overwrite existing campuspay-* policies with the code's definitions (default: only
        /// create missing ones, keeping what an operator tuned).
        #[arg(long, conflicts_with = "print_definitions")]
        reset_policies: bool,
    },
    /// Run pipeline stages (all by default) until SIGTERM or Ctrl-C.
    #[command(after_long_help = "\
Examples:
  campuspay run                                   # every stage and the HTTP platform
  campuspay run --no-http --stages settlement,fanout --prefer-shards 0,1
  CAMPUSPAY_OPS_ADDR=127.0.0.1:9190 campuspay run --no-http --stages qr_validation,order,fee

Every process serves /healthz, /readyz and /metrics on CAMPUSPAY_OPS_ADDR.")]
    Run {
        /// Comma-separated subset of the stages (default: all).
        #[arg(long, value_delimiter = ',', value_enum)]
        stages: Vec<StageArg>,
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
    #[command(after_long_help = "\
Example:
  campuspay qr decode '00020101021126…6304ABCD'")]
    Qr {
        #[command(subcommand)]
        command: qr::QrCommand,
    },
    /// Back-office commands.
    #[command(after_long_help = "\
Examples:
  campuspay admin merchant add --id canteen1 --name 'North Canteen'
  campuspay admin terminal add --merchant canteen1 --id t1
  campuspay admin card add --user s001 --name 'Li Hua' --identity student
  campuspay admin card topup --user s001 --amount 100.00
  campuspay admin fee set --identity external --rate 0.10
  campuspay admin queues
  campuspay admin verify")]
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Simulated phone.
    #[command(after_long_help = "\
Examples:
  campuspay phone codes --user s001
  campuspay phone scan --user s001 --qr \"$(cat till.txt)\" --amount 12.50
  campuspay phone confirm --user s001 --pin 135790")]
    Phone {
        #[command(subcommand)]
        command: phone::PhoneCommand,
    },
    /// Simulated POS terminal.
    #[command(after_long_help = "\
Examples:
  campuspay pos pay --merchant canteen1 --terminal t1 --code 880123456789012345 --amount 12.50
  campuspay pos query --merchant canteen1 --terminal t1 --request-id 6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10

Exit status: 0 approved, 1 error, 2 usage error, 3 declined, 4 pending or unknown outcome
(no final result in time: ask with `pos query` and the same --request-id).")]
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
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Then keep the pipeline and the platform (CAMPUSPAY_HTTP_ADDR) running, as `run`
        /// does, so a person can open the wallet and pay at a simulated till.
        #[arg(long)]
        serve: bool,
    },
    /// Measure throughput and latency on a fresh database and vhost (docs/PERFORMANCE.md).
    Bench(Box<crate::bench::BenchArgs>),
    /// Print a shell completion script.
    #[command(after_long_help = "\
Examples:
  campuspay completions bash > /etc/bash_completion.d/campuspay
  campuspay completions zsh > \"${fpath[1]}/_campuspay\"
  campuspay completions fish > ~/.config/fish/completions/campuspay.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A cardholder's identity on the command line (clap lists the values in the help).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IdentityArg {
    Student,
    Staff,
    /// Short-term visitors, contractors.
    Temporary,
    /// Off-campus people.
    External,
}

impl From<IdentityArg> for campuspay::domain::Identity {
    fn from(a: IdentityArg) -> Self {
        use campuspay::domain::Identity;
        match a {
            IdentityArg::Student => Identity::Student,
            IdentityArg::Staff => Identity::Staff,
            IdentityArg::Temporary => Identity::Temporary,
            IdentityArg::External => Identity::External,
        }
    }
}

/// A pipeline stage on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StageArg {
    QrValidation,
    Order,
    Fee,
    Settlement,
    Fanout,
}

impl From<StageArg> for campuspay::broker::topology::StageName {
    fn from(a: StageArg) -> Self {
        use campuspay::broker::topology::StageName;
        match a {
            StageArg::QrValidation => StageName::QrValidation,
            StageArg::Order => StageName::Order,
            StageArg::Fee => StageName::Fee,
            StageArg::Settlement => StageName::Settlement,
            StageArg::Fanout => StageName::Fanout,
        }
    }
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
            CliError::Usage(_) => ExitCode::from(exit::USAGE),
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
            | CliError::Task(_) => ExitCode::from(exit::ERROR),
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
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "campuspay",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
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
        Command::Topology {
            print_definitions,
            reset_policies,
        } => run::topology(print_definitions, reset_policies, config).await,
        Command::Qr { command } => Ok(qr::run(command)),
        Command::Completions { .. } => Ok(ExitCode::SUCCESS),
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command, with its command path, that has no help text.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name());
        if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
            out.push(format!("{path} (the command itself)"));
        }
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &path, out);
        }
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text:\n{}", missing.join("\n"));
    }
}
