//! `campuspay admin fee set`: 搭伙费 rules.

use super::{parse_rate, print, CliError};
use campuspay::db::{self, admin};
use campuspay::domain::{FeeRate, Identity, MerchantId};
use clap::Subcommand;
use std::process::ExitCode;

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

pub(super) async fn run(command: FeeCommand, pool: db::Pool) -> Result<ExitCode, CliError> {
    match command {
        FeeCommand::Set {
            identity,
            rate,
            merchant,
            json,
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
    }
    Ok(ExitCode::SUCCESS)
}
