//! `campuspay admin merchant add` and `admin terminal add`.

use super::{print, CliError};
use campuspay::domain::{MerchantId, TerminalId};
use campuspay::ops::{self, Operator, Ops};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Register a merchant (and its settlement account).
    Add {
        /// The new merchant's id (letters, digits, `-`, `_`).
        #[arg(long)]
        id: MerchantId,
        /// The merchant's name as cardholders see it.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    /// Register a terminal: its result queue, its own broker user (it may publish only its own
    /// requests and read only its own results) and its token. Prints the credentials once.
    Add {
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: MerchantId,
        /// The terminal's id within the merchant.
        #[arg(long)]
        id: TerminalId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// New credentials for a terminal (a new broker password and token); the old ones stop
    /// working at once. Prints them once.
    Rotate {
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: MerchantId,
        /// The terminal's id within the merchant.
        #[arg(long)]
        id: TerminalId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a terminal: its broker user is deleted and its tokens revoked, at once. Its
    /// payments stay in the books.
    Remove {
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: MerchantId,
        /// The terminal's id within the merchant.
        #[arg(long)]
        id: TerminalId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn credentials_text(what: &str, c: &ops::merchants::TerminalCredentials) -> String {
    format!(
        "terminal {}/{} {what}; results arrive on queue {}\n\
         broker user: {}\n\
         broker password: {}\n\
         amqp url: {}\n\
         token: {}\n\
         (shown once: store them on the terminal now)",
        c.merchant_id,
        c.terminal_id,
        c.result_queue,
        c.broker.user,
        c.broker.password,
        c.broker.amqp_url,
        c.token
    )
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
            print(json, &out, |o| credentials_text("added", o));
        }
        TerminalCommand::Rotate { merchant, id, json } => {
            let out = ops::merchants::rotate_terminal(ops, me, &merchant, &id).await?;
            print(json, &out, |o| credentials_text("has new credentials", o));
        }
        TerminalCommand::Remove { merchant, id, json } => {
            let out = ops::merchants::remove_terminal(ops, me, &merchant, &id).await?;
            print(json, &out, |_| {
                format!(
                    "terminal {merchant}/{id} removed: broker user deleted, its connections \
                     closed, its tokens revoked"
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
