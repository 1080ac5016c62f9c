//! `campuspay phone`: the simulated phone (payment codes from the TSM, forward scan over the
//! platform's HTTP API).

use super::{pool, print, CliError};
use campuspay::config::Config;
use campuspay::domain::UserId;
use campuspay::{sim, tsm};
use clap::Subcommand;
use std::process::ExitCode;
use std::time::Duration;

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

pub(super) async fn run(command: PhoneCommand, config: Config) -> Result<ExitCode, CliError> {
    match command {
        PhoneCommand::Codes { user, json } => {
            let pool = pool(&config).await?;
            let issued = tsm::issue(
                &pool,
                config.keys.payment_codes.expose(),
                &user,
                config.code_ttl,
                config.code_prefix,
            )
            .await?
            .map_err(campuspay::ops::OpsError::from)?;
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
        PhoneCommand::Scan {
            user,
            qr,
            amount,
            platform,
            json,
        } => {
            let pool = pool(&config).await?;
            let token = campuspay::sim::Tokens::new(&config, pool)
                .cardholder(&user, 3600)
                .await?;
            let ok = tokio::task::spawn_blocking(move || {
                phone_scan(&platform, &token, &qr, amount.as_deref(), json)
            })
            .await??;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
            outln!(
                "{}",
                serde_json::json!({"step": title, "http_status": a.status, "body": a.body})
            );
        } else {
            outln!(
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
