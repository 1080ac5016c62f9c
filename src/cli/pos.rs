//! `campuspay pos`: the simulated POS terminal (reverse-scan payments, follow-ups, dynamic QR
//! codes) over AMQP.

use super::qr::write_images;
use super::{exit, parse_amount, parse_code, print, CliError};
use campuspay::broker::connection::connect_retrying;
use campuspay::config::Config;
use campuspay::domain::{Amount, MerchantId, PaymentCode, RequestId, TerminalId};
use campuspay::sim::pos::Pos;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum PosCommand {
    /// Scan a payment code: publish scan.v1, wait for the result on the terminal's queue. Above
    /// the card's password-free amount it prints PENDING first and waits on while the
    /// cardholder confirms on the phone.
    /// Exit status: 0 approved, 3 declined, 4 no final result in time (outcome unknown: ask with
    /// `pos query`), 1 error, 2 usage error.
    Pay(PayArgs),
    /// Ask what became of an earlier request (query.v1): prints its result or its status.
    Query(FollowUpArgs),
    /// Cancel an earlier request (reversal.v1): voids it, or refunds it if it was approved.
    Reverse(FollowUpArgs),
    /// Ask the gateway for a dynamic QR code with an amount in it (dynamic_qr.v1).
    Qr {
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: MerchantId,
        /// The terminal (till) id within the merchant.
        #[arg(long)]
        terminal: TerminalId,
        /// The amount in yuan (e.g. `12.50`).
        #[arg(long, value_parser = parse_amount)]
        amount: Amount,
        /// The request id (a UUID); reuse it on retries: the same request never moves money twice. Default: a new one.
        #[arg(long)]
        request_id: Option<RequestId>,
        /// The terminal's token (from `admin terminal add`); default: one minted with CAMPUSPAY_JWT_SECRET for the terminal's current token version.
        #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The terminal's own broker login (`amqp_url` printed by `admin terminal add`); default:
        /// AMQP_URL, the pipeline's own user, which may act for any till (development).
        #[arg(long, env = "CAMPUSPAY_TERMINAL_AMQP_URL", hide_env_values = true)]
        amqp_url: Option<String>,
        /// Also write the QR code as a PNG image to this file.
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        /// Also write the QR code (or chart) as an SVG image to this file.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FollowUpArgs {
    /// The merchant id (letters, digits, `-`, `_`).
    #[arg(long)]
    merchant: MerchantId,
    /// The terminal (till) id within the merchant.
    #[arg(long)]
    terminal: TerminalId,
    /// The request_id of the earlier scan.
    #[arg(long)]
    request_id: RequestId,
    /// The terminal's token (from `admin terminal add`); default: one minted with CAMPUSPAY_JWT_SECRET for the terminal's current token version.
    #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The terminal's own broker login (`amqp_url` printed by `admin terminal add`); default:
    /// AMQP_URL, the pipeline's own user, which may act for any till (development).
    #[arg(long, env = "CAMPUSPAY_TERMINAL_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct PayArgs {
    /// The merchant id (letters, digits, `-`, `_`).
    #[arg(long)]
    merchant: MerchantId,
    /// The terminal (till) id within the merchant.
    #[arg(long)]
    terminal: TerminalId,
    /// The 18-digit payment code shown by the phone.
    #[arg(long, value_parser = parse_code)]
    code: PaymentCode,
    /// The amount in yuan (e.g. `12.50`).
    #[arg(long, value_parser = parse_amount)]
    amount: Amount,
    /// Reuse on retries: the same request never moves money twice.
    #[arg(long)]
    request_id: Option<RequestId>,
    /// The terminal's token (from `admin terminal add`); default: one minted with
    /// CAMPUSPAY_JWT_SECRET for the terminal's current token version.
    #[arg(long, env = "CAMPUSPAY_TERMINAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The terminal's own broker login (`amqp_url` printed by `admin terminal add`); default:
    /// AMQP_URL, the pipeline's own user, which may act for any till (development).
    #[arg(long, env = "CAMPUSPAY_TERMINAL_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Connects as the till: with its own broker login when given (it declares nothing), else with
/// the pipeline's user (which provisions the result queue); the token given, or one minted
/// for the terminal's current version.
async fn open_till(
    config: &Config,
    merchant: MerchantId,
    terminal: TerminalId,
    token: Option<String>,
    amqp_url: Option<String>,
) -> Result<(lapin::Connection, Pos), CliError> {
    let token = match token {
        Some(t) => t,
        None => {
            let ops = campuspay::ops::Ops::new(super::pool(config).await?, config.clone());
            campuspay::ops::tokens::terminal(&ops, &merchant, &terminal).await?
        }
    };
    match amqp_url {
        Some(url) => {
            let conn = connect_retrying(&url, "campuspay pos", 3).await?;
            let user = campuspay::broker::amqp_url::user(&url);
            let pos = Pos::open_as_terminal(&conn, &user, merchant, terminal, token).await?;
            Ok((conn, pos))
        }
        None => {
            let conn = connect_retrying(&config.amqp_url, "campuspay pos", 3).await?;
            let pos = Pos::open(&conn, &config.broker_user, merchant, terminal, token).await?;
            Ok((conn, pos))
        }
    }
}

pub(super) async fn run(command: PosCommand, config: Config) -> Result<ExitCode, CliError> {
    match command {
        PosCommand::Qr {
            merchant,
            terminal,
            amount,
            request_id,
            token,
            amqp_url,
            png,
            svg,
            timeout_secs,
            json,
        } => {
            let (conn, mut pos) = open_till(&config, merchant, terminal, token, amqp_url).await?;
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
                return Ok(ExitCode::from(exit::DECLINED));
            }
        }
        PosCommand::Query(args) => return follow_up(&config, "query", args).await,
        PosCommand::Reverse(args) => return follow_up(&config, "reversal", args).await,
        PosCommand::Pay(args) => {
            let (conn, mut pos) = open_till(
                &config,
                args.merchant,
                args.terminal,
                args.token,
                args.amqp_url,
            )
            .await?;
            let request_id = args.request_id.unwrap_or_else(RequestId::new_random);
            if !args.json {
                outln!(
                    "scanning {} for {} (request {request_id}) …",
                    args.code,
                    args.amount
                );
            }
            pos.send_scan(request_id, args.code.expose(), &args.amount.to_string())
                .await?;
            let json = args.json;
            let waited = pos
                .wait_final(request_id, Duration::from_secs(args.timeout_secs), |p| {
                    // Above the card's password-free amount: the cardholder confirms on the
                    // phone (`campuspay phone confirm`) and the final result follows. With
                    // --json, standard output stays one JSON document (the final result).
                    let line = format!(
                        "PENDING (waiting for the cardholder to confirm on the phone) — \
                         amount {} fee {} total {} (transaction {})",
                        p.amount
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        p.fee,
                        p.total.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                        p.transaction_id
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "none".into()),
                    );
                    if json {
                        eprintln!("{line}");
                    } else {
                        outln!("{line}");
                    }
                })
                .await;
            let _ = conn.close(200, "done".into()).await;
            let result = match waited {
                Ok(r) => r,
                Err(e @ campuspay::sim::SimError::Timeout { .. }) => {
                    eprintln!(
                        "error: {e}; the outcome is unknown: ask with `campuspay pos query \
                         --request-id {request_id}` (the same request never pays twice)"
                    );
                    return Ok(ExitCode::from(exit::UNKNOWN));
                }
                Err(e) => return Err(e.into()),
            };
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
            // Scripts tell an approval from a decline, an error and a usage error.
            if result.status != campuspay::domain::TxState::Approved {
                return Ok(ExitCode::from(exit::DECLINED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pos query` / `pos reverse`: prints the JSON answer (result.v1 or query_status.v1).
async fn follow_up(config: &Config, verb: &str, args: FollowUpArgs) -> Result<ExitCode, CliError> {
    let (conn, mut pos) = open_till(
        config,
        args.merchant,
        args.terminal,
        args.token,
        args.amqp_url,
    )
    .await?;
    pos.send_follow_up(verb, args.request_id).await?;
    let (kind, raw) = pos
        .results()
        .wait_any(
            &[
                campuspay::messages::external::RESULT_V1,
                campuspay::messages::external::QUERY_STATUS_V1,
            ],
            args.request_id,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
    let _ = conn.close(200, "done".into()).await;
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    outln!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    // A result.v1 is the request's final answer (printed); a query_status.v1 says it has none
    // yet, or none is known.
    Ok(if kind == campuspay::messages::external::RESULT_V1 {
        ExitCode::from(exit::OK)
    } else {
        ExitCode::from(exit::UNKNOWN)
    })
}
