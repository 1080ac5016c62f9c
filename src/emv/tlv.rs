//! EMV MPM data objects: [`EmvPayload`] and its fields, the checked builder, [`encode`] and
//! [`decode`], and the CRC-16/CCITT-FALSE of object 63.

/// EMV caps a payload at 512 characters. Checking first also bounds the work a hostile body
/// can cause before anything is allocated per character.
pub const MAX_PAYLOAD_CHARS: usize = 512;
/// A length is two decimal digits.
pub const MAX_VALUE_CHARS: usize = 99;
pub(super) const CRC_ID: u8 = 63;
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

pub(super) fn parse_template(id: u8, value: &str) -> Result<Vec<SubField>, EmvError> {
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
pub(super) struct Split {
    /// Every object before 63, in order.
    pub(super) body: Vec<(u8, String)>,
    /// The CRC as written in the payload.
    pub(super) found: String,
    /// The CRC the payload computes to.
    pub(super) expected: String,
}

/// What must hold before a CRC can be computed: the length bound, syntax, unique ids, and a
/// four-character object 63 at the end.
pub(super) fn split(payload: &str) -> Result<Split, EmvError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emv::test_vectors::{with_crc, DONGRI, EMVCO, MIN_BODY, PIX_FULL, PIX_MIN};
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn generic_payloads_round_trip(p in arb_payload()) {
            let encoded = encode(&p);
            prop_assert_eq!(decode(&encoded), Ok(p));
        }
    }
}
