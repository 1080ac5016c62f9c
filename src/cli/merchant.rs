//! `campuspay admin merchant add` and `admin terminal add`.

use super::{print, CliError};
use campuspay::domain::{MerchantId, TerminalId};
use campuspay::ops::{self, Operator, Ops};
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
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        MerchantCommand::Add { id, name, json } => {
            ops::merchants::add_merchant(ops, me, &id, &name).await?;
            print(json, &serde_json::json!({"merchant_id": id}), |_| {
                format!("merchant {id} added")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn terminal(
    command: TerminalCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        TerminalCommand::Add { merchant, id, json } => {
            let out = ops::merchants::add_terminal(ops, me, &merchant, &id).await?;
            print(json, &out, |o| {
                format!(
                    "terminal {merchant}/{id} added; results arrive on queue {}\ntoken: {}",
                    o.result_queue, o.token
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
