//! Merchant-presented QR codes (正扫): the three campus code kinds of docs/ARCHITECTURE.md §1
//! ([`MerchantQr`], [`encode_campus`], [`decode_campus`]), mapped onto the generic EMV MPM codec
//! of [`crate::emv`].

use super::ids::{IdError, MerchantId, TerminalId};
use super::money::{Amount, AmountError};
use crate::emv::{decode, encode, EmvError, EmvPayload, SubField, MAX_VALUE_CHARS};

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
    use crate::emv::test_vectors::{with_crc, EMVCO};
    use proptest::prelude::*;

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

    #[test]
    fn display_name_prefers_the_alternate_language() {
        assert_eq!(display_name(&decode(EMVCO).unwrap()), Some("最佳运输"));
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
