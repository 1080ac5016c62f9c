//! The EMVCo Merchant-Presented Mode (MPM) QR payload format, generic: [`decode`], [`encode`]
//! and [`EmvPayload`] read and write any EMV MPM payload, and [`describe`] takes one apart for
//! people, so `campuspay qr decode` can show a foreign code and say why it is not ours. Pure (no
//! I/O) and independent of the campus: the mapping of campus codes onto it is
//! `domain::campus_qr`.
//!
//! - `tlv`: data objects, templates, the checked builder, encode/decode, CRC-16/CCITT-FALSE;
//! - `describe`: [`describe`] and the EMV names of objects ([`tag_name`]).
//!
//! Decisions callers rely on:
//! - Lengths count characters (Unicode scalar values), not bytes: in the EMVCo example
//!   `0104最佳运输` is 4 characters and 12 bytes. The CRC runs over the UTF-8 bytes.
//! - The CRC (tag 63) must be four *uppercase* hex digits. Lowercase is rejected
//!   ([`EmvError::CrcFormat`]) instead of tolerated, so that every payload `decode` accepts is
//!   re-encoded byte for byte and the scanned string can serve as the code's identity. The
//!   EMVCo examples and every code we print use uppercase.
//! - Tag 63 is not a field of [`EmvPayload`]: it belongs to the encoding. `decode` checks and
//!   drops it, `encode` always appends a freshly computed one, [`EmvPayload::crc`] shows it.
//! - Length `00` is accepted: the EMV book says 01–99, but an empty value round-trips losslessly
//!   and refusing it would only make the decoder less useful on sloppy foreign codes.

mod describe;
#[cfg(test)]
pub(crate) mod test_vectors;
mod tlv;

pub use describe::{describe, tag_name, DescribedField, QrDescription};
pub use tlv::{
    crc16_ccitt_false, decode, encode, is_template, EmvError, EmvPayload, Field, SubField,
    MAX_PAYLOAD_CHARS, MAX_VALUE_CHARS,
};
