//! `campuspay qr decode` (any EMV merchant-presented payload) and `campuspay admin qr static`
//! (a printable campus code), and the PNG/SVG images both QR-printing verbs write.

use super::{print, CliError};
use campuspay::db::{self, DbError};
use campuspay::domain::{MerchantId, TerminalId};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum QrCommand {
    /// Print every field of any EMV merchant-presented payload and whether its CRC is valid.
    Decode {
        payload: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminQrCommand {
    /// A printable static merchant QR code (merchant only, or merchant + terminal).
    Static {
        #[arg(long)]
        merchant: MerchantId,
        #[arg(long)]
        terminal: Option<TerminalId>,
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: QrCommand) -> ExitCode {
    match command {
        QrCommand::Decode { payload, json } => qr_decode(&payload, json),
    }
}

pub(super) async fn admin(command: AdminQrCommand, pool: db::Pool) -> Result<ExitCode, CliError> {
    match command {
        AdminQrCommand::Static {
            merchant,
            terminal,
            png,
            svg,
            json,
        } => {
            let (m, t) = (merchant.clone(), terminal.clone());
            let name = db::run(
                &pool,
                move |c| match campuspay::db::forward::check_terminal(
                    c,
                    m.as_str(),
                    t.as_ref().map(|t| t.as_str()),
                )? {
                    Ok(name) => Ok(name),
                    Err(p) => Err(DbError::NotFound(p.to_string())),
                },
            )
            .await?;
            let payload = campuspay::domain::campus_qr::encode_campus(
                &campuspay::domain::campus_qr::MerchantQr::Static {
                    merchant_id: merchant.clone(),
                    terminal_id: terminal.clone(),
                },
                &name,
            )
            .map_err(|e| CliError::Failed(e.to_string()))?;
            let (m, t, p) = (merchant.clone(), terminal.clone(), payload.clone());
            db::run(&pool, move |c| {
                campuspay::db::forward::record_static(c, &m, t.as_ref(), &p)
            })
            .await?;
            write_images(&payload, png.as_deref(), svg.as_deref())?;
            print(
                json,
                &serde_json::json!({"merchant_id": merchant, "terminal_id": terminal, "payload": payload}),
                |_| payload.clone(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn write_images(
    payload: &str,
    png: Option<&std::path::Path>,
    svg: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let fail = |e: String| CliError::Failed(e);
    if let Some(path) = png {
        let bytes = campuspay::qr::render_png(payload).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = svg {
        let text = campuspay::qr::render_svg(payload).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn qr_decode(payload: &str, json: bool) -> ExitCode {
    use campuspay::emv;
    match emv::describe(payload) {
        Ok(d) => {
            print(json, &d, |d| d.to_text());
            if d.crc_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "error": e.to_string()})
                );
            } else {
                eprintln!("not a valid EMV merchant-presented payload: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
