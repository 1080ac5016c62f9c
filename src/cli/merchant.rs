//! `campuspay admin merchant add` and `admin terminal add`.

use super::{print, provision, CliError};
use campuspay::auth::JwtKeys;
use campuspay::config::Config;
use campuspay::db::{self, admin};
use campuspay::domain::{MerchantId, TerminalId};
use campuspay::messages::external::pos_result_key;
use clap::Subcommand;
use std::process::ExitCode;

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

pub(super) async fn merchant(
    command: MerchantCommand,
    pool: db::Pool,
) -> Result<ExitCode, CliError> {
    match command {
        MerchantCommand::Add { id, name, json } => {
            let i = id.clone();
            db::run(&pool, move |c| admin::add_merchant(c, &i, &name)).await?;
            print(json, &serde_json::json!({"merchant_id": id}), |_| {
                format!("merchant {id} added")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn terminal(
    command: TerminalCommand,
    pool: db::Pool,
    config: Config,
) -> Result<ExitCode, CliError> {
    match command {
        TerminalCommand::Add { merchant, id, json } => {
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
    }
    Ok(ExitCode::SUCCESS)
}
