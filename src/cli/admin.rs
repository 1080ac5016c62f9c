//! `campuspay admin`: the back-office verbs. Each group's clap types and handler live in its own
//! file (`merchant`, `card`, `fee`, `token`, `qr`, `reports`); the broker-only verbs are
//! `broker`, over `campuspay::admin::queues`.

use super::{broker, card, fee, merchant, pool, qr, reports, token, CliError};
use campuspay::config::Config;
use campuspay::ops::{Operator, Ops};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Queues, dead letters and topology drift (broker only; see `campuspay::admin::queues`).
    #[command(flatten)]
    Broker(broker::BrokerAdminCommand),
    /// Refund an approved payment, fully or partly (the 搭伙费 in proportion).
    Refund(reports::RefundArgs),
    /// Subsidies (补助).
    Subsidy {
        #[command(subcommand)]
        command: reports::SubsidyCommand,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: reports::ReportCommand,
    },
    /// Merchant QR codes.
    Qr {
        #[command(subcommand)]
        command: qr::AdminQrCommand,
    },
    /// Issue a token: a cardholder's for the phone API (`--user`; `--link` for a one-time
    /// sign-in link to the wallet page instead), or an operator's for `/admin/v1`
    /// (`--admin NAME`).
    Token(token::TokenArgs),
    /// Merchants (canteens, shops).
    Merchant {
        #[command(subcommand)]
        command: merchant::MerchantCommand,
    },
    /// Terminals (tills): registration, token rotation, removal.
    Terminal {
        #[command(subcommand)]
        command: merchant::TerminalCommand,
    },
    /// Campus cards: issue, top up, freeze, limits, PIN.
    Card {
        #[command(subcommand)]
        command: card::CardCommand,
    },
    /// Fee (搭伙费) rules.
    Fee {
        #[command(subcommand)]
        command: fee::FeeCommand,
    },
    /// Check the ledger invariants; exits non-zero when any is broken.
    Verify(reports::VerifyArgs),
}

/// The broker-only verbs must work while PostgreSQL is down: their pool opens no connection
/// until the operators' trail is written, and a failure there is only logged.
pub(super) async fn broker_admin(
    command: broker::BrokerAdminCommand,
    config: Config,
) -> Result<ExitCode, CliError> {
    let url = config.database_url.clone();
    let pool = tokio::task::spawn_blocking(move || campuspay::db::pool(&url, 1)).await??;
    let ops = Ops::new(pool, config);
    Ok(broker::run(command, &ops, &Operator::from_shell()).await?)
}

/// Every back-office verb goes through `campuspay::ops`, as `/admin/v1` does, recorded under
/// the shell user's name.
pub(super) async fn run(command: AdminCommand, config: Config) -> Result<ExitCode, CliError> {
    let pool = pool(&config).await?;
    let ops = Ops::new(pool, config.clone());
    let me = Operator::from_shell();
    match command {
        AdminCommand::Broker(c) => broker::run(c, &ops, &me).await.map_err(CliError::from),
        AdminCommand::Token(args) => token::run(args, &ops, &me).await,
        AdminCommand::Qr { command } => qr::admin(command, &ops, &me).await,
        AdminCommand::Merchant { command } => merchant::merchant(command, &ops, &me).await,
        AdminCommand::Terminal { command } => merchant::terminal(command, &ops, &me).await,
        AdminCommand::Card { command } => card::run(command, &ops, &me).await,
        AdminCommand::Fee { command } => fee::run(command, &ops, &me).await,
        AdminCommand::Refund(args) => reports::refund(args, &ops, &me).await,
        AdminCommand::Subsidy { command } => reports::subsidy(command, &ops, &me).await,
        AdminCommand::Report { command } => reports::report(command, &ops).await,
        AdminCommand::Verify(args) => reports::verify(args, &ops).await,
    }
}
