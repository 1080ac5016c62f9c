//! `campuspay qr decode` (any EMV merchant-presented payload) and `campuspay admin qr static`
//! (a printable campus code), and the PNG/SVG images both QR-printing verbs write.

use super::{print, CliError};
use campuspay::domain::{MerchantId, TerminalId};
use campuspay::ops::{self, Operator, Ops};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum QrCommand {
    /// Print every field of any EMV merchant-presented payload and whether its CRC is valid.
    Decode {
        /// The EMV merchant-presented QR payload (the text inside the QR code).
        payload: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminQrCommand {
    /// A printable static merchant QR code (merchant only, or merchant + terminal).
    Static {
        /// The merchant id (letters, digits, `-`, `_`).
        #[arg(long)]
        merchant: MerchantId,
        /// The terminal (till) id within the merchant.
        #[arg(long)]
        terminal: Option<TerminalId>,
        /// Also write the QR code as a PNG image to this file.
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        /// Also write the QR code (or chart) as an SVG image to this file.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: QrCommand) -> ExitCode {
    match command {
        QrCommand::Decode { payload, json } => qr_decode(&payload, json),
    }
}

pub(super) async fn admin(
    command: AdminQrCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        AdminQrCommand::Static {
            merchant,
            terminal,
            png,
            svg,
            json,
        } => {
            let payload = ops::merchants::static_qr(ops, me, &merchant, terminal.as_ref())
                .await?
                .payload;
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
    fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
        move |source| CliError::File {
            path: path.to_owned(),
            source,
        }
    }
    if let Some(path) = png {
        let bytes = campuspay::qr::render_png(payload)?;
        std::fs::write(path, bytes).map_err(file(path))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = svg {
        let text = campuspay::qr::render_svg(payload)?;
        std::fs::write(path, text).map_err(file(path))?;
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
                outln!(
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
