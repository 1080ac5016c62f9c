//! `campuspay phone`: the simulated phone (payment codes from the TSM, forward scan over the
//! platform's HTTP API, confirming or declining a reverse-scan payment that waits for it).

use super::{pool, print, CliError};
use campuspay::config::Config;
use campuspay::domain::{TransactionId, UserId};
use campuspay::{sim, tsm};
use clap::Subcommand;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Ask the TSM for 10 one-time payment codes.
    Codes {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Scan a merchant QR code and pay through the platform's HTTP API, step by step.
    Scan {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The merchant's QR payload, as scanned.
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
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Confirm, with the card's PIN, a reverse-scan payment that waits for the cardholder
    /// (above the card's password-free amount), then wait for its result.
    /// Exit status: 0 approved, 2 declined, 1 refused or error.
    Confirm {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The PIN (six digits).
        #[arg(long, env = "CAMPUSPAY_PIN", hide_env_values = true)]
        pin: String,
        /// The payment to confirm; default: the newest one waiting.
        #[arg(long)]
        transaction: Option<TransactionId>,
        /// The payment platform's base URL (default: http://CAMPUSPAY_HTTP_ADDR).
        #[arg(
            long,
            env = "CAMPUSPAY_PLATFORM_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        platform: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decline a reverse-scan payment that waits for the cardholder's confirmation.
    /// Exit status: 0 declined, 1 refused or error.
    Decline {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The payment to decline; default: the newest one waiting.
        #[arg(long)]
        transaction: Option<TransactionId>,
        /// The payment platform's base URL (default: http://CAMPUSPAY_HTTP_ADDR).
        #[arg(
            long,
            env = "CAMPUSPAY_PLATFORM_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        platform: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What the cardholder answers a payment that waits for them.
enum Answer {
    Confirm { pin: String },
    Decline,
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
        PhoneCommand::Confirm {
            user,
            pin,
            transaction,
            platform,
            json,
        } => {
            let answer = Answer::Confirm { pin };
            return answer_confirmation(&config, user, transaction, platform, json, answer).await;
        }
        PhoneCommand::Decline {
            user,
            transaction,
            platform,
            json,
        } => {
            let answer = Answer::Decline;
            return answer_confirmation(&config, user, transaction, platform, json, answer).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phone confirm` / `phone decline`.
async fn answer_confirmation(
    config: &Config,
    user: UserId,
    transaction: Option<TransactionId>,
    platform: String,
    json: bool,
    answer: Answer,
) -> Result<ExitCode, CliError> {
    let pool = pool(config).await?;
    let token = campuspay::sim::Tokens::new(config, pool)
        .cardholder(&user, 3600)
        .await?;
    tokio::task::spawn_blocking(move || {
        let phone = sim::phone::Phone::new(&platform, &token);
        let id = match transaction {
            Some(t) => t.to_string(),
            None => {
                let list = phone.confirmations()?;
                step(json, "waiting for confirmation", &list);
                let newest = list.body["confirmations"][0]["transaction_id"].as_str();
                match newest {
                    Some(id) => id.to_owned(),
                    None if list.status == 200 => {
                        return Err(CliError::Sim(sim::SimError::Other(format!(
                            "no payment of {user} is waiting for a confirmation"
                        ))))
                    }
                    None => return Ok(ExitCode::FAILURE),
                }
            }
        };
        match answer {
            Answer::Decline => {
                let a = phone.decline(&id)?;
                step(json, "declined", &a);
                Ok(if a.status == 200 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Answer::Confirm { pin } => {
                let a = phone.confirm(&id, &pin)?;
                step(json, "confirmed", &a);
                if a.status != 202 {
                    return Ok(ExitCode::FAILURE);
                }
                let done = phone.wait_transaction(&id, Duration::from_secs(30))?;
                let result = sim::phone::Answer {
                    status: 200,
                    body: done,
                };
                step(json, "result", &result);
                Ok(if result.body["state"] == "approved" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(super::exit::DECLINED)
                })
            }
        }
    })
    .await?
}

/// Prints one step of a phone flow: its HTTP status and body.
fn step(json: bool, title: &str, a: &sim::phone::Answer) {
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
    let step = |title: &str, a: &sim::phone::Answer| step(json, title, a);
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
