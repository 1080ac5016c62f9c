//! Money after the fact: `campuspay admin refund`, `admin subsidy import` (补助), `admin report
//! daily` and `admin verify` (the ledger invariants).

use super::{parse_amount, print, CliError};
use campuspay::domain::{Amount, TransactionId};
use campuspay::ops::{self, Operator, Ops};
use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The transaction id (a UUID).
    #[arg(long)]
    transaction: uuid::Uuid,
    /// Default: everything that remains.
    #[arg(long, value_parser = parse_amount)]
    amount: Option<Amount>,
    /// Idempotency key: the same id never refunds twice (default: a fresh one).
    #[arg(long)]
    request_id: Option<uuid::Uuid>,
    /// Why (recorded with the operator's name).
    #[arg(long, default_value = "")]
    reason: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SubsidyCommand {
    /// Credit many cards from a CSV file (`user_id,amount[,memo]`, or
    /// `row_id,user_id,amount[,memo]` with that header): each row once per batch, however often
    /// the file is imported, edited or reordered.
    Import {
        /// The CSV file: `user_id,amount[,memo]`, or `row_id,user_id,amount[,memo]` with that
        /// header.
        file: std::path::PathBuf,
        /// The name of this subsidy run (e.g. "2026-11 meal subsidy"). Rows are keyed by batch
        /// and row_id, or batch and cardholder without row ids.
        #[arg(long)]
        batch: String,
        /// Print JSON instead of text.
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
        /// Also write the report as CSV to this file.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A request still `created` after this many seconds counts as stuck.
    #[arg(long, default_value_t = 300)]
    stuck_after: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) async fn refund(
    args: RefundArgs,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    let RefundArgs {
        transaction,
        amount,
        request_id,
        reason,
        json,
    } = args;
    let id = request_id.unwrap_or_else(uuid::Uuid::new_v4);
    let out = ops::money::refund(ops, me, TransactionId(transaction), amount, id, &reason).await?;
    print(json, &out, |o| {
        format!(
            "refunded {} + fee {} of {} (refund {}); {} remains; card balance {}",
            o.amount, o.fee, o.transaction_id, o.refund_id, o.remaining, o.balance_after
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn subsidy(
    command: SubsidyCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        SubsidyCommand::Import { file, batch, json } => {
            let text = std::fs::read_to_string(&file).map_err(|e| CliError::File {
                path: file.clone(),
                source: e,
            })?;
            let report = ops::money::import_subsidies(ops, me, text, batch).await?;
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
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn report(command: ReportCommand, ops: &Ops) -> Result<ExitCode, CliError> {
    match command {
        ReportCommand::Daily { date, csv, json } => {
            let report = ops::reports::daily(ops, date).await?;
            if let Some(path) = csv {
                std::fs::write(&path, report.to_csv()).map_err(|e| CliError::File {
                    path: path.clone(),
                    source: e,
                })?;
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
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn verify(args: VerifyArgs, ops: &Ops) -> Result<ExitCode, CliError> {
    let VerifyArgs { stuck_after, json } = args;
    let report = ops::reports::verify(ops, stuck_after).await?;
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
    Ok(ExitCode::SUCCESS)
}
