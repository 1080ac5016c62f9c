//! A payload taken apart for people: [`describe`] and the EMV names of objects ([`tag_name`]),
//! for `campuspay qr decode`.

use super::tlv::{decode, is_template, parse_template, split, EmvError, Split, CRC_ID};
use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emv::test_vectors::{with_crc, EMVCO, MIN_BODY};

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
}
