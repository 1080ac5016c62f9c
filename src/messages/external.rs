//! External JSON messages (`scan.v1`, `result.v1`), parsed in two steps so that bad input is
//! handled exactly as docs/ARCHITECTURE.md §2 says: what cannot be tied to a request at all is
//! dead-lettered; what can is answered with a `declined` result naming the reason.

use crate::domain::{
    Amount, CodePrefix, DeclineReason, MerchantId, Money, PaymentCode, PaymentMode, RequestId,
    TerminalId, TransactionId, TxState, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SCAN_V1: &str = "scan.v1";
pub const RESULT_V1: &str = "result.v1";
pub const DYNAMIC_QR_V1: &str = "dynamic_qr.v1";
pub const DYNAMIC_QR_ISSUED_V1: &str = "dynamic_qr_issued.v1";
pub const QUERY_V1: &str = "query.v1";
pub const REVERSAL_V1: &str = "reversal.v1";
pub const QUERY_STATUS_V1: &str = "query_status.v1";
pub const CONFIRMATION_REQUEST_V1: &str = "confirmation_request.v1";

/// What a POS message's routing key says: `pos.<merchant>.<terminal>.<verb>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosRoute {
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub verb: String,
}

impl PosRoute {
    pub fn parse(routing_key: &str) -> Option<PosRoute> {
        let mut parts = routing_key.split('.');
        let (Some("pos"), Some(m), Some(t), Some(verb), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        Some(PosRoute {
            merchant_id: MerchantId::parse(m).ok()?,
            terminal_id: TerminalId::parse(t).ok()?,
            verb: verb.to_owned(),
        })
    }

    /// Whether a body's merchant and terminal are this route's: a terminal may act only as the
    /// terminal its routing key (and so its checked JWT) names.
    pub fn is_for(&self, merchant: &str, terminal: &str) -> bool {
        merchant == self.merchant_id.as_str() && terminal == self.terminal_id.as_str()
    }

    pub fn result_key(&self) -> String {
        pos_result_key(&self.merchant_id, &self.terminal_id)
    }
}

pub fn pos_result_key(m: &MerchantId, t: &TerminalId) -> String {
    format!("pos.{m}.{t}")
}

pub fn user_result_key(u: &UserId) -> String {
    format!("user.{u}")
}

/// Why a message was dead-lettered rather than answered (the `x-campuspay-reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    TooLarge,
    BadRoutingKey,
    NotJson,
    UnknownType,
    NoRequestId,
    UndecodableStageMessage,
    /// An internal stage message whose MAC does not verify: forged or altered.
    UnauthenticatedStageMessage,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::TooLarge => "too_large",
            DeadReason::BadRoutingKey => "bad_routing_key",
            DeadReason::NotJson => "not_json",
            DeadReason::UnknownType => "unknown_type",
            DeadReason::NoRequestId => "no_request_id",
            DeadReason::UndecodableStageMessage => "undecodable_stage_message",
            DeadReason::UnauthenticatedStageMessage => "unauthenticated_stage_message",
        }
    }
}

/// The envelope: just enough to know what the message is and whom to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: String,
    pub request_id: RequestId,
}

/// Step one: is this a JSON object of a known type with a usable `request_id`?
pub fn parse_envelope(body: &[u8], known_types: &[&str]) -> Result<Envelope, DeadReason> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| DeadReason::NotJson)?;
    let obj = value.as_object().ok_or(DeadReason::NotJson)?;
    let kind = obj
        .get("type")
        .and_then(|v| v.as_str())
        .filter(|k| known_types.contains(k))
        .ok_or(DeadReason::UnknownType)?;
    let request_id = obj
        .get("request_id")
        .and_then(|v| v.as_str())
        .and_then(|s| RequestId::parse(s).ok())
        .ok_or(DeadReason::NoRequestId)?;
    Ok(Envelope {
        kind: kind.to_owned(),
        request_id,
    })
}

/// `scan.v1` exactly as on the wire. Unknown and duplicate fields are errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: String,
    pub merchant_id: String,
    pub terminal_id: String,
    pub payment_code: String,
    pub amount: String,
    pub sent_at: String,
}

/// A scan after parsing: every field a domain type, or the reason it is declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub request_id: RequestId,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub payment_code: PaymentCode,
    pub amount: Amount,
    pub sent_at: DateTime<Utc>,
}

/// A scan that parsed far enough to answer but must be declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanDecline {
    pub reason: DeclineReason,
    /// Known when the amount itself parsed, so the decline can echo it.
    pub amount: Option<Amount>,
}

/// Step two, for a message whose envelope is a `scan.v1` and whose routing key is `route`.
/// The terminal's identity in the body must be the one in the routing key (which the JWT was
/// checked against). `issuing` is the campus's code prefix (codes with the legacy one pass too).
pub fn parse_scan(
    body: &[u8],
    route: &PosRoute,
    issuing: CodePrefix,
) -> Result<ScanRequest, ScanDecline> {
    let invalid = |amount| ScanDecline {
        reason: DeclineReason::InvalidMessage,
        amount,
    };
    let wire: ScanV1 = serde_json::from_slice(body).map_err(|_| invalid(None))?;
    let amount = Amount::parse(&wire.amount).ok();
    if wire.kind != SCAN_V1 {
        return Err(invalid(amount));
    }
    let request_id = RequestId::parse(&wire.request_id).map_err(|_| invalid(amount))?;
    if !route.is_for(&wire.merchant_id, &wire.terminal_id) {
        return Err(ScanDecline {
            reason: DeclineReason::Unauthorized,
            amount,
        });
    }
    let sent_at = DateTime::parse_from_rfc3339(&wire.sent_at)
        .map_err(|_| invalid(amount))?
        .with_timezone(&Utc);
    let amount = amount.ok_or(ScanDecline {
        reason: DeclineReason::InvalidAmount,
        amount: None,
    })?;
    let payment_code =
        PaymentCode::parse(&wire.payment_code, issuing).map_err(|_| ScanDecline {
            reason: DeclineReason::UnknownCode,
            amount: Some(amount),
        })?;
    Ok(ScanRequest {
        request_id,
        merchant_id: route.merchant_id.clone(),
        terminal_id: route.terminal_id.clone(),
        payment_code,
        amount,
        sent_at,
    })
}

/// `query.v1` and `reversal.v1`: a POS that heard nothing asks about, or cancels, its earlier
/// request `request_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: String,
    pub merchant_id: String,
    pub terminal_id: String,
    pub sent_at: String,
}

/// Parses a `query.v1` or `reversal.v1` (`expected` names which) whose envelope and routing key
/// were already checked.
pub fn parse_follow_up(
    body: &[u8],
    route: &PosRoute,
    expected: &str,
) -> Result<RequestId, DeclineReason> {
    let wire: FollowUpV1 =
        serde_json::from_slice(body).map_err(|_| DeclineReason::InvalidMessage)?;
    if wire.kind != expected || DateTime::parse_from_rfc3339(&wire.sent_at).is_err() {
        return Err(DeclineReason::InvalidMessage);
    }
    if !route.is_for(&wire.merchant_id, &wire.terminal_id) {
        return Err(DeclineReason::Unauthorized);
    }
    RequestId::parse(&wire.request_id).map_err(|_| DeclineReason::InvalidMessage)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryState {
    /// Never seen: safe to send the request again (same `request_id`) or give up.
    Unknown,
    /// Accepted and on its way: its `result.v1` will follow.
    Processing,
    /// The query or reversal itself was refused (`reason`).
    Rejected,
}

/// `query_status.v1`: the answer to a `query.v1` (or a refused `reversal.v1`) when there is no
/// final result to re-send. A request with a final result is answered with that `result.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryStatusV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: RequestId,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub state: QueryState,
    pub reason: Option<DeclineReason>,
    pub checked_at: String,
}

/// `dynamic_qr.v1`: a POS asks for a dynamic merchant QR code carrying an amount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicQrV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: String,
    pub merchant_id: String,
    pub terminal_id: String,
    pub amount: String,
    pub sent_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicQrRequest {
    pub request_id: RequestId,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub amount: Amount,
}

/// Parses a `dynamic_qr.v1` whose envelope and routing key were already checked.
pub fn parse_dynamic_qr(body: &[u8], route: &PosRoute) -> Result<DynamicQrRequest, ScanDecline> {
    let invalid = |amount| ScanDecline {
        reason: DeclineReason::InvalidMessage,
        amount,
    };
    let wire: DynamicQrV1 = serde_json::from_slice(body).map_err(|_| invalid(None))?;
    let amount = Amount::parse(&wire.amount).ok();
    if wire.kind != DYNAMIC_QR_V1 || DateTime::parse_from_rfc3339(&wire.sent_at).is_err() {
        return Err(invalid(amount));
    }
    let request_id = RequestId::parse(&wire.request_id).map_err(|_| invalid(amount))?;
    if !route.is_for(&wire.merchant_id, &wire.terminal_id) {
        return Err(ScanDecline {
            reason: DeclineReason::Unauthorized,
            amount,
        });
    }
    let amount = amount.ok_or(ScanDecline {
        reason: DeclineReason::InvalidAmount,
        amount: None,
    })?;
    Ok(DynamicQrRequest {
        request_id,
        merchant_id: route.merchant_id.clone(),
        terminal_id: route.terminal_id.clone(),
        amount,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    Issued,
    Declined,
}

/// `dynamic_qr_issued.v1`: the gateway's answer to `dynamic_qr.v1`, on the terminal's result
/// routing key. `payload` is the EMV string to show as a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicQrIssuedV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: RequestId,
    pub status: IssueStatus,
    pub reason: Option<DeclineReason>,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub amount: Option<Amount>,
    pub payload: Option<String>,
    pub reference: Option<String>,
    pub expires_at: Option<String>,
}

/// `result.v1`'s `status` on the wire: `approved`, `declined`, `reversed`, or `pending` for a
/// payment awaiting the cardholder's confirmation (`TxState::AwaitingConfirmation`). The other
/// states never reach the wire (fan-out answers `voided` as `declined`), so they neither
/// serialise nor parse.
pub mod result_status {
    use crate::domain::TxState;
    use serde::{de, ser, Deserialize, Deserializer, Serializer};

    pub const PENDING: &str = "pending";

    pub fn name(s: TxState) -> Option<&'static str> {
        match s {
            TxState::Approved => Some("approved"),
            TxState::Declined => Some("declined"),
            TxState::Reversed => Some("reversed"),
            TxState::AwaitingConfirmation => Some(PENDING),
            TxState::Created | TxState::Voided => None,
        }
    }

    pub fn serialize<S: Serializer>(s: &TxState, out: S) -> Result<S::Ok, S::Error> {
        match name(*s) {
            Some(n) => out.serialize_str(n),
            None => Err(ser::Error::custom(format!("{s} is not a result status"))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TxState, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "approved" => Ok(TxState::Approved),
            "declined" => Ok(TxState::Declined),
            "reversed" => Ok(TxState::Reversed),
            PENDING => Ok(TxState::AwaitingConfirmation),
            other => Err(de::Error::custom(format!(
                "{other:?} is not a result status"
            ))),
        }
    }
}

/// `result.v1`: the one final answer for a request, sent to the POS and the cardholder — and,
/// before it, a `pending` one while the cardholder is asked to confirm the payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: RequestId,
    pub transaction_id: Option<TransactionId>,
    pub mode: PaymentMode,
    /// `TxState::AwaitingConfirmation` is `"pending"` on the wire (see `result_status`).
    #[serde(with = "result_status")]
    pub status: TxState,
    pub reason: Option<DeclineReason>,
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub user_id: Option<UserId>,
    pub amount: Option<Amount>,
    pub fee: Money,
    pub total: Option<Money>,
    pub processed_at: String,
    /// Only on the copy routed to `user.<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<Money>,
}

impl ResultV1 {
    /// A `pending` answer is followed by the final one.
    pub fn is_final(&self) -> bool {
        self.status != TxState::AwaitingConfirmation
    }
}

/// `confirmation_request.v1`: a reverse-scan payment above the card's password-free amount asks
/// its cardholder to confirm it with the PIN (or decline it) before `expires_at`. Published to
/// `pay.results` with routing key `user.<user_id>`; `GET /v1/confirmations` lists the same
/// objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationRequestV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub transaction_id: TransactionId,
    pub request_id: RequestId,
    pub merchant_id: MerchantId,
    pub merchant_name: String,
    pub terminal_id: TerminalId,
    pub amount: Amount,
    pub fee: Money,
    pub total: Money,
    pub expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> PosRoute {
        PosRoute::parse("pos.m1.t1.scan").unwrap()
    }

    fn scan(code: &str, amount: &str) -> String {
        format!(
            r#"{{"type":"scan.v1","request_id":"6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10","merchant_id":"m1","terminal_id":"t1","payment_code":"{code}","amount":"{amount}","sent_at":"2026-11-26T12:00:00+08:00"}}"#
        )
    }

    fn code() -> String {
        let mut rng = rand::rngs::OsRng;
        PaymentCode::generate(&mut rng, CodePrefix::DEFAULT)
            .expose()
            .to_owned()
    }

    #[test]
    fn routing_keys() {
        assert!(PosRoute::parse("pos.m1.t1.scan").is_some());
        for bad in [
            "pos.m1.scan",
            "pos.m1.t1.scan.x",
            "user.m1.t1.scan",
            "pos.m*.t1.scan",
            "",
        ] {
            assert!(PosRoute::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn envelope() {
        let ok = scan(&code(), "1.00");
        assert!(parse_envelope(ok.as_bytes(), &[SCAN_V1]).is_ok());
        assert_eq!(
            parse_envelope(b"nope", &[SCAN_V1]),
            Err(DeadReason::NotJson)
        );
        assert_eq!(parse_envelope(b"[1]", &[SCAN_V1]), Err(DeadReason::NotJson));
        assert_eq!(
            parse_envelope(br#"{"type":"scan.v2","request_id":"x"}"#, &[SCAN_V1]),
            Err(DeadReason::UnknownType)
        );
        assert_eq!(
            parse_envelope(br#"{"type":"scan.v1","request_id":"x"}"#, &[SCAN_V1]),
            Err(DeadReason::NoRequestId)
        );
    }

    #[test]
    fn result_status_on_the_wire() {
        let r = ResultV1 {
            kind: RESULT_V1.into(),
            request_id: RequestId::new_random(),
            transaction_id: None,
            mode: PaymentMode::ReverseScan,
            status: TxState::AwaitingConfirmation,
            reason: Some(DeclineReason::UserConfirming),
            merchant_id: MerchantId::parse("m1").unwrap(),
            terminal_id: TerminalId::parse("t1").unwrap(),
            user_id: None,
            amount: None,
            fee: Money::ZERO,
            total: None,
            processed_at: "2026-11-26T04:05:10.613482Z".into(),
            balance_after: None,
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "pending");
        assert_eq!(serde_json::from_value::<ResultV1>(json).unwrap(), r);
        assert!(!r.is_final());
        for (state, wire) in [
            (TxState::Approved, Some("approved")),
            (TxState::Declined, Some("declined")),
            (TxState::Reversed, Some("reversed")),
            (TxState::Created, None),
            (TxState::Voided, None),
        ] {
            let mut x = r.clone();
            x.status = state;
            let json = serde_json::to_value(&x);
            assert_eq!(
                json.as_ref().ok().map(|j| j["status"].clone()),
                wire.map(serde_json::Value::from),
                "{state}"
            );
        }
        let mut json = serde_json::to_value(&r).unwrap();
        json["status"] = "awaiting_confirmation".into();
        assert!(serde_json::from_value::<ResultV1>(json).is_err());
    }

    #[test]
    fn scan_parsing() {
        let c = code();
        let p = CodePrefix::DEFAULT;
        let ok = parse_scan(scan(&c, "12.50").as_bytes(), &route(), p).unwrap();
        assert_eq!(ok.amount.to_string(), "12.50");
        let reason = |body: String| parse_scan(body.as_bytes(), &route(), p).unwrap_err().reason;
        assert_eq!(reason(scan(&c, "0")), DeclineReason::InvalidAmount);
        assert_eq!(reason(scan(&c, "1e3")), DeclineReason::InvalidAmount);
        assert_eq!(reason(scan("88123", "1.00")), DeclineReason::UnknownCode);
        // The legacy prefix still parses; a valid code with a foreign prefix is unknown.
        let legacy = PaymentCode::generate(&mut rand::rngs::OsRng, CodePrefix::LEGACY);
        assert!(parse_scan(scan(legacy.expose(), "1.00").as_bytes(), &route(), p).is_ok());
        let other = CodePrefix::parse("77").unwrap();
        let foreign = PaymentCode::generate(&mut rand::rngs::OsRng, other);
        assert_eq!(
            reason(scan(foreign.expose(), "1.00")),
            DeclineReason::UnknownCode
        );
        assert_eq!(
            reason(scan(&c, "1.00").replace("\"m1\"", "\"m2\"")),
            DeclineReason::Unauthorized
        );
        assert_eq!(
            reason(scan(&c, "1.00").replace("}", r#","extra":1}"#)),
            DeclineReason::InvalidMessage
        );
        assert_eq!(
            reason(scan(&c, "1.00").replace(r#""amount":"1.00""#, r#""amount":1.00"#)),
            DeclineReason::InvalidMessage
        );
        // duplicate keys are rejected by the typed parse
        assert_eq!(
            reason(scan(&c, "1.00").replace("}", r#","amount":"2.00"}"#)),
            DeclineReason::InvalidMessage
        );
    }
}
