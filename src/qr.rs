//! Merchant QR codes as a service: signing and checking dynamic codes, and the terminal id used
//! for a merchant-only printed code. The EMV encoding itself is pure (`emv`, `domain::campus_qr`).

use crate::domain::campus_qr::signing_input;
use crate::domain::{Amount, MerchantId, TerminalId};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// Results of a merchant-only printed code go to `pos.<merchant>.counter`: the till that
/// watches the counter.
pub const COUNTER_TERMINAL: &str = "counter";

pub fn counter_terminal() -> TerminalId {
    TerminalId::from_static(COUNTER_TERMINAL)
}

/// Length of the signature in hex characters (64 bits of HMAC-SHA256 — enough to make an
/// altered code fail; the database record is checked as well).
pub const SIGNATURE_HEX: usize = 16;

pub fn sign(key: &[u8], m: &MerchantId, t: &TerminalId, amount: Amount, reference: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signing_input(m, t, amount, reference).as_bytes());
            let full = hex::encode_upper(mac.finalize().into_bytes());
            full[..SIGNATURE_HEX].to_owned()
        }
        Err(_) => String::new(),
    }
}

pub fn signature_valid(
    key: &[u8],
    m: &MerchantId,
    t: &TerminalId,
    amount: Amount,
    reference: &str,
    signature: &str,
) -> bool {
    let expected = sign(key, m, t, amount, reference);
    // Constant-time comparison is not needed for a value printed on a screen, but costs nothing.
    !expected.is_empty()
        && expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.to_ascii_uppercase().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A fresh one-time reference: 20 characters of [A-Z0-9] from the OS CSPRNG.
pub fn new_reference() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let key = b"k";
        let m = MerchantId::parse("m1").unwrap();
        let t = TerminalId::parse("t1").unwrap();
        let a = Amount::parse("8.00").unwrap();
        let s = sign(key, &m, &t, a, "REF1");
        assert!(signature_valid(key, &m, &t, a, "REF1", &s));
        assert!(!signature_valid(
            key,
            &m,
            &t,
            Amount::parse("80.00").unwrap(),
            "REF1",
            &s
        ));
        assert!(!signature_valid(key, &m, &t, a, "REF2", &s));
        assert!(!signature_valid(b"other", &m, &t, a, "REF1", &s));
        assert_eq!(counter_terminal().as_str(), COUNTER_TERMINAL);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("payload does not fit a QR code: {0}")]
    Qr(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// An SVG image of the payload (scannable by any phone camera).
pub fn render_svg(payload: &str) -> Result<String, RenderError> {
    let code =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|e| RenderError::Qr(e.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(320, 320)
        .build())
}

/// A PNG image of the payload: 8 pixels a module, 4 modules of quiet zone, greyscale.
pub fn render_png(payload: &str) -> Result<Vec<u8>, RenderError> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|e| RenderError::Qr(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side32 = u32::try_from(side).map_err(|e| RenderError::Png(e.to_string()))?;
        let mut encoder = png::Encoder::new(&mut out, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| RenderError::Png(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| RenderError::Png(e.to_string()))?;
    }
    Ok(out)
}
