//! Merchant-presented QR codes (正扫): the EMVCo Merchant-Presented Mode (MPM) payload format and
//! the three campus code kinds of DESIGN.md §1.
//!
//! Two layers:
//! - a generic codec ([`decode`], [`encode`], [`EmvPayload`]) that reads and writes any EMV MPM
//!   payload, so `campuspay qr decode` can show a foreign code and say why it is not ours;
//! - the campus mapping ([`MerchantQr`], [`encode_campus`], [`decode_campus`]).
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

use super::ids::{IdError, MerchantId, TerminalId};
use super::money::{Amount, AmountError};
use serde::Serialize;

/// EMV caps a payload at 512 characters. Checking first also bounds the work a hostile body
/// can cause before anything is allocated per character.
pub const MAX_PAYLOAD_CHARS: usize = 512;
/// A length is two decimal digits.
pub const MAX_VALUE_CHARS: usize = 99;
const CRC_ID: u8 = 63;
/// `6304` plus four hex digits, appended by `encode`.
const CRC_OBJECT_CHARS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmvError {
    #[error("payload is longer than {MAX_PAYLOAD_CHARS} characters")]
    TooLong,
    #[error("at character {pos}: data object header (2-digit id, 2-digit length) is cut off")]
    TruncatedHeader { pos: usize },
    #[error("at character {pos}: id {found:?} is not two digits")]
    BadId { pos: usize, found: String },
    #[error("at character {pos}: length {found:?} of object {id:02} is not two digits")]
    BadLength { pos: usize, id: u8, found: String },
    #[error("object {id:02} declares {declared} characters but only {available} remain")]
    ValuePastEnd {
        id: u8,
        declared: usize,
        available: usize,
    },
    #[error("object {id:02} appears more than once")]
    DuplicateTag { id: u8 },
    #[error("template {template:02} holds sub-object {id:02} more than once")]
    DuplicateSubTag { template: u8, id: u8 },
    #[error("template {id:02} is not a list of data objects: {source}")]
    BadTemplate {
        id: u8,
        #[source]
        source: Box<EmvError>,
    },
    #[error("mandatory object {id:02} is missing")]
    MissingTag { id: u8 },
    #[error("object 00 (payload format indicator) must come first")]
    PayloadFormatNotFirst,
    #[error("payload format indicator is {found:?}, expected \"01\"")]
    PayloadFormat { found: String },
    #[error("point of initiation method is {found:?}, expected \"11\" or \"12\"")]
    PointOfInitiation { found: String },
    #[error("no merchant account information (objects 02-51)")]
    NoMerchantAccount,
    #[error("CRC (object 63) must be the last object")]
    CrcNotLast,
    #[error("CRC (object 63) has length {len}, expected 4")]
    CrcLength { len: usize },
    #[error("CRC {found:?} is not four uppercase hex digits")]
    CrcFormat { found: String },
    #[error(
        "CRC mismatch: payload computes to {expected}, code says {found} (damaged or altered)"
    )]
    CrcMismatch { expected: String, found: String },
    // Builder errors: a payload under construction never becomes unencodable.
    #[error("id {id} is not in 00-99")]
    IdOutOfRange { id: u8 },
    #[error("object {id:02} is {len} characters, the maximum is {MAX_VALUE_CHARS}")]
    ValueTooLong { id: u8, len: usize },
    #[error(
        "sub-object {template:02}/{id:02} is {len} characters, the maximum is {MAX_VALUE_CHARS}"
    )]
    SubValueTooLong { template: u8, id: u8, len: usize },
    #[error("object {id:02} is a template: give its sub-objects")]
    ExpectedTemplate { id: u8 },
    #[error("object {id:02} is not a template")]
    NotATemplate { id: u8 },
    #[error("object 63 (CRC) is computed by encode, not set")]
    CrcIsComputed,
}

/// Objects whose value is itself a list of data objects. 02-25 are primitive merchant account
/// information (card-scheme ids), 26-51 are templates.
pub fn is_template(id: u8) -> bool {
    matches!(id, 26..=51 | 62 | 64 | 80..=99)
}

/// One sub-object of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubField {
    pub id: u8,
    pub value: String,
}

impl SubField {
    pub fn new(id: u8, value: impl Into<String>) -> SubField {
        SubField {
            id,
            value: value.into(),
        }
    }
}

/// One top-level object. `value` is the raw value (for a template, its encoded sub-objects), so
/// encoding never has to re-derive what was scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    id: u8,
    value: String,
    subs: Option<Vec<SubField>>,
}

impl Field {
    pub fn id(&self) -> u8 {
        self.id
    }
    pub fn value(&self) -> &str {
        &self.value
    }
    /// The sub-objects when this is a template (see [`is_template`]).
    pub fn subs(&self) -> Option<&[SubField]> {
        self.subs.as_deref()
    }
    pub fn sub(&self, id: u8) -> Option<&str> {
        self.subs()?
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.value.as_str())
    }
}

/// An EMV MPM payload without its CRC, fields in their original order. Built only by
/// [`decode`] or the checked `push` methods, so ids are unique, values fit their two-digit
/// lengths and the encoding fits [`MAX_PAYLOAD_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmvPayload {
    fields: Vec<Field>,
    /// Encoded length so far, without the CRC object.
    chars: usize,
}

impl EmvPayload {
    pub fn new() -> EmvPayload {
        EmvPayload::default()
    }

    /// Appends a primitive object.
    pub fn push(&mut self, id: u8, value: &str) -> Result<(), EmvError> {
        if is_template(id) {
            return Err(EmvError::ExpectedTemplate { id });
        }
        self.push_field(id, value.to_owned(), None)
    }

    /// Appends a template built from `subs`, in the given order.
    pub fn push_template(&mut self, id: u8, subs: Vec<SubField>) -> Result<(), EmvError> {
        if !is_template(id) {
            return Err(EmvError::NotATemplate { id });
        }
        let mut value = String::new();
        for (i, s) in subs.iter().enumerate() {
            if s.id > 99 {
                return Err(EmvError::IdOutOfRange { id: s.id });
            }
            if subs[..i].iter().any(|o| o.id == s.id) {
                return Err(EmvError::DuplicateSubTag {
                    template: id,
                    id: s.id,
                });
            }
            let len = s.value.chars().count();
            if len > MAX_VALUE_CHARS {
                return Err(EmvError::SubValueTooLong {
                    template: id,
                    id: s.id,
                    len,
                });
            }
            write_object(&mut value, s.id, &s.value);
        }
        self.push_field(id, value, Some(subs))
    }

    fn push_field(
        &mut self,
        id: u8,
        value: String,
        subs: Option<Vec<SubField>>,
    ) -> Result<(), EmvError> {
        if id == CRC_ID {
            return Err(EmvError::CrcIsComputed);
        }
        if id > 99 {
            return Err(EmvError::IdOutOfRange { id });
        }
        if self.get(id).is_some() {
            return Err(EmvError::DuplicateTag { id });
        }
        let len = value.chars().count();
        if len > MAX_VALUE_CHARS {
            return Err(EmvError::ValueTooLong { id, len });
        }
        let chars = self.chars + 4 + len;
        if chars + CRC_OBJECT_CHARS > MAX_PAYLOAD_CHARS {
            return Err(EmvError::TooLong);
        }
        self.chars = chars;
        self.fields.push(Field { id, value, subs });
        Ok(())
    }

    /// Every object in payload order, CRC excluded.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The raw value of a top-level object (for a template: its encoded sub-objects). `None`
    /// for 63: see [`EmvPayload::crc`].
    pub fn get(&self, id: u8) -> Option<&str> {
        self.field(id).map(Field::value)
    }

    pub fn field(&self, id: u8) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    pub fn template(&self, id: u8) -> Option<&[SubField]> {
        self.field(id)?.subs()
    }

    pub fn sub(&self, id: u8, sub_id: u8) -> Option<&str> {
        self.field(id)?.sub(sub_id)
    }

    /// The CRC that `encode` writes; after `decode` it equals the one scanned.
    pub fn crc(&self) -> String {
        let encoded = encode(self);
        encoded[encoded.len() - 4..].to_owned()
    }

    /// The structural rules of EMV MPM that `decode` enforces after parsing. Useful on a payload
    /// built by hand before printing it.
    pub fn validate(&self) -> Result<(), EmvError> {
        match self.fields.first() {
            Some(f) if f.id == 0 => {
                if f.value != "01" {
                    return Err(EmvError::PayloadFormat {
                        found: f.value.clone(),
                    });
                }
            }
            _ if self.get(0).is_some() => return Err(EmvError::PayloadFormatNotFirst),
            _ => return Err(EmvError::MissingTag { id: 0 }),
        }
        if let Some(v) = self.get(1) {
            if v != "11" && v != "12" {
                return Err(EmvError::PointOfInitiation {
                    found: v.to_owned(),
                });
            }
        }
        if !self.fields.iter().any(|f| (2..=51).contains(&f.id)) {
            return Err(EmvError::NoMerchantAccount);
        }
        for id in [52, 53, 58, 59, 60] {
            if self.get(id).is_none() {
                return Err(EmvError::MissingTag { id });
            }
        }
        Ok(())
    }
}

/// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor, as EMV MPM
/// prescribes for object 63.
pub fn crc16_ccitt_false(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |mut crc: u16, &byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

fn write_object(out: &mut String, id: u8, value: &str) {
    out.push_str(&format!("{id:02}{:02}", value.chars().count()));
    out.push_str(value);
}

/// Writes the objects in order and appends `6304` and the CRC over everything before it.
pub fn encode(payload: &EmvPayload) -> String {
    let mut out = String::with_capacity(payload.chars + CRC_OBJECT_CHARS);
    for f in &payload.fields {
        write_object(&mut out, f.id, &f.value);
    }
    out.push_str("6304");
    let crc = crc16_ccitt_false(out.as_bytes());
    out.push_str(&format!("{crc:04X}"));
    out
}

fn two_digits(pair: &[char]) -> Option<u8> {
    match pair {
        // `to_digit(10)` accepts only ASCII digits, never full-width ones.
        [a, b] => u8::try_from(a.to_digit(10)? * 10 + b.to_digit(10)?).ok(),
        _ => None,
    }
}

/// Splits a character sequence into (id, value) objects; syntax only.
fn parse_objects(chars: &[char]) -> Result<Vec<(u8, String)>, EmvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < chars.len() {
        let header = chars
            .get(pos..pos + 4)
            .ok_or(EmvError::TruncatedHeader { pos })?;
        let (id_chars, len_chars) = header.split_at(2);
        let id = two_digits(id_chars).ok_or_else(|| EmvError::BadId {
            pos,
            found: id_chars.iter().collect(),
        })?;
        let len = two_digits(len_chars).ok_or_else(|| EmvError::BadLength {
            pos: pos + 2,
            id,
            found: len_chars.iter().collect(),
        })?;
        let start = pos + 4;
        let end = start + usize::from(len);
        let value = chars.get(start..end).ok_or(EmvError::ValuePastEnd {
            id,
            declared: usize::from(len),
            available: chars.len() - start,
        })?;
        out.push((id, value.iter().collect()));
        pos = end;
    }
    Ok(out)
}

fn parse_template(id: u8, value: &str) -> Result<Vec<SubField>, EmvError> {
    let chars: Vec<char> = value.chars().collect();
    let objects = parse_objects(&chars).map_err(|e| EmvError::BadTemplate {
        id,
        source: Box::new(e),
    })?;
    let mut subs: Vec<SubField> = Vec::with_capacity(objects.len());
    for (sub_id, v) in objects {
        if subs.iter().any(|s| s.id == sub_id) {
            return Err(EmvError::DuplicateSubTag {
                template: id,
                id: sub_id,
            });
        }
        subs.push(SubField::new(sub_id, v));
    }
    Ok(subs)
}

/// A payload cut into its objects, the CRC set apart.
struct Split {
    /// Every object before 63, in order.
    body: Vec<(u8, String)>,
    /// The CRC as written in the payload.
    found: String,
    /// The CRC the payload computes to.
    expected: String,
}

/// What must hold before a CRC can be computed: the length bound, syntax, unique ids, and a
/// four-character object 63 at the end.
fn split(payload: &str) -> Result<Split, EmvError> {
    if payload.chars().nth(MAX_PAYLOAD_CHARS).is_some() {
        return Err(EmvError::TooLong);
    }
    let chars: Vec<char> = payload.chars().collect();
    let mut objects = parse_objects(&chars)?;
    for (i, (id, _)) in objects.iter().enumerate() {
        if objects[..i].iter().any(|(other, _)| other == id) {
            return Err(EmvError::DuplicateTag { id: *id });
        }
    }
    let Some((last_id, found)) = objects.pop() else {
        return Err(EmvError::MissingTag { id: CRC_ID });
    };
    if last_id != CRC_ID {
        return Err(if objects.iter().any(|(id, _)| *id == CRC_ID) {
            EmvError::CrcNotLast
        } else {
            EmvError::MissingTag { id: CRC_ID }
        });
    }
    let len = found.chars().count();
    if len != 4 {
        return Err(EmvError::CrcLength { len });
    }
    // The CRC covers everything before its own four characters, "6304" included.
    let covered: String = chars[..chars.len() - 4].iter().collect();
    let expected = format!("{:04X}", crc16_ccitt_false(covered.as_bytes()));
    Ok(Split {
        body: objects,
        found,
        expected,
    })
}

/// Parses and checks any EMV MPM payload: syntax, duplicates, CRC, then templates and the
/// mandatory objects. The CRC is checked before templates are opened, so a damaged scan reports
/// `CrcMismatch` rather than whatever the damage happens to look like.
pub fn decode(payload: &str) -> Result<EmvPayload, EmvError> {
    let Split {
        body,
        found,
        expected,
    } = split(payload)?;
    if !found
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(EmvError::CrcFormat { found });
    }
    if expected != found {
        return Err(EmvError::CrcMismatch { expected, found });
    }
    let mut out = EmvPayload::new();
    for (id, value) in body {
        let subs = if is_template(id) {
            Some(parse_template(id, &value)?)
        } else {
            None
        };
        out.chars += 4 + value.chars().count();
        out.fields.push(Field { id, value, subs });
    }
    out.validate()?;
    Ok(out)
}

/// One object as [`describe`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DescribedField {
    /// Two digits, as in the payload.
    pub id: String,
    pub name: &'static str,
    /// The raw value (for a template: its encoded sub-objects).
    pub value: String,
    /// A template's sub-objects; empty for primitives and for templates that do not parse.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<DescribedField>,
}

/// A payload taken apart for people (`campuspay qr decode`). Unlike [`decode`] it still lists
/// the objects when the CRC or a rule fails, because that is when someone needs to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QrDescription {
    pub fields: Vec<DescribedField>,
    pub crc: String,
    pub crc_expected: String,
    pub crc_valid: bool,
    /// Whether [`decode`] accepts the payload; `error` says why not.
    pub valid: bool,
    pub error: Option<String>,
}

impl QrDescription {
    /// One line per object with its EMV name, sub-objects indented, then the CRC verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.fields {
            if f.subs.is_empty() {
                out.push_str(&format!("{} {}: {}\n", f.id, f.name, f.value));
            } else {
                out.push_str(&format!("{} {}\n", f.id, f.name));
                for s in &f.subs {
                    out.push_str(&format!("   {} {}: {}\n", s.id, s.name, s.value));
                }
            }
        }
        let verdict = if self.crc_valid {
            "ok".to_owned()
        } else {
            format!("WRONG, payload computes to {}", self.crc_expected)
        };
        out.push_str(&format!(
            "63 {}: {} ({verdict})\n",
            tag_name(CRC_ID, None),
            self.crc
        ));
        if let Some(e) = &self.error {
            out.push_str(&format!("invalid: {e}\n"));
        }
        out
    }
}

/// Fails only when the objects cannot even be listed (see `split`).
pub fn describe(payload: &str) -> Result<QrDescription, EmvError> {
    let Split {
        body,
        found: crc,
        expected: crc_expected,
    } = split(payload)?;
    let fields = body
        .into_iter()
        .map(|(id, value)| {
            let subs = if is_template(id) {
                parse_template(id, &value).unwrap_or_default()
            } else {
                Vec::new()
            };
            let subs = subs
                .into_iter()
                .map(|s| DescribedField {
                    id: format!("{:02}", s.id),
                    name: tag_name(s.id, Some(id)),
                    value: s.value,
                    subs: Vec::new(),
                })
                .collect();
            DescribedField {
                id: format!("{id:02}"),
                name: tag_name(id, None),
                value,
                subs,
            }
        })
        .collect();
    let error = decode(payload).err().map(|e| e.to_string());
    Ok(QrDescription {
        fields,
        crc_valid: crc == crc_expected,
        crc,
        crc_expected,
        valid: error.is_none(),
        error,
    })
}

/// The EMV MPM name of object `id`, or of sub-object `id` inside template `parent`.
pub fn tag_name(id: u8, parent: Option<u8>) -> &'static str {
    const GUID: &str = "Globally Unique Identifier";
    match (parent, id) {
        (None, 0) => "Payload Format Indicator",
        (None, 1) => "Point of Initiation Method",
        (None, 2..=51) => "Merchant Account Information",
        (None, 52) => "Merchant Category Code",
        (None, 53) => "Transaction Currency",
        (None, 54) => "Transaction Amount",
        (None, 55) => "Tip or Convenience Indicator",
        (None, 56) => "Value of Convenience Fee Fixed",
        (None, 57) => "Value of Convenience Fee Percentage",
        (None, 58) => "Country Code",
        (None, 59) => "Merchant Name",
        (None, 60) => "Merchant City",
        (None, 61) => "Postal Code",
        (None, 62) => "Additional Data Field Template",
        (None, 63) => "CRC",
        (None, 64) => "Merchant Information—Language Template",
        (None, 65..=79) => "RFU for EMVCo",
        (None, 80..=99) => "Unreserved Template",
        (Some(26..=51), 0) | (Some(80..=99), 0) => GUID,
        (Some(26..=51), 1..=99) => "Payment Network Specific",
        (Some(80..=99), 1..=99) => "Context Specific Data",
        (Some(62), 1) => "Bill Number",
        (Some(62), 2) => "Mobile Number",
        (Some(62), 3) => "Store Label",
        (Some(62), 4) => "Loyalty Number",
        (Some(62), 5) => "Reference Label",
        (Some(62), 6) => "Customer Label",
        (Some(62), 7) => "Terminal Label",
        (Some(62), 8) => "Purpose of Transaction",
        (Some(62), 9) => "Additional Consumer Data Request",
        (Some(62), 10..=49) | (Some(64), 3..=99) => "RFU for EMVCo",
        (Some(62), 50..=99) => "Payment System Specific",
        (Some(64), 0) => "Language Preference",
        (Some(64), 1) => "Merchant Name—Alternate Language",
        (Some(64), 2) => "Merchant City—Alternate Language",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Campus codes
// ---------------------------------------------------------------------------------------------

/// Sub-object 00 of our merchant account template (tag 26): marks a code as ours.
pub const CAMPUS_GUID: &str = "cn.edu.campuspay";
/// ISO 18245 5812, eating places and restaurants: what most campus merchants are (canteens).
pub const DEFAULT_MCC: &str = "5812";
pub const DEFAULT_CITY: &str = "CAMPUS";
/// ISO 4217 numeric code of CNY; the only currency the card backend holds.
pub const CNY: &str = "156";
pub const MAX_REFERENCE_CHARS: usize = 25;
pub const MAX_SIGNATURE_CHARS: usize = 32;
/// EMV limit of tag 59 and of 64/01.
const MAX_NAME_CHARS: usize = 25;
/// EMV limit of tag 60.
const MAX_CITY_CHARS: usize = 15;
const ACCOUNT_TAG: u8 = 26;
const ADDITIONAL_TAG: u8 = 62;
const REFERENCE_SUB: u8 = 5;
const TERMINAL_SUB: u8 = 7;
/// 62/50-99 are "payment system specific". EMV intends them as templates, but a nested GUID
/// would not fit next to a reference and a terminal label in 99 characters, so ours is opaque.
const SIGNATURE_SUB: u8 = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampusQrError {
    #[error(transparent)]
    Emv(#[from] EmvError),
    #[error("not a campuspay code (no merchant account template with GUID {CAMPUS_GUID})")]
    NotCampus,
    #[error("more than one campuspay merchant account template")]
    DuplicateCampusAccount,
    #[error("campuspay account template has no merchant id (sub-object 01)")]
    MissingMerchantId,
    #[error("bad merchant id: {0}")]
    BadMerchantId(IdError),
    #[error("bad terminal id: {0}")]
    BadTerminalId(IdError),
    #[error("terminal id in 26/02 and terminal label in 62/07 differ")]
    TerminalMismatch,
    #[error("no point of initiation method (01): static or dynamic is unknown")]
    MissingInitiation,
    #[error("transaction currency is {found:?}, expected {CNY} (CNY)")]
    WrongCurrency { found: String },
    #[error("static code carries an amount")]
    StaticWithAmount,
    #[error("static code carries dynamic data: {0}")]
    StaticWithDynamicData(&'static str),
    #[error("dynamic code has no {0}")]
    DynamicMissing(&'static str),
    #[error("bad amount: {0}")]
    BadAmount(AmountError),
    #[error("reference must be 1 to {MAX_REFERENCE_CHARS} characters of A-Z, a-z, 0-9")]
    BadReference,
    #[error("signature must be 1 to {MAX_SIGNATURE_CHARS} hex digits")]
    BadSignature,
    #[error("additional data (62) would be {len} characters, the maximum is 99: shorten reference, terminal id or signature")]
    AdditionalDataTooLong { len: usize },
    #[error("merchant category code {0:?} is not four digits")]
    BadMcc(String),
    #[error("merchant city {0:?} must be 1 to {MAX_CITY_CHARS} printable ASCII characters")]
    BadCity(String),
}

/// A campus merchant code. `Static` is printed once (optionally per till); `Dynamic` is issued
/// by the gateway for one payment and signed by it (the signature is opaque here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerchantQr {
    Static {
        merchant_id: MerchantId,
        terminal_id: Option<TerminalId>,
    },
    Dynamic {
        merchant_id: MerchantId,
        terminal_id: TerminalId,
        amount: Amount,
        /// 1-25 of [A-Za-z0-9]; the gateway's one-time id of this code.
        reference: String,
        /// ≤ 32 hex digits over [`signing_input`], computed by the gateway.
        signature: String,
    },
}

impl MerchantQr {
    pub fn merchant_id(&self) -> &MerchantId {
        match self {
            MerchantQr::Static { merchant_id, .. } | MerchantQr::Dynamic { merchant_id, .. } => {
                merchant_id
            }
        }
    }

    pub fn terminal_id(&self) -> Option<&TerminalId> {
        match self {
            MerchantQr::Static { terminal_id, .. } => terminal_id.as_ref(),
            MerchantQr::Dynamic { terminal_id, .. } => Some(terminal_id),
        }
    }

    /// What the gateway's signature must cover; `None` for static codes, which are not signed.
    pub fn signing_input(&self) -> Option<String> {
        match self {
            MerchantQr::Static { .. } => None,
            MerchantQr::Dynamic {
                merchant_id,
                terminal_id,
                amount,
                reference,
                ..
            } => Some(signing_input(merchant_id, terminal_id, *amount, reference)),
        }
    }
}

/// The canonical string the gateway HMACs to sign a dynamic code. The version prefix separates
/// it from anything else the same key might sign; the layout is unambiguous because ids and
/// amounts cannot contain `|` and the one field that could, the reference, comes last.
pub fn signing_input(
    merchant: &MerchantId,
    terminal: &TerminalId,
    amount: Amount,
    reference: &str,
) -> String {
    format!("campuspay-qr-v1|{merchant}|{terminal}|{amount}|{reference}")
}

/// What a code shows besides the ids: merchant name, category and city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampusQrParams<'a> {
    pub merchant_name: &'a str,
    pub mcc: &'a str,
    pub city: &'a str,
}

impl<'a> CampusQrParams<'a> {
    pub fn new(merchant_name: &'a str) -> CampusQrParams<'a> {
        CampusQrParams {
            merchant_name,
            mcc: DEFAULT_MCC,
            city: DEFAULT_CITY,
        }
    }
}

fn valid_reference(s: &str) -> bool {
    (1..=MAX_REFERENCE_CHARS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn valid_signature(s: &str) -> bool {
    (1..=MAX_SIGNATURE_CHARS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Tag 59 is EMV "ans" (printable ASCII), at most 25 characters; tag 64/01 carries the name in
/// the merchant's own language. The name comes from the merchant record and must never make a
/// code unprintable, so it is cleaned and cut, not rejected: an ASCII name goes to 59; any other
/// name goes to 64/01 (language "ZH") and 59 falls back to the merchant id, which is ASCII and
/// still means something on a foreign wallet. Returns (tag 59, tag 64/01).
fn merchant_names(name: &str, merchant: &MerchantId) -> (String, Option<String>) {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() {
        (truncate(merchant.as_str(), MAX_NAME_CHARS), None)
    } else if clean.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        (truncate(clean, MAX_NAME_CHARS), None)
    } else {
        (
            truncate(merchant.as_str(), MAX_NAME_CHARS),
            Some(truncate(clean, MAX_NAME_CHARS)),
        )
    }
}

/// The name a wallet should show: the alternate-language name (64/01) when there is one.
pub fn display_name(payload: &EmvPayload) -> Option<&str> {
    payload.sub(64, 1).or_else(|| payload.get(59))
}

/// [`encode_campus_with`] with the default category code and city.
pub fn encode_campus(qr: &MerchantQr, merchant_name: &str) -> Result<String, CampusQrError> {
    encode_campus_with(qr, &CampusQrParams::new(merchant_name))
}

/// Encodes a campus code. Fails only on values the caller controls: a malformed reference or
/// signature, a 62 template over 99 characters (reference + terminal id + signature > 87), or a
/// bad MCC or city. The merchant name never fails (see `merchant_names`).
pub fn encode_campus_with(
    qr: &MerchantQr,
    params: &CampusQrParams<'_>,
) -> Result<String, CampusQrError> {
    if params.mcc.len() != 4 || !params.mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CampusQrError::BadMcc(params.mcc.to_owned()));
    }
    let city_ok = (1..=MAX_CITY_CHARS).contains(&params.city.len())
        && params.city.bytes().all(|b| (b' '..=b'~').contains(&b));
    if !city_ok {
        return Err(CampusQrError::BadCity(params.city.to_owned()));
    }
    if let MerchantQr::Dynamic {
        terminal_id,
        reference,
        signature,
        ..
    } = qr
    {
        if !valid_reference(reference) {
            return Err(CampusQrError::BadReference);
        }
        if !valid_signature(signature) {
            return Err(CampusQrError::BadSignature);
        }
        // Three sub-objects of 4 header characters each; all values are ASCII.
        let len = 12 + reference.len() + terminal_id.as_str().len() + signature.len();
        if len > MAX_VALUE_CHARS {
            return Err(CampusQrError::AdditionalDataTooLong { len });
        }
    }
    let merchant_id = qr.merchant_id();
    let (name, alternate_name) = merchant_names(params.merchant_name, merchant_id);

    let mut p = EmvPayload::new();
    p.push(0, "01")?;
    p.push(
        1,
        if matches!(qr, MerchantQr::Dynamic { .. }) {
            "12"
        } else {
            "11"
        },
    )?;
    let mut account = vec![
        SubField::new(0, CAMPUS_GUID),
        SubField::new(1, merchant_id.as_str()),
    ];
    if let Some(t) = qr.terminal_id() {
        account.push(SubField::new(2, t.as_str()));
    }
    p.push_template(ACCOUNT_TAG, account)?;
    p.push(52, params.mcc)?;
    p.push(53, CNY)?;
    if let MerchantQr::Dynamic { amount, .. } = qr {
        p.push(54, &amount.to_string())?;
    }
    p.push(58, "CN")?;
    p.push(59, &name)?;
    p.push(60, params.city)?;
    if let MerchantQr::Dynamic {
        terminal_id,
        reference,
        signature,
        ..
    } = qr
    {
        p.push_template(
            ADDITIONAL_TAG,
            vec![
                SubField::new(REFERENCE_SUB, reference.as_str()),
                // A generic wallet shows the terminal label; we also keep it in 26/02.
                SubField::new(TERMINAL_SUB, terminal_id.as_str()),
                SubField::new(SIGNATURE_SUB, signature.as_str()),
            ],
        )?;
    }
    if let Some(alt) = alternate_name {
        p.push_template(64, vec![SubField::new(0, "ZH"), SubField::new(1, alt)])?;
    }
    Ok(encode(&p))
}

/// Decodes and checks a scanned campus code. The signature is only checked for form: verifying
/// it (and that the reference is unused and unexpired) is the gateway's job.
///
/// The terminal is read from 26/02, else from 62/07; when both are present they must agree.
pub fn decode_campus(payload: &str) -> Result<MerchantQr, CampusQrError> {
    let p = decode(payload)?;
    let mut ours = p
        .fields()
        .iter()
        .filter(|f| (26..=51).contains(&f.id()) && f.sub(0) == Some(CAMPUS_GUID));
    let account = ours.next().ok_or(CampusQrError::NotCampus)?;
    if ours.next().is_some() {
        return Err(CampusQrError::DuplicateCampusAccount);
    }
    let merchant_id = MerchantId::parse(account.sub(1).ok_or(CampusQrError::MissingMerchantId)?)
        .map_err(CampusQrError::BadMerchantId)?;
    let parse_terminal = |s: Option<&str>| {
        s.map(TerminalId::parse)
            .transpose()
            .map_err(CampusQrError::BadTerminalId)
    };
    let terminal_id = match (
        parse_terminal(account.sub(2))?,
        parse_terminal(p.sub(ADDITIONAL_TAG, TERMINAL_SUB))?,
    ) {
        (Some(a), Some(l)) if a != l => return Err(CampusQrError::TerminalMismatch),
        (a, l) => a.or(l),
    };
    // 53 is mandatory, so `decode` has already made sure it is there.
    let currency = p.get(53).unwrap_or_default();
    if currency != CNY {
        return Err(CampusQrError::WrongCurrency {
            found: currency.to_owned(),
        });
    }
    let reference = p.sub(ADDITIONAL_TAG, REFERENCE_SUB);
    let signature = p.sub(ADDITIONAL_TAG, SIGNATURE_SUB);
    match p.get(1) {
        Some("11") => {
            if p.get(54).is_some() {
                return Err(CampusQrError::StaticWithAmount);
            }
            // A dynamic code flipped to static (CRC recomputed) must not pass as a printed code.
            if reference.is_some() {
                return Err(CampusQrError::StaticWithDynamicData("reference (62/05)"));
            }
            if signature.is_some() {
                return Err(CampusQrError::StaticWithDynamicData("signature (62/50)"));
            }
            Ok(MerchantQr::Static {
                merchant_id,
                terminal_id,
            })
        }
        Some("12") => {
            let amount = p
                .get(54)
                .ok_or(CampusQrError::DynamicMissing("amount (54)"))?;
            let amount = Amount::parse(amount).map_err(CampusQrError::BadAmount)?;
            let reference = reference.ok_or(CampusQrError::DynamicMissing("reference (62/05)"))?;
            if !valid_reference(reference) {
                return Err(CampusQrError::BadReference);
            }
            let terminal_id =
                terminal_id.ok_or(CampusQrError::DynamicMissing("terminal (62/07)"))?;
            let signature = signature.ok_or(CampusQrError::DynamicMissing("signature (62/50)"))?;
            if !valid_signature(signature) {
                return Err(CampusQrError::BadSignature);
            }
            Ok(MerchantQr::Dynamic {
                merchant_id,
                terminal_id,
                amount,
                reference: reference.to_owned(),
                signature: signature.to_owned(),
            })
        }
        // `decode` rejects any other value of 01, so it is absent here.
        _ => Err(CampusQrError::MissingInitiation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// EMVCo MPM v1 specification example (appendix); also the reference vector in the test
    /// suites of juanroman/emvqr (C#), dongri/emv-qrcode (Go) and exemvi (Elixir).
    const EMVCO: &str = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";
    /// Banco Central do Brasil, Pix BR Code manual: the official static example (no tag 01).
    const PIX_MIN: &str = "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D";
    /// Fuller BR Code from a public Pix library's tests: primitive MAI 04, two account
    /// templates, postal code 61, unreserved template 80.
    const PIX_FULL: &str = "00020104141234567890123426580014BR.GOV.BCB.PIX0136123e4567-e12b-12d1-a456-42665544000027300012BR.COM.OUTRO011001234567895204000053039865406123.455802BR5917NOME DO RECEBEDOR6008BRASILIA61087007490062190515RP12345678-201980390012BR.COM.OUTRO01190123.ABCD.3456.WXYZ6304AD38";
    /// dongri/emv-qrcode README output: primitive MAI 13 and 04 (JCB, Mastercard ranges).
    const DONGRI: &str = "0002010102121313JCB12345678900416MASTER12345678905204531153033925407999.1235802JP5906DONGRI6005TOKYO62240104hoge0504fuga0704piyo6304C343";

    /// Flattens a payload to ("id" | "id/sub", value) pairs in order.
    fn dump(p: &EmvPayload) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in p.fields() {
            match f.subs() {
                None => out.push((format!("{:02}", f.id()), f.value().to_owned())),
                Some(subs) => {
                    for s in subs {
                        out.push((format!("{:02}/{:02}", f.id(), s.id), s.value.clone()));
                    }
                }
            }
        }
        out
    }

    fn check_vector(payload: &str, crc: &str, expected: &[(&str, &str)]) {
        let p = decode(payload).unwrap();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(dump(&p), want);
        assert_eq!(p.crc(), crc);
        assert_eq!(encode(&p), payload, "re-encodes byte for byte");
    }

    /// `body` + "6304" + its CRC.
    fn with_crc(body: &str) -> String {
        let covered = format!("{body}6304");
        format!("{covered}{:04X}", crc16_ccitt_false(covered.as_bytes()))
    }

    /// The smallest valid body: 00, one primitive MAI (02), 52, 53, 58, 59, 60. 57 characters.
    const MIN_BODY: &str = concat!(
        "000201",
        "02164111111111111111",
        "52045812",
        "5303156",
        "5802CN",
        "5901X",
        "6001Y"
    );

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
    }

    #[test]
    fn emvco_spec_example() {
        check_vector(
            EMVCO,
            "A13A",
            &[
                ("00", "01"),
                ("01", "12"),
                ("29/00", "D15600000000"),
                ("29/05", "A93FO3230Q"),
                ("31/00", "D15600000001"),
                ("31/03", "12345678"),
                ("52", "4111"),
                ("58", "CN"),
                ("59", "BEST TRANSPORT"),
                ("60", "BEIJING"),
                ("64/00", "ZH"),
                ("64/01", "最佳运输"),
                ("64/02", "北京"),
                ("54", "23.72"),
                ("53", "156"),
                ("55", "01"),
                ("62/03", "1234"),
                ("62/06", "***"),
                ("62/07", "A6008667"),
                ("62/09", "ME"),
                ("91/00", "A011223344998877"),
                ("91/07", "12345678"),
            ],
        );
        assert_eq!(display_name(&decode(EMVCO).unwrap()), Some("最佳运输"));
    }

    #[test]
    fn other_public_vectors() {
        check_vector(
            PIX_MIN,
            "1D3D",
            &[
                ("00", "01"),
                ("26/00", "br.gov.bcb.pix"),
                ("26/01", "123e4567-e12b-12d1-a456-426655440000"),
                ("52", "0000"),
                ("53", "986"),
                ("58", "BR"),
                ("59", "Fulano de Tal"),
                ("60", "BRASILIA"),
                ("62/05", "***"),
            ],
        );
        check_vector(
            PIX_FULL,
            "AD38",
            &[
                ("00", "01"),
                ("04", "12345678901234"),
                ("26/00", "BR.GOV.BCB.PIX"),
                ("26/01", "123e4567-e12b-12d1-a456-426655440000"),
                ("27/00", "BR.COM.OUTRO"),
                ("27/01", "0123456789"),
                ("52", "0000"),
                ("53", "986"),
                ("54", "123.45"),
                ("58", "BR"),
                ("59", "NOME DO RECEBEDOR"),
                ("60", "BRASILIA"),
                ("61", "70074900"),
                ("62/05", "RP12345678-2019"),
                ("80/00", "BR.COM.OUTRO"),
                ("80/01", "0123.ABCD.3456.WXYZ"),
            ],
        );
        check_vector(
            DONGRI,
            "C343",
            &[
                ("00", "01"),
                ("01", "12"),
                ("13", "JCB1234567890"),
                ("04", "MASTER1234567890"),
                ("52", "5311"),
                ("53", "392"),
                ("54", "999.123"),
                ("58", "JP"),
                ("59", "DONGRI"),
                ("60", "TOKYO"),
                ("62/01", "hoge"),
                ("62/05", "fuga"),
                ("62/07", "piyo"),
            ],
        );
    }

    #[test]
    fn any_single_ascii_substitution_is_caught() {
        // CRC-16 detects every error burst of up to 16 bits; an ASCII substitution is 8 bits.
        for vector in [EMVCO, PIX_MIN, PIX_FULL, DONGRI] {
            let chars: Vec<char> = vector.chars().collect();
            for i in 0..chars.len() - 4 {
                if !chars[i].is_ascii() {
                    continue;
                }
                let mut bad = chars.clone();
                bad[i] = if chars[i] == 'X' { 'Y' } else { 'X' };
                let bad: String = bad.into_iter().collect();
                assert!(decode(&bad).is_err(), "{bad}");
            }
        }
        let altered = EMVCO.replace("BEIJING", "BEIJINX");
        assert!(matches!(decode(&altered),
            Err(EmvError::CrcMismatch { found, .. }) if found == "A13A"));
    }

    #[test]
    fn crc_must_be_uppercase_last_and_four_long() {
        let lower = PIX_MIN.replace("63041D3D", "63041d3d");
        assert_eq!(
            decode(&lower),
            Err(EmvError::CrcFormat {
                found: "1d3d".into()
            })
        );
        let tail = with_crc(MIN_BODY);
        let crc_object = &tail[tail.len() - 8..];
        let not_last = format!("{}{crc_object}6101Z", &tail[..tail.len() - 8]);
        assert_eq!(decode(&not_last), Err(EmvError::CrcNotLast));
        assert_eq!(
            decode(&format!("{MIN_BODY}6303ABC")),
            Err(EmvError::CrcLength { len: 3 })
        );
        assert_eq!(decode(MIN_BODY), Err(EmvError::MissingTag { id: 63 }));
        assert_eq!(decode(""), Err(EmvError::MissingTag { id: 63 }));
    }

    #[test]
    fn syntax_errors_are_precise() {
        assert!(decode(&with_crc(MIN_BODY)).is_ok());
        let cases: Vec<(String, EmvError)> = vec![
            (
                format!("{MIN_BODY}6"),
                EmvError::TruncatedHeader { pos: 57 },
            ),
            (
                format!("{MIN_BODY}A101x"),
                EmvError::BadId {
                    pos: 57,
                    found: "A1".into(),
                },
            ),
            (
                format!("{MIN_BODY}61x1x"),
                EmvError::BadLength {
                    pos: 59,
                    id: 61,
                    found: "x1".into(),
                },
            ),
            (
                format!("{MIN_BODY}6109abc"),
                EmvError::ValuePastEnd {
                    id: 61,
                    declared: 9,
                    available: 3,
                },
            ),
            (
                with_crc(&format!("{MIN_BODY}5901Z")),
                EmvError::DuplicateTag { id: 59 },
            ),
            (
                with_crc(&format!("{MIN_BODY}62100501A0501B")),
                EmvError::DuplicateSubTag {
                    template: 62,
                    id: 5,
                },
            ),
            (
                with_crc(&format!("000201010213{}", &MIN_BODY[6..])),
                EmvError::PointOfInitiation { found: "13".into() },
            ),
            (
                with_crc(&MIN_BODY.replacen("000201", "000202", 1)),
                EmvError::PayloadFormat { found: "02".into() },
            ),
            (
                with_crc(&format!("{}000201", &MIN_BODY[6..])),
                EmvError::PayloadFormatNotFirst,
            ),
            (
                with_crc(&MIN_BODY.replace("02164111111111111111", "")),
                EmvError::NoMerchantAccount,
            ),
            (
                with_crc(&MIN_BODY.replace("6001Y", "")),
                EmvError::MissingTag { id: 60 },
            ),
            ("0".repeat(513), EmvError::TooLong),
        ];
        for (payload, want) in cases {
            assert_eq!(decode(&payload), Err(want), "{payload}");
        }
        // Templates must hold valid TLV, whichever range they are in.
        for id in [26, 51, 62, 64, 80, 99] {
            let bad = with_crc(&format!("{MIN_BODY}{id:02}03abc"));
            assert!(matches!(decode(&bad), Err(EmvError::BadTemplate { id: t, .. }) if t == id));
        }
        // ...while 02-25 and 65-79 are opaque.
        assert!(decode(&with_crc(&format!("{MIN_BODY}2503abc6503abc"))).is_ok());
    }

    #[test]
    fn builder_keeps_payloads_encodable() {
        let mut p = EmvPayload::new();
        assert_eq!(p.push(26, "x"), Err(EmvError::ExpectedTemplate { id: 26 }));
        assert_eq!(
            p.push_template(59, vec![]),
            Err(EmvError::NotATemplate { id: 59 })
        );
        assert_eq!(p.push(63, "ABCD"), Err(EmvError::CrcIsComputed));
        assert_eq!(p.push(100, "x"), Err(EmvError::IdOutOfRange { id: 100 }));
        assert_eq!(
            p.push(59, &"x".repeat(100)),
            Err(EmvError::ValueTooLong { id: 59, len: 100 })
        );
        assert_eq!(
            p.push_template(62, vec![SubField::new(1, "a"), SubField::new(1, "b")]),
            Err(EmvError::DuplicateSubTag {
                template: 62,
                id: 1
            })
        );
        p.push(59, "食堂").unwrap();
        assert_eq!(p.push(59, "x"), Err(EmvError::DuplicateTag { id: 59 }));
        for id in 65..=68 {
            p.push(id, &"y".repeat(99)).unwrap();
        }
        // 10 + 4 × 103 used; 82 more characters and the CRC object make exactly 512.
        p.push(69, &"y".repeat(82)).unwrap();
        assert_eq!(p.push(70, ""), Err(EmvError::TooLong));
        let full = encode(&p);
        assert_eq!(full.chars().count(), MAX_PAYLOAD_CHARS);
        assert_eq!(
            decode(&full).map(|_| ()),
            Err(EmvError::MissingTag { id: 0 }),
            "size is fine"
        );
    }

    #[test]
    fn names_and_display() {
        assert_eq!(tag_name(0, None), "Payload Format Indicator");
        assert_eq!(tag_name(30, None), "Merchant Account Information");
        assert_eq!(tag_name(0, Some(26)), "Globally Unique Identifier");
        assert_eq!(tag_name(7, Some(62)), "Terminal Label");
        assert_eq!(tag_name(1, Some(64)), "Merchant Name—Alternate Language");
        assert_eq!(tag_name(70, None), "RFU for EMVCo");
        let d = describe(EMVCO).unwrap();
        assert!(d.valid && d.crc_valid && d.error.is_none());
        let shown = d.to_text();
        assert!(
            shown.contains("59 Merchant Name: BEST TRANSPORT\n"),
            "{shown}"
        );
        assert!(
            shown.contains("   01 Merchant Name—Alternate Language: 最佳运输\n"),
            "{shown}"
        );
        assert!(shown.ends_with("63 CRC: A13A (ok)\n"), "{shown}");
    }

    #[test]
    fn describe_still_lists_a_damaged_code() {
        let d = describe(&EMVCO.replace("A13A", "A13B")).unwrap();
        assert!(!d.crc_valid && !d.valid);
        assert_eq!((d.crc.as_str(), d.crc_expected.as_str()), ("A13B", "A13A"));
        assert_eq!(d.fields.len(), 14);
        assert_eq!(d.fields[2].subs[1].name, "Payment Network Specific");
        assert!(d.to_text().contains("(WRONG, payload computes to A13A)"));
        let d = describe(&with_crc(&MIN_BODY.replace("6001Y", ""))).unwrap();
        assert!(d.crc_valid && !d.valid);
        assert!(d.error.unwrap().contains("60"));
        assert_eq!(
            describe("0002"),
            Err(EmvError::ValuePastEnd {
                id: 0,
                declared: 2,
                available: 0
            })
        );
    }

    fn mid(s: &str) -> MerchantId {
        MerchantId::parse(s).unwrap()
    }
    fn tid(s: &str) -> TerminalId {
        TerminalId::parse(s).unwrap()
    }
    fn dynamic() -> MerchantQr {
        MerchantQr::Dynamic {
            merchant_id: mid("canteen-1"),
            terminal_id: tid("T01"),
            amount: Amount::parse("8").unwrap(),
            reference: "R20240901A".into(),
            signature: "0123456789abcdef0123456789ABCDEF".into(),
        }
    }

    #[test]
    fn campus_codes_have_a_pinned_layout() {
        let stat = MerchantQr::Static {
            merchant_id: mid("canteen-1"),
            terminal_id: None,
        };
        // Checked independently (Python CRC-16/CCITT-FALSE).
        assert_eq!(
            encode_campus(&stat, "第一食堂").unwrap(),
            "00020101021126330016cn.edu.campuspay0109canteen-15204581253031565802CN5909canteen-16006CAMPUS64140002ZH0104第一食堂63042D5A"
        );
        let dynamic_code = encode_campus(&dynamic(), "Canteen One").unwrap();
        let p = decode(&dynamic_code).unwrap();
        assert_eq!(p.get(1), Some("12"));
        assert_eq!(p.get(54), Some("8.00"));
        assert_eq!(p.get(59), Some("Canteen One"));
        assert_eq!(p.sub(26, 2), Some("T01"));
        assert_eq!(p.sub(62, 5), Some("R20240901A"));
        assert_eq!(p.sub(62, 7), Some("T01"));
        assert_eq!(p.sub(62, 50), Some("0123456789abcdef0123456789ABCDEF"));
        assert_eq!(p.template(64), None);
        assert_eq!(decode_campus(&dynamic_code), Ok(dynamic()));
        assert_eq!(
            dynamic().signing_input().unwrap(),
            "campuspay-qr-v1|canteen-1|T01|8.00|R20240901A"
        );
    }

    #[test]
    fn campus_names_are_cut_not_rejected() {
        let qr = MerchantQr::Static {
            merchant_id: mid("m1"),
            terminal_id: Some(tid("t1")),
        };
        let long = "A".repeat(40);
        let p = decode(&encode_campus(&qr, &long).unwrap()).unwrap();
        assert_eq!(p.get(59), Some("A".repeat(25).as_str()));
        let p = decode(&encode_campus(&qr, &"食".repeat(40)).unwrap()).unwrap();
        assert_eq!((p.get(59), p.sub(64, 0)), (Some("m1"), Some("ZH")));
        assert_eq!(display_name(&p), Some("食".repeat(25).as_str()));
        let p = decode(&encode_campus(&qr, " \n ").unwrap()).unwrap();
        assert_eq!(p.get(59), Some("m1"));
    }

    fn dynamic_with(terminal: &str, reference: &str, signature: &str) -> MerchantQr {
        MerchantQr::Dynamic {
            merchant_id: mid("m1"),
            terminal_id: tid(terminal),
            amount: Amount::parse("1.50").unwrap(),
            reference: reference.into(),
            signature: signature.into(),
        }
    }

    #[test]
    fn campus_encode_rejects_bad_inputs() {
        let enc = |t: &str, r: &str, s: &str| encode_campus(&dynamic_with(t, r, s), "x");
        assert!(enc("T1", "R1", "AB").is_ok());
        assert_eq!(enc("T1", "", "AB"), Err(CampusQrError::BadReference));
        assert_eq!(
            enc("T1", "has-dash", "AB"),
            Err(CampusQrError::BadReference)
        );
        assert_eq!(
            enc("T1", &"R".repeat(26), "AB"),
            Err(CampusQrError::BadReference)
        );
        assert_eq!(enc("T1", "R1", "xyz"), Err(CampusQrError::BadSignature));
        assert_eq!(
            enc("T1", "R1", &"A".repeat(33)),
            Err(CampusQrError::BadSignature)
        );
        let (t, r, s) = ("T".repeat(32), "R".repeat(25), "A".repeat(32));
        assert_eq!(
            enc(&t, &r, &s),
            Err(CampusQrError::AdditionalDataTooLong { len: 101 })
        );
        assert!(enc(&t, &r[..23], &s).is_ok(), "99 characters fit");
        let qr = dynamic();
        let params = |mcc, city| CampusQrParams {
            merchant_name: "x",
            mcc,
            city,
        };
        assert_eq!(
            encode_campus_with(&qr, &params("58a2", "C")),
            Err(CampusQrError::BadMcc("58a2".into()))
        );
        assert_eq!(
            encode_campus_with(&qr, &params("5812", "")),
            Err(CampusQrError::BadCity("".into()))
        );
        assert_eq!(
            encode_campus_with(&qr, &params("5812", "北京")),
            Err(CampusQrError::BadCity("北京".into()))
        );
    }

    #[test]
    fn campus_decode_rejects_what_is_not_ours_or_inconsistent() {
        assert_eq!(decode_campus(EMVCO), Err(CampusQrError::NotCampus));
        assert!(matches!(
            decode_campus(&EMVCO.replace("A13A", "A13B")),
            Err(CampusQrError::Emv(EmvError::CrcMismatch { .. }))
        ));
        let acct = "26330016cn.edu.campuspay0109canteen-1";
        let tail = "52045812";
        let rest = "5802CN5901X6001Y";
        let sig = "5004ABCD";
        let cases: Vec<(String, CampusQrError)> = vec![
            (
                format!("000201010211{acct}{tail}5303156540510.00{rest}"),
                CampusQrError::StaticWithAmount,
            ),
            (
                format!("000201010211{acct}{tail}5303156{rest}62130501R{sig}"),
                CampusQrError::StaticWithDynamicData("reference (62/05)"),
            ),
            (
                format!("000201{acct}{tail}5303156{rest}"),
                CampusQrError::MissingInitiation,
            ),
            (
                format!("000201010211{acct}{tail}5303840{rest}"),
                CampusQrError::WrongCurrency {
                    found: "840".into(),
                },
            ),
            (
                format!("000201010212{acct}{tail}5303156{rest}62200501R0703T01{sig}"),
                CampusQrError::DynamicMissing("amount (54)"),
            ),
            (
                format!("000201010212{acct}{tail}530315654040.00{rest}62200501R0703T01{sig}"),
                CampusQrError::BadAmount(AmountError::NotPositive),
            ),
            (
                format!("000201010212{acct}{tail}530315654041.00{rest}62150703T01{sig}"),
                CampusQrError::DynamicMissing("reference (62/05)"),
            ),
            (
                format!("000201010212{acct}{tail}530315654041.00{rest}62130501R{sig}"),
                CampusQrError::DynamicMissing("terminal (62/07)"),
            ),
            (
                format!("000201010212{acct}{tail}530315654041.00{rest}62120501R0703T01"),
                CampusQrError::DynamicMissing("signature (62/50)"),
            ),
            (
                format!(
                    "000201010212{}0203T02{tail}530315654041.00{rest}62200501R0703T01{sig}",
                    acct.replace("2633", "2640")
                ),
                CampusQrError::TerminalMismatch,
            ),
            (
                format!(
                    "000201010211{}{tail}5303156{rest}",
                    acct.replace("0109canteen-1", "0109canteen.1")
                ),
                CampusQrError::BadMerchantId(IdError::Invalid {
                    kind: "merchant id",
                }),
            ),
            (
                format!(
                    "000201010211{acct}{}{tail}5303156{rest}",
                    acct.replacen("26", "27", 1)
                ),
                CampusQrError::DuplicateCampusAccount,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(decode_campus(&with_crc(&body)), Err(want), "{body}");
        }
    }

    /// A generated top-level object: primitive or template.
    #[derive(Debug, Clone)]
    enum Gen {
        P(String),
        T(Vec<SubField>),
    }

    fn arb_payload() -> impl Strategy<Value = EmvPayload> {
        let prim = || "[ -~一-龥]{1,99}".prop_map(Gen::P);
        let tmpl = || {
            prop::collection::btree_map(0u8..=99, "[ -~一-龥]{1,20}", 1..=4)
                .prop_map(|m| Gen::T(m.into_iter().map(|(id, v)| SubField::new(id, v)).collect()))
        };
        let mandatory = (prim(), prim(), prim(), prim(), prim())
            .prop_map(|(a, b, c, d, e)| vec![(52, a), (53, b), (58, c), (59, d), (60, e)]);
        (
            prop::option::of(prop_oneof![Just("11"), Just("12")]),
            prop::collection::btree_map(2u8..=25, prim(), 0..=1),
            prop::collection::btree_map(26u8..=51, tmpl(), 1..=1),
            mandatory,
            prop::collection::btree_map(
                prop_oneof![54u8..=57, Just(61u8), 65u8..=79],
                prim(),
                0..=2,
            ),
            prop::collection::btree_map(
                prop_oneof![Just(62u8), Just(64u8), 80u8..=99],
                tmpl(),
                0..=1,
            ),
        )
            .prop_flat_map(|(poi, mai_p, mai_t, mandatory, opt_p, opt_t)| {
                let mut rest: Vec<(u8, Gen)> = mandatory;
                rest.extend(mai_p.into_iter().chain(mai_t).chain(opt_p).chain(opt_t));
                rest.extend(poi.map(|v| (1, Gen::P(v.to_owned()))));
                Just(rest).prop_shuffle()
            })
            .prop_filter_map("must fit 512 characters", |rest| {
                let mut p = EmvPayload::new();
                p.push(0, "01").ok()?;
                for (id, g) in rest {
                    match g {
                        Gen::P(v) => p.push(id, &v).ok()?,
                        Gen::T(subs) => p.push_template(id, subs).ok()?,
                    }
                }
                Some(p)
            })
    }

    fn arb_campus() -> impl Strategy<Value = MerchantQr> {
        let id = "[A-Za-z0-9_-]{1,32}";
        let amount = (1u32..=10_000_000)
            .prop_map(|fen| Amount::parse(&format!("{}.{:02}", fen / 100, fen % 100)).unwrap());
        prop_oneof![
            (id, prop::option::of(id)).prop_map(|(m, t)| MerchantQr::Static {
                merchant_id: mid(&m),
                terminal_id: t.map(|t| tid(&t)),
            }),
            (id, id, amount, "[A-Za-z0-9]{1,25}", "[0-9a-fA-F]{1,32}").prop_map(
                |(m, t, amount, reference, signature)| {
                    MerchantQr::Dynamic {
                        merchant_id: mid(&m),
                        terminal_id: tid(&t),
                        amount,
                        reference,
                        signature,
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn generic_payloads_round_trip(p in arb_payload()) {
            let encoded = encode(&p);
            prop_assert_eq!(decode(&encoded), Ok(p));
        }

        #[test]
        fn campus_codes_round_trip(qr in arb_campus(), name in "[ -~一-龥]{0,40}") {
            let too_long = match &qr {
                MerchantQr::Dynamic { terminal_id, reference, signature, .. } =>
                    12 + terminal_id.as_str().len() + reference.len() + signature.len() > 99,
                MerchantQr::Static { .. } => false,
            };
            match encode_campus(&qr, &name) {
                Ok(code) => {
                    prop_assert!(!too_long);
                    prop_assert_eq!(encode(&decode(&code).unwrap()), code.clone());
                    prop_assert_eq!(decode_campus(&code), Ok(qr));
                }
                Err(e) => {
                    prop_assert!(too_long);
                    prop_assert!(matches!(e, CampusQrError::AdditionalDataTooLong { .. }), "{e:?}");
                }
            }
        }

        #[test]
        fn substitutions_in_campus_codes_are_caught(qr in arb_campus(), at in any::<prop::sample::Index>(), c in "[ -~]") {
            if let Ok(code) = encode_campus(&qr, "Canteen") {
                let mut chars: Vec<char> = code.chars().collect();
                let i = at.index(chars.len() - 4);
                let c = c.chars().next().unwrap();
                prop_assume!(chars[i] != c);
                chars[i] = c;
                prop_assert!(decode(&chars.into_iter().collect::<String>()).is_err());
            }
        }
    }
}
