//! The `campuspay` command line (DESIGN.md §8). Verbs and flags here are pinned: admin scripts
//! depend on them. Every command that prints data has `--json`.

use crate::auth::JwtKeys;
use crate::broker::connection::connect_retrying;
use crate::broker::topology::{self, provision_result_queue, StageName};
use crate::config::Config;
use crate::db::{self, admin, DbError};
use crate::domain::{
    Amount, FeeRate, Identity, MerchantId, PaymentCode, RequestId, TerminalId, UserId,
};
use crate::messages::external::{pos_result_key, user_result_key};
use crate::pipeline::Pipeline;
use crate::sim::{self, pos::Pos};
use crate::tsm;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

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
        command: QrCommand,
    },
    /// Back-office commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Simulated phone.
    Phone {
        #[command(subcommand)]
        command: PhoneCommand,
    },
    /// Simulated POS terminal.
    Pos {
        #[command(subcommand)]
        command: PosCommand,
    },
    /// Seed a demo campus and run a scripted lunch hour through the whole pipeline.
    Demo {
        /// Ordinary payments (scripted failures come on top).
        #[arg(long, default_value_t = 240)]
        payments: usize,
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput and latency on a fresh database and vhost (docs/PERFORMANCE.md).
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(Debug, Subcommand)]
pub enum QrCommand {
    /// Print every field of any EMV merchant-presented payload and whether its CRC is valid.
    Decode {
        payload: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminQrCommand {
    /// A printable static merchant QR code (merchant only, or merchant + terminal).
    Static {
        #[arg(long)]
        merchant: MerchantId,
        #[arg(long)]
        terminal: Option<TerminalId>,
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Queues, dead letters and topology drift (broker only; see `crate::admin::queues`).
    #[command(flatten)]
    Broker(crate::admin::queues::BrokerAdminCommand),
    /// Refund an approved payment, fully or partly (the 搭伙费 in proportion).
    Refund {
        #[arg(long)]
        transaction: uuid::Uuid,
        /// Default: everything that remains.
        #[arg(long, value_parser = parse_amount)]
        amount: Option<Amount>,
        /// Idempotency key: the same id never refunds twice (default: a fresh one).
        #[arg(long)]
        request_id: Option<uuid::Uuid>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Subsidies (补助).
    Subsidy {
        #[command(subcommand)]
        command: SubsidyCommand,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Merchant QR codes.
    Qr {
        #[command(subcommand)]
        command: AdminQrCommand,
    },
    /// Issue a cardholder token for the phone API.
    /// Issue a token: a cardholder's for the phone API (`--user`), or an operator's for
    /// `/admin/v1` (`--admin NAME`).
    Token {
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        user: Option<UserId>,
        #[arg(long)]
        admin: Option<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
        #[arg(long)]
        json: bool,
    },
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    Terminal {
        #[command(subcommand)]
        command: TerminalCommand,
    },
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    Fee {
        #[command(subcommand)]
        command: FeeCommand,
    },
    /// Check the ledger invariants; exits non-zero when any is broken.
    Verify {
        /// A request still `created` after this many seconds counts as stuck.
        #[arg(long, default_value_t = 300)]
        stuck_after: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubsidyCommand {
    /// Credit many cards from a CSV file (`user_id,amount[,memo]`), idempotently.
    Import {
        file: std::path::PathBuf,
        /// Name of this subsidy run; re-importing under the same name never credits a line twice
        /// (default: the file's content hash).
        #[arg(long)]
        batch: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per merchant: count, gross, fees, refunds and net of one campus day, tied out to the ledger.
    Daily {
        /// YYYY-MM-DD in campus time (CAMPUSPAY_UTC_OFFSET); default today.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    Add {
        #[arg(long)]
        id: MerchantId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    /// Register a terminal, provision its result queue and print its token.
    Add {
        #[arg(long)]
        merchant: MerchantId,
        #[arg(long)]
        id: TerminalId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Report a card lost (挂失): payments are declined `card_frozen`; unused codes are revoked.
    Freeze {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        json: bool,
    },
    /// Lift a freeze (解挂). The phone needs a new batch of payment codes.
    Unfreeze {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        json: bool,
    },
    /// Show or override a card's limits (defaults come from its identity).
    Limits {
        #[arg(long)]
        user: UserId,
        #[arg(long, value_parser = parse_amount)]
        per_txn: Option<Amount>,
        #[arg(long, value_parser = parse_amount)]
        daily: Option<Amount>,
        /// Above this a forward-scan payment needs the PIN and a reverse scan is declined.
        #[arg(long, value_parser = parse_amount)]
        password_free: Option<Amount>,
        #[arg(long)]
        json: bool,
    },
    /// Set the card's 6-digit payment PIN (stored only as a keyed hash).
    Pin {
        #[arg(long)]
        user: UserId,
        #[arg(long, env = "CAMPUSPAY_PIN", hide_env_values = true)]
        pin: String,
    },
    Add {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        identity: Identity,
        #[arg(long)]
        json: bool,
    },
    Topup {
        #[arg(long)]
        user: UserId,
        #[arg(long, value_parser = parse_amount)]
        amount: Amount,
        /// Idempotency key: the same id never credits twice (default: a fresh one).
        #[arg(long)]
        request_id: Option<uuid::Uuid>,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FeeCommand {
    /// Add a 搭伙费 rule, effective now.
    Set {
        #[arg(long)]
        identity: Identity,
        #[arg(long, value_parser = parse_rate)]
        rate: FeeRate,
        #[arg(long)]
        merchant: Option<MerchantId>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Ask the TSM for 10 one-time payment codes.
    Codes {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        json: bool,
    },
    /// Scan a merchant QR code and pay through the platform's HTTP API, step by step.
    Scan {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        qr: String,
        /// The amount to pay (static codes only).
        #[arg(long)]
        amount: Option<String>,
        /// The platform's base URL.
        #[arg(
            long,
            env = "CAMPUSPAY_PLATFORM_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        platform: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PosCommand {
    /// Scan a payment code: publish scan.v1, wait for the result on the terminal's queue.
    /// Exit status: 0 approved, 2 declined, 1 error (e.g. no result in time).
    Pay(PayArgs),
    /// Ask what became of an earlier request (query.v1): prints its result or its status.
    Query(FollowUpArgs),
    /// Cancel an earlier request (reversal.v1): voids it, or refunds it if it was approved.
    Reverse(FollowUpArgs),
    /// Ask the gateway for a dynamic QR code with an amount in it (dynamic_qr.v1).
    Qr {
        #[arg(long)]
        merchant: MerchantId,
        #[arg(long)]
        terminal: TerminalId,
        #[arg(long, value_parser = parse_amount)]
        amount: Amount,
        #[arg(long)]
        request_id: Option<RequestId>,
        #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FollowUpArgs {
    #[arg(long)]
    merchant: MerchantId,
    #[arg(long)]
    terminal: TerminalId,
    /// The request_id of the earlier scan.
    #[arg(long)]
    request_id: RequestId,
    #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct PayArgs {
    #[arg(long)]
    merchant: MerchantId,
    #[arg(long)]
    terminal: TerminalId,
    #[arg(long, value_parser = parse_code)]
    code: PaymentCode,
    #[arg(long, value_parser = parse_amount)]
    amount: Amount,
    /// Reuse on retries: the same request never moves money twice.
    #[arg(long)]
    request_id: Option<RequestId>,
    /// The terminal's token (from `admin terminal add`); default: minted with CAMPUSPAY_JWT_SECRET.
    #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    #[arg(long)]
    json: bool,
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    Amount::parse(s).map_err(|e| e.to_string())
}
fn parse_rate(s: &str) -> Result<FeeRate, String> {
    FeeRate::parse(s).map_err(|e| e.to_string())
}
fn parse_code(s: &str) -> Result<PaymentCode, String> {
    PaymentCode::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("{0}")]
    Failed(String),
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human(value));
    }
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let system = actix_rt::System::new();
    match system.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn pool(config: &Config) -> Result<db::Pool, CliError> {
    let url = config.database_url.clone();
    let size = config.db_pool_size;
    // Building the pool opens a connection: keep that off the async thread.
    tokio::task::spawn_blocking(move || db::pool(&url, size))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(CliError::from)
}

async fn provision(config: &Config, key: &str) -> Result<(), CliError> {
    let conn = connect_retrying(&config.amqp_url, "campuspay admin", 3).await?;
    let channel = conn.create_channel().await?;
    provision_result_queue(&channel, key).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn dispatch(command: Command, config: Config) -> Result<ExitCode, CliError> {
    match command {
        Command::Migrate => {
            let pool = pool(&config).await?;
            let applied = db::run(&pool, db::migrate).await?;
            println!("migrations applied: {}", applied.len());
            for m in applied {
                println!("  {m}");
            }
        }
        Command::Topology { print_definitions } => {
            let t = topology::topology();
            if print_definitions {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&t.definitions_json()).unwrap_or_default()
                );
            } else {
                let conn = connect_retrying(&config.amqp_url, "campuspay topology", 5).await?;
                let channel = conn.create_channel().await?;
                t.declare(&channel).await?;
                let _ = conn.close(200, "done".into()).await;
                println!(
                    "declared {} exchanges, {} queues, {} bindings",
                    t.exchanges.len(),
                    t.queues.len(),
                    t.bindings.len()
                );
            }
        }
        Command::Qr {
            command: QrCommand::Decode { payload, json },
        } => {
            return Ok(qr_decode(&payload, json));
        }
        Command::Run {
            stages,
            no_http,
            prefer_shards,
        } => {
            if let Some(bad) = prefer_shards
                .iter()
                .find(|s| **s >= crate::broker::topology::SETTLEMENT_SHARDS)
            {
                return Err(CliError::Failed(format!(
                    "--prefer-shards: there is no shard {bad} (shards are 0 to {})",
                    crate::broker::topology::SETTLEMENT_SHARDS - 1
                )));
            }
            let mut config = config;
            if !prefer_shards.is_empty() {
                config.preferred_shards = Some(prefer_shards);
            }
            let stages: Vec<StageName> = if stages.is_empty() {
                StageName::ALL.to_vec()
            } else {
                stages
                    .iter()
                    .map(|s| {
                        StageName::parse(s.trim()).ok_or_else(|| {
                            CliError::Failed(format!(
                                "unknown stage {s:?}: expected qr_validation, order, fee, settlement or fanout"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            let pool = pool(&config).await?;
            let pipeline = Pipeline::start(&config, pool.clone(), &stages);
            let platform = if no_http {
                None
            } else {
                Some(
                    crate::platform::Platform::start(&config, pool, &config.http_addr).map_err(
                        |e| {
                            CliError::Failed(format!(
                                "cannot serve HTTP on {}: {e}",
                                config.http_addr
                            ))
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
            wait_for_signal().await;
            log::info!("shutting down: finishing in-flight batches");
            if let Some(p) = platform {
                p.stop().await;
            }
            pipeline.shutdown().await;
            log::info!("stopped");
        }
        // Broker-only admin commands must work while PostgreSQL is down: no pool.
        Command::Admin {
            command: AdminCommand::Broker(c),
        } => return broker_admin(c, &config).await,
        Command::Admin { command } => return admin(command, config).await,
        Command::Phone {
            command: PhoneCommand::Codes { user, json },
        } => {
            let pool = pool(&config).await?;
            let issued =
                tsm::issue(&pool, config.code_key.expose(), &user, config.code_ttl).await?;
            print(json, &issued, |i| {
                let mut s = format!(
                    "10 payment codes for {} (valid until {}):\n",
                    i.user_id, i.expires_at
                );
                for c in &i.codes {
                    s.push_str(&format!("  {c}\n"));
                }
                s.trim_end().to_owned()
            });
        }
        Command::Phone {
            command:
                PhoneCommand::Scan {
                    user,
                    qr,
                    amount,
                    platform,
                    json,
                },
        } => {
            let token = JwtKeys::new(config.jwt_secret.expose()).issue_cardholder(&user, 3600)?;
            let ok = tokio::task::spawn_blocking(move || {
                phone_scan(&platform, &token, &qr, amount.as_deref(), json)
            })
            .await
            .map_err(|e| CliError::Failed(e.to_string()))??;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Pos {
            command:
                PosCommand::Qr {
                    merchant,
                    terminal,
                    amount,
                    request_id,
                    token,
                    png,
                    svg,
                    timeout_secs,
                    json,
                },
        } => {
            let jwt = JwtKeys::new(config.jwt_secret.expose());
            let token = match token {
                Some(t) => t,
                None => jwt.issue_terminal(&merchant, &terminal)?,
            };
            let conn = connect_retrying(&config.amqp_url, "campuspay pos", 3).await?;
            let mut pos = Pos::open(&conn, merchant, terminal, token).await?;
            let rid = request_id.unwrap_or_else(RequestId::new_random);
            let issued = pos
                .request_dynamic_qr(rid, &amount.to_string(), Duration::from_secs(timeout_secs))
                .await?;
            let _ = conn.close(200, "done".into()).await;
            if let Some(payload) = &issued.payload {
                write_images(payload, png.as_deref(), svg.as_deref())?;
            }
            print(json, &issued, |i| match &i.payload {
                Some(p) => format!(
                    "dynamic QR for {} (expires {}):\n{p}",
                    i.amount.map(|a| a.to_string()).unwrap_or_default(),
                    i.expires_at.clone().unwrap_or_default()
                ),
                None => format!(
                    "declined: {}",
                    i.reason.map(|r| r.as_str()).unwrap_or("unknown")
                ),
            });
            if issued.payload.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Pos {
            command: PosCommand::Query(args),
        } => return follow_up(&config, "query", args).await,
        Command::Pos {
            command: PosCommand::Reverse(args),
        } => return follow_up(&config, "reversal", args).await,
        Command::Pos {
            command: PosCommand::Pay(args),
        } => {
            let jwt = JwtKeys::new(config.jwt_secret.expose());
            let token = match args.token {
                Some(t) => t,
                None => jwt.issue_terminal(&args.merchant, &args.terminal)?,
            };
            let conn = connect_retrying(&config.amqp_url, "campuspay pos", 3).await?;
            let mut pos = Pos::open(&conn, args.merchant, args.terminal, token).await?;
            let request_id = args.request_id.unwrap_or_else(RequestId::new_random);
            if !args.json {
                println!(
                    "scanning {} for {} (request {request_id}) …",
                    args.code, args.amount
                );
            }
            let result = pos
                .pay(
                    request_id,
                    args.code.expose(),
                    &args.amount.to_string(),
                    Duration::from_secs(args.timeout_secs),
                )
                .await?;
            let _ = conn.close(200, "done".into()).await;
            print(args.json, &result, |r| {
                format!(
                    "{}{} — amount {} fee {} total {} (transaction {})",
                    r.status.as_str().to_uppercase(),
                    r.reason.map(|x| format!(" ({x})")).unwrap_or_default(),
                    r.amount
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.fee,
                    r.total.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                    r.transaction_id
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "none".into()),
                )
            });
            // Scripts can tell a decline from an approval (and from an error, exit 1 too but
            // with a message on stderr).
            if result.status != crate::domain::TxState::Approved {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Bench(args) => return crate::bench::run(*args, config).await,
        Command::Demo { payments, json } => {
            let started = std::time::Instant::now();
            let report = sim::demo::run(&config, &sim::demo::DemoOptions { payments }).await?;
            print(json, &report, |r| demo_summary(r, started.elapsed()));
            if !report.ledger.ok
                || !report.unexpected.is_empty()
                || !report.forward.failures.is_empty()
            {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn demo_summary(r: &sim::demo::DemoReport, total: Duration) -> String {
    let mut s = String::new();
    s.push_str("\n== lunch hour summary ==\n");
    s.push_str("reverse scan (POS scans the phone):\n");
    s.push_str(&format!("payments        {}\n", r.payments));
    s.push_str(&format!("approved        {}\n", r.approved));
    for (reason, n) in &r.declined {
        s.push_str(&format!("declined        {n:>4}  {reason}\n"));
    }
    s.push_str(&format!("amount approved {} yuan\n", r.amount_approved));
    s.push_str(&format!(
        "fees collected  {} yuan (搭伙费)\n",
        r.fees_collected
    ));
    s.push_str(&format!(
        "latency         p50 {:.1} ms, p99 {:.1} ms (POS publish → POS result)\n",
        r.latency_p50_ms, r.latency_p99_ms
    ));
    s.push_str(&format!(
        "lunch hour took {:.1} s; whole demo {:.1} s\n",
        r.lunch_hour_secs,
        total.as_secs_f64()
    ));
    s.push_str(&format!(
        "ledger check    {} ({} postings, sum {}, fee income {})\n",
        if r.ledger.ok { "OK" } else { "BROKEN" },
        r.ledger.postings,
        r.ledger.postings_sum,
        r.ledger.fee_income
    ));
    s.push_str("forward scan (phone scans the merchant):\n");
    for (kind, (ok, bad)) in &r.forward.by_kind {
        s.push_str(&format!("  {kind:<16} {ok} approved, {bad} declined\n"));
    }
    s.push_str(&format!("  QR images in    {}/\n", r.forward.qr_images));
    for f in &r.forward.failures {
        s.push_str(&format!("  UNEXPECTED: {f}\n"));
    }
    if r.unexpected.is_empty() && r.forward.failures.is_empty() {
        s.push_str("every payment ended as scripted");
    } else {
        s.push_str(&format!("{} UNEXPECTED outcomes:\n", r.unexpected.len()));
        for u in &r.unexpected {
            s.push_str(&format!("  {u}\n"));
        }
    }
    s
}

async fn broker_admin(
    command: crate::admin::queues::BrokerAdminCommand,
    config: &Config,
) -> Result<ExitCode, CliError> {
    crate::admin::queues::run(command, config)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}

async fn admin(command: AdminCommand, config: Config) -> Result<ExitCode, CliError> {
    let pool = pool(&config).await?;
    match command {
        AdminCommand::Broker(c) => return broker_admin(c, &config).await,
        AdminCommand::Token {
            user,
            admin: operator,
            ttl,
            json,
        } => {
            let keys = JwtKeys::new(config.jwt_secret.expose());
            let ttl = ttl.clamp(60, 30 * 86_400);
            let (token, who) = match (user, operator) {
                (Some(user), _) => {
                    let u = user.clone();
                    db::run(&pool, move |c| admin::card_show(c, &u)).await?;
                    (
                        keys.issue_cardholder(&user, ttl)?,
                        serde_json::json!({"user_id": user}),
                    )
                }
                (None, Some(name)) => (
                    keys.issue_admin(&name, ttl)?,
                    serde_json::json!({"admin": name}),
                ),
                (None, None) => return Err(CliError::Failed("give --user or --admin".into())),
            };
            print(
                json,
                &serde_json::json!({"for": who, "token": token}),
                |_| token.clone(),
            );
        }
        AdminCommand::Qr {
            command:
                AdminQrCommand::Static {
                    merchant,
                    terminal,
                    png,
                    svg,
                    json,
                },
        } => {
            let (m, t) = (merchant.clone(), terminal.clone());
            let name = db::run(&pool, move |c| {
                match crate::db::forward::check_terminal(
                    c,
                    m.as_str(),
                    t.as_ref().map(|t| t.as_str()),
                )? {
                    Ok(name) => Ok(name),
                    Err(p) => Err(DbError::NotFound(p.to_string())),
                }
            })
            .await?;
            let payload = crate::domain::campus_qr::encode_campus(
                &crate::domain::campus_qr::MerchantQr::Static {
                    merchant_id: merchant.clone(),
                    terminal_id: terminal.clone(),
                },
                &name,
            )
            .map_err(|e| CliError::Failed(e.to_string()))?;
            let (m, t, p) = (merchant.clone(), terminal.clone(), payload.clone());
            db::run(&pool, move |c| {
                crate::db::forward::record_static(c, &m, t.as_ref(), &p)
            })
            .await?;
            write_images(&payload, png.as_deref(), svg.as_deref())?;
            print(
                json,
                &serde_json::json!({"merchant_id": merchant, "terminal_id": terminal, "payload": payload}),
                |_| payload.clone(),
            );
        }
        AdminCommand::Merchant {
            command: MerchantCommand::Add { id, name, json },
        } => {
            let i = id.clone();
            db::run(&pool, move |c| admin::add_merchant(c, &i, &name)).await?;
            print(json, &serde_json::json!({"merchant_id": id}), |_| {
                format!("merchant {id} added")
            });
        }
        AdminCommand::Terminal {
            command: TerminalCommand::Add { merchant, id, json },
        } => {
            let (m, t) = (merchant.clone(), id.clone());
            db::run(&pool, move |c| admin::add_terminal(c, &m, &t)).await?;
            let token = JwtKeys::new(config.jwt_secret.expose()).issue_terminal(&merchant, &id)?;
            let queue = pos_result_key(&merchant, &id);
            provision(&config, &queue).await?;
            let out = serde_json::json!({
                "merchant_id": merchant, "terminal_id": id, "result_queue": queue, "token": token,
            });
            print(json, &out, |_| {
                format!("terminal {merchant}/{id} added; results arrive on queue {queue}\ntoken: {token}")
            });
        }
        AdminCommand::Card { command } => match command {
            CardCommand::Add {
                user,
                name,
                identity,
                json,
            } => {
                let u = user.clone();
                let card_id =
                    db::run(&pool, move |c| admin::add_card(c, &u, &name, identity)).await?;
                provision(&config, &user_result_key(&user)).await?;
                print(
                    json,
                    &serde_json::json!({"user_id": user, "card_id": card_id, "identity": identity}),
                    |_| format!("card {card_id} issued to {user} ({identity})"),
                );
            }
            CardCommand::Topup {
                user,
                amount,
                request_id,
                json,
            } => {
                let u = user.clone();
                let entry = request_id.unwrap_or_else(uuid::Uuid::new_v4);
                let balance =
                    db::run(&pool, move |c| admin::topup(c, &u, amount, entry, "top-up")).await?;
                print(
                    json,
                    &serde_json::json!({"user_id": user, "amount": amount, "balance": balance, "entry_id": entry}),
                    |_| format!("topped up {amount} to {user}; balance {balance}"),
                );
            }
            CardCommand::Freeze { user, json } => {
                let u = user.clone();
                let out = db::run(&pool, move |c| crate::db::cards::freeze(c, &u)).await?;
                print(json, &out, |o| {
                    format!(
                        "card of {} frozen; {} unused codes revoked",
                        o.user_id, o.codes_revoked
                    )
                });
            }
            CardCommand::Unfreeze { user, json } => {
                let u = user.clone();
                let out = db::run(&pool, move |c| crate::db::cards::unfreeze(c, &u)).await?;
                print(json, &out, |o| {
                    format!("card of {} active again", o.user_id)
                });
            }
            CardCommand::Limits {
                user,
                per_txn,
                daily,
                password_free,
                json,
            } => {
                let u = user.clone();
                let l = db::run(&pool, move |c| {
                    crate::db::cards::set_limits(c, &u, per_txn, daily, password_free)
                })
                .await?;
                print(json, &l, |l| {
                    format!(
                        "{user}: per transaction {:.2}, daily {:.2}, password-free up to {:.2}{}",
                        l.per_txn_limit,
                        l.daily_limit,
                        l.password_free_limit,
                        if l.has_pin { " (PIN set)" } else { " (no PIN)" }
                    )
                });
            }
            CardCommand::Pin { user, pin } => {
                if !tsm::valid_pin(&pin) {
                    return Err(CliError::Failed("a PIN is exactly 6 digits".into()));
                }
                let hash = tsm::pin_hash(config.code_key.expose(), &user, &pin);
                let u = user.clone();
                db::run(&pool, move |c| crate::db::cards::set_pin_hash(c, &u, &hash)).await?;
                println!("PIN set for {user}");
            }
            CardCommand::Show { user, json } => {
                let u = user.clone();
                let view = db::run(&pool, move |c| admin::card_show(c, &u)).await?;
                print(json, &view, |v| {
                    let mut s = format!(
                        "{} ({}, {}) card {} [{}] balance {}",
                        v.user_id, v.name, v.identity, v.card_id, v.status, v.balance
                    );
                    for t in &v.recent {
                        s.push_str(&format!(
                            "\n  {} {} {:<9} {} fee {} at {}/{}{}",
                            t.created_at.format("%Y-%m-%d %H:%M:%S"),
                            t.mode,
                            t.state,
                            t.amount
                                .map(|a| a.to_string())
                                .unwrap_or_else(|| "-".into()),
                            t.fee.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                            t.merchant_id,
                            t.terminal_id,
                            t.reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        ));
                    }
                    s
                });
            }
        },
        AdminCommand::Fee {
            command:
                FeeCommand::Set {
                    identity,
                    rate,
                    merchant,
                    json,
                },
        } => {
            let m = merchant.clone();
            let id = db::run(&pool, move |c| {
                admin::set_fee(c, identity, rate, m.as_ref())
            })
            .await?;
            print(
                json,
                &serde_json::json!({"rule_id": id, "identity": identity, "rate": rate.to_string(), "merchant_id": merchant}),
                |_| {
                    format!(
                        "fee rule {id}: {identity} pays {rate} at {}",
                        merchant
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "every merchant".into())
                    )
                },
            );
        }
        AdminCommand::Refund {
            transaction,
            amount,
            request_id,
            reason,
            json,
        } => {
            let id = request_id.unwrap_or_else(uuid::Uuid::new_v4);
            let out = db::run(&pool, move |c| {
                crate::db::refunds::refund(c, transaction, amount, id, &reason)
            })
            .await?;
            print(json, &out, |o| {
                format!(
                    "refunded {} + fee {} of {} (refund {}); {} remains; card balance {}",
                    o.amount, o.fee, o.transaction_id, o.refund_id, o.remaining, o.balance_after
                )
            });
        }
        AdminCommand::Subsidy {
            command: SubsidyCommand::Import { file, batch, json },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))?;
            let report = db::run(&pool, move |c| {
                crate::db::subsidy::import(c, &text, batch.as_deref())
            })
            .await?;
            print(json, &report, |r| {
                let mut s = format!(
                    "{} rows: {} credited ({} yuan), {} already credited earlier, {} rejected",
                    r.rows
                        + r.rejected
                            .iter()
                            .filter(|x| !x.why.starts_with("no card"))
                            .count(),
                    r.credited,
                    r.total_credited,
                    r.already_credited,
                    r.rejected.len()
                );
                for x in &r.rejected {
                    s.push_str(&format!("\n  line {}: {} ({})", x.line, x.text, x.why));
                }
                s
            });
            if !report.rejected.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        AdminCommand::Report {
            command: ReportCommand::Daily { date, csv, json },
        } => {
            let offset = config.campus_offset;
            let date =
                date.unwrap_or_else(|| chrono::Utc::now().with_timezone(&offset).date_naive());
            let report = db::run(&pool, move |c| crate::db::report::daily(c, date, offset)).await?;
            if let Some(path) = csv {
                std::fs::write(&path, report.to_csv())
                    .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
                eprintln!("wrote {}", path.display());
            }
            print(json, &report, |r| {
                let mut s = format!("daily report {} (campus time)\n", r.date);
                s.push_str(&format!(
                    "{:<12} {:>6} {:>12} {:>10} {:>10} {:>12}\n",
                    "merchant", "count", "gross", "fees", "refunds", "net"
                ));
                for m in r.merchants.iter().chain(std::iter::once(&r.total)) {
                    s.push_str(&format!(
                        "{:<12} {:>6} {:>12} {:>10} {:>10} {:>12}\n",
                        m.merchant_id, m.count, m.gross, m.fees, m.refunds, m.net
                    ));
                }
                s.push_str(&format!(
                    "fee income {} (ledger {})\n",
                    r.fee_income, r.ledger_fee_income
                ));
                if r.ties_out {
                    s.push_str("ties out to the ledger");
                } else {
                    s.push_str("DOES NOT TIE OUT:");
                    for m in &r.mismatches {
                        s.push_str(&format!("\n  {m}"));
                    }
                }
                s
            });
            if !report.ties_out {
                return Ok(ExitCode::FAILURE);
            }
        }
        AdminCommand::Verify { stuck_after, json } => {
            let report = db::run(&pool, move |c| db::ledger::verify(c, stuck_after)).await?;
            print(json, &report, |r| {
                format!(
                    "ledger {}: {} postings summing to {}; {} unbalanced entries, {} account mismatches, {} negative cards, {} approved without posting, {} postings without approval, {} stuck requests",
                    if r.ok { "OK" } else { "BROKEN" },
                    r.postings,
                    r.postings_sum,
                    r.unbalanced_entries.len(),
                    r.account_mismatches.len(),
                    r.negative_cards.len(),
                    r.approved_without_posting.len(),
                    r.postings_without_approval.len(),
                    r.stuck_requests.len()
                )
            });
            if !report.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn write_images(
    payload: &str,
    png: Option<&std::path::Path>,
    svg: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let fail = |e: String| CliError::Failed(e);
    if let Some(path) = png {
        let bytes = crate::qr::render_png(payload).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = svg {
        let text = crate::qr::render_svg(payload).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The whole forward-scan flow from the command line; returns whether the payment was approved.
fn phone_scan(
    platform: &str,
    token: &str,
    qr: &str,
    amount: Option<&str>,
    json: bool,
) -> Result<bool, CliError> {
    let phone = sim::phone::Phone::new(platform, token);
    let step = |title: &str, a: &sim::phone::Answer| {
        if json {
            println!(
                "{}",
                serde_json::json!({"step": title, "http_status": a.status, "body": a.body})
            );
        } else {
            println!(
                "== {title} (HTTP {})\n{}",
                a.status,
                serde_json::to_string_pretty(&a.body).unwrap_or_default()
            );
        }
    };
    let rid = uuid::Uuid::new_v4().to_string();
    let order = phone.create_order(&rid, qr)?;
    step("scanned: order created", &order);
    if order.status != 201 {
        return Ok(false);
    }
    let id = order.body["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let paid = phone.pay(&id, amount)?;
    step("confirmed", &paid);
    if paid.status >= 400 {
        return Ok(false);
    }
    let done = phone.wait_final(&id, Duration::from_secs(30))?;
    step("result", &done);
    Ok(done.body["status"] == "approved")
}

fn qr_decode(payload: &str, json: bool) -> ExitCode {
    use crate::emv;
    match emv::describe(payload) {
        Ok(d) => {
            print(json, &d, |d| d.to_text());
            if d.crc_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "error": e.to_string()})
                );
            } else {
                eprintln!("not a valid EMV merchant-presented payload: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `pos query` / `pos reverse`: prints the JSON answer (result.v1 or query_status.v1).
async fn follow_up(config: &Config, verb: &str, args: FollowUpArgs) -> Result<ExitCode, CliError> {
    let token = match args.token {
        Some(t) => t,
        None => JwtKeys::new(config.jwt_secret.expose())
            .issue_terminal(&args.merchant, &args.terminal)?,
    };
    let conn = connect_retrying(&config.amqp_url, "campuspay pos", 3).await?;
    let mut pos = Pos::open(&conn, args.merchant, args.terminal, token).await?;
    pos.send_follow_up(verb, args.request_id).await?;
    let (kind, raw) = pos
        .results()
        .wait_any(
            &[
                crate::messages::external::RESULT_V1,
                crate::messages::external::QUERY_STATUS_V1,
            ],
            args.request_id,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
    let _ = conn.close(200, "done".into()).await;
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(if kind == crate::messages::external::RESULT_V1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
