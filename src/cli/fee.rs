//! `campuspay admin fee set`: 搭伙费 rules.

use super::{parse_rate, print, CliError};
use campuspay::domain::{FeeRate, Identity, MerchantId};
use campuspay::ops::{self, Operator, Ops};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum FeeCommand {
    /// Add a 搭伙费 rule, effective now.
    Set {
        /// The cardholder's identity, which fee rules and default limits go by.
        #[arg(long, value_enum)]
        identity: super::IdentityArg,
        /// The fee rate as a fraction of the amount (e.g. `0.10` for 10 %).
        #[arg(long, value_parser = parse_rate)]
        rate: FeeRate,
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: Option<MerchantId>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(
    command: FeeCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        FeeCommand::Set {
            identity,
            rate,
            merchant,
            json,
        } => {
            let identity: Identity = identity.into();
            let id = ops::money::set_fee(ops, me, identity, rate, merchant.as_ref())
                .await?
                .0;
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
    }
    Ok(ExitCode::SUCCESS)
}
