//! Dead letters decoded: where they came from and why (stage headers or the broker's
//! `x-death`), a stable id, and the body as JSON, a stage batch or hex, payment codes masked.

use crate::broker::consumer::REPLAYED_HEADER;
use crate::broker::topology::{Shards, StageName, DEAD};
use crate::messages::internal::{self, StageBatch};
use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Bodies larger than this are shown truncated by `dead show` (hex doubles them).
const SHOW_MAX_BYTES: usize = 4096;
/// Headers a dead letter's identity must not depend on: quorum queues rewrite
/// `x-delivery-count` every time a message is requeued, which listing does.
pub(super) const VOLATILE_HEADERS: [&str; 1] = ["x-delivery-count"];

/// One dead letter in `pay.dead`, decoded from its headers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    /// The message's `message_id` if it has one, else a hash of its headers and body.
    pub id: String,
    pub stage: String,
    /// A stage's reason (`not_json`, …) or the broker's (`delivery_limit`, `rejected`, …).
    pub reason: String,
    /// `stage` (it published the dead letter itself), `broker` (`x-death`), or `unknown`.
    pub dead_lettered_by: &'static str,
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub age_secs: Option<i64>,
    /// How many times `dead replay` has re-published it.
    pub replayed: u32,
    pub body_bytes: usize,
}

fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header(h: &FieldTable, key: &str) -> Option<String> {
    h.inner().get(key).and_then(as_text)
}

/// The most recent broker dead-lettering (RabbitMQ puts it first in `x-death`).
fn first_death(h: &FieldTable) -> Option<&FieldTable> {
    match h.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn timestamp(v: &AMQPValue) -> Option<DateTime<Utc>> {
    let secs = match v {
        AMQPValue::Timestamp(t) => i64::try_from(*t).ok()?,
        AMQPValue::LongLongInt(t) => *t,
        _ => return None,
    };
    DateTime::from_timestamp(secs, 0)
}

fn stage_of_queue(queue: &str) -> Option<&'static str> {
    StageName::ALL
        .into_iter()
        .find(|s| s.queues(Shards::WIDEST).iter().any(|q| q == queue))
        .map(StageName::as_str)
}

fn hash_value(h: &mut Sha256, v: &AMQPValue) {
    // A canonical, type-tagged encoding: FieldTable is ordered by key, so equal headers hash
    // equally whatever the JSON map implementation of the build.
    match v {
        AMQPValue::FieldTable(t) => {
            h.update(b"T");
            h.update((t.inner().len() as u64).to_be_bytes());
            for (k, v) in t.inner() {
                h.update((k.as_str().len() as u64).to_be_bytes());
                h.update(k.as_str().as_bytes());
                hash_value(h, v);
            }
        }
        AMQPValue::FieldArray(a) => {
            h.update(b"A");
            h.update((a.as_slice().len() as u64).to_be_bytes());
            for v in a.as_slice() {
                hash_value(h, v);
            }
        }
        AMQPValue::LongString(s) => {
            h.update(b"S");
            h.update((s.as_bytes().len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        AMQPValue::ShortString(s) => {
            h.update(b"S");
            h.update((s.as_str().len() as u64).to_be_bytes());
            h.update(s.as_str().as_bytes());
        }
        AMQPValue::ByteArray(b) => {
            h.update(b"B");
            h.update((b.as_slice().len() as u64).to_be_bytes());
            h.update(b.as_slice());
        }
        other => {
            // Scalars: their JSON rendering is unambiguous.
            h.update(b"N");
            let s = amqp_to_json(other).to_string();
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// A short, stable id: the `message_id` property if set, else 12 hex digits of SHA-256 over
/// the headers (without those the broker rewrites on requeue) and the body. Identical dead
/// letters share an id; commands act on every copy of it.
pub fn dead_letter_id(properties: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = properties.message_id().as_ref() {
        if !id.as_str().trim().is_empty() {
            return id.as_str().to_owned();
        }
    }
    let mut h = Sha256::new();
    let mut stable = FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (k, v) in headers.inner() {
            if !VOLATILE_HEADERS.contains(&k.as_str()) {
                stable.insert(k.clone(), v.clone());
            }
        }
    }
    hash_value(&mut h, &AMQPValue::FieldTable(stable));
    h.update(b"body");
    h.update(body);
    hex::encode(&h.finalize()[..6])
}

/// Decodes what `pay.dead` knows about one message. `routing_key` is the key it was
/// dead-lettered with: the stage name, for both kinds of dead letter.
pub fn describe(
    routing_key: &str,
    properties: &BasicProperties,
    body: &[u8],
    now: DateTime<Utc>,
) -> DeadLetter {
    let empty = FieldTable::default();
    let h = properties.headers().as_ref().unwrap_or(&empty);
    let replayed = match h.inner().get(REPLAYED_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(v) => as_text(v).and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        None => 0,
    };
    // `x-death` means the broker dead-lettered it last: a stage's dead letter is a fresh
    // message that never carries one, while a replayed one keeps its old `x-campuspay-*`
    // headers, which are then stale.
    let (by, stage, reason, queue, exchange, key, at) = if let Some(d) = first_death(h) {
        let queue = header(d, "queue");
        let key = match d.inner().get("routing-keys") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().first().and_then(as_text),
            _ => None,
        };
        (
            "broker",
            queue
                .as_deref()
                .and_then(stage_of_queue)
                .map(str::to_owned)
                .unwrap_or_else(|| routing_key.to_owned()),
            header(d, "reason").unwrap_or_else(|| "unknown".into()),
            queue,
            header(d, "exchange"),
            key,
            d.inner().get("time").and_then(timestamp),
        )
    } else if let Some(reason) = header(h, "x-campuspay-reason") {
        (
            "stage",
            header(h, "x-campuspay-stage").unwrap_or_else(|| routing_key.to_owned()),
            reason,
            header(h, "x-campuspay-queue"),
            header(h, "x-original-exchange"),
            header(h, "x-original-routing-key"),
            header(h, "x-campuspay-dead-lettered-at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        )
    } else {
        (
            "unknown",
            routing_key.to_owned(),
            "unknown".into(),
            None,
            None,
            None,
            None,
        )
    };
    let at = at.or_else(|| {
        (*properties.timestamp()).and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0))
    });
    DeadLetter {
        id: dead_letter_id(properties, body),
        stage,
        reason,
        dead_lettered_by: by,
        queue,
        original_exchange: exchange,
        original_routing_key: key,
        age_secs: at.map(|t| (now - t).num_seconds().max(0)),
        dead_lettered_at: at,
        replayed,
        body_bytes: body.len(),
    }
}

/// Header values as JSON, for `dead show`.
pub fn amqp_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!({"value": d.value, "scale": d.scale}),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => json!(t),
            Err(_) => json!({ "hex": hex::encode(s.as_bytes()) }),
        },
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!({ "hex": hex::encode(b.as_slice()) }),
        AMQPValue::Void => Value::Null,
    }
}

pub(super) fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| {
                // A terminal's token is a credential: never print it.
                let v = if k.as_str().eq_ignore_ascii_case("authorization") {
                    json!("Bearer ***")
                } else {
                    amqp_to_json(v)
                };
                (k.as_str().to_owned(), v)
            })
            .collect(),
    )
}

/// Payment codes are one-time credentials (docs/ARCHITECTURE.md §6): mask them wherever they appear.
fn mask_codes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match (k.as_str(), &*v) {
                    ("payment_code", Value::String(s)) => {
                        *v = json!(crate::domain::payment_code::mask(s))
                    }
                    // HMACs of codes are not secrets, but a list of numbers helps nobody.
                    ("code_hash", Value::Array(a)) => {
                        let bytes: Option<Vec<u8>> = a
                            .iter()
                            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect();
                        if let Some(b) = bytes {
                            *v = json!(hex::encode(b));
                        }
                    }
                    _ => mask_codes(v),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_codes),
        _ => {}
    }
}

/// A dead letter's body, decoded as far as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Body {
    Json {
        value: Value,
    },
    StageBatch {
        version: u8,
        items: Value,
    },
    Hex {
        hex: String,
        /// The same bytes as text, when they are UTF-8.
        text: Option<String>,
        truncated: bool,
        note: Option<String>,
    },
}

pub fn decode_body(body: &[u8]) -> Body {
    if let Ok(mut value) = serde_json::from_slice::<Value>(body) {
        mask_codes(&mut value);
        return Body::Json { value };
    }
    let mut note = None;
    if let Some(&version) = body.first() {
        // Internal stage messages start with their format version (1, 2, …): small bytes that
        // no JSON or text starts with.
        if (1..=internal::VERSION).contains(&version) {
            // Shown, not acted on: the MAC is for the stages to check.
            match StageBatch::decode_unverified(body) {
                Ok(batch) => {
                    let mut items = serde_json::to_value(&batch.items).unwrap_or(Value::Null);
                    mask_codes(&mut items);
                    return Body::StageBatch { version, items };
                }
                Err(e) => note = Some(format!("looks like a stage batch but {e}")),
            }
        }
    }
    let shown = &body[..body.len().min(SHOW_MAX_BYTES)];
    Body::Hex {
        hex: hex::encode(shown),
        text: std::str::from_utf8(shown).ok().map(str::to_owned),
        truncated: shown.len() < body.len(),
        note,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub letter: DeadLetter,
    pub properties: Value,
    pub headers: Value,
    pub body: Body,
}

pub(super) fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    if let Some(v) = p.content_type() {
        m.insert("content_type".into(), json!(v.as_str()));
    }
    if let Some(v) = p.message_id() {
        m.insert("message_id".into(), json!(v.as_str()));
    }
    if let Some(v) = p.correlation_id() {
        m.insert("correlation_id".into(), json!(v.as_str()));
    }
    if let Some(v) = p.timestamp() {
        m.insert("timestamp".into(), json!(v));
    }
    if let Some(v) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(v));
    }
    if let Some(v) = p.app_id() {
        m.insert("app_id".into(), json!(v.as_str()));
    }
    Value::Object(m)
}

/// Where a dead letter came from: the stage's `x-original-*` headers, or for a broker dead
/// letter the first `x-death` entry (classified by `describe`).
pub(super) fn origin(l: &DeadLetter) -> Result<(String, String), String> {
    match (&l.original_exchange, &l.original_routing_key) {
        (Some(e), _) if e == DEAD => {
            Err("its origin is pay.dead itself; replaying would dead-letter it again".into())
        }
        (Some(e), Some(k)) => Ok((e.clone(), k.clone())),
        _ => Err(
            "unknown origin: neither x-original-exchange/x-original-routing-key nor x-death".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut t = FieldTable::default();
        for (k, v) in headers {
            t.insert((*k).into(), v.clone());
        }
        BasicProperties::default().with_headers(t)
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn stage_dead_letters_are_described_from_their_headers() {
        let now = Utc::now();
        let at = (now - chrono::Duration::seconds(90))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let p = props(&[
            ("x-campuspay-stage", s("qr_validation")),
            ("x-campuspay-reason", s("not_json")),
            ("x-campuspay-queue", s("campuspay.qr_validation")),
            ("x-original-exchange", s("pay.requests")),
            ("x-original-routing-key", s("pos.m1.t1.scan")),
            ("x-campuspay-dead-lettered-at", s(&at)),
        ]);
        let l = describe("qr_validation", &p, b"nope", now);
        assert_eq!(l.dead_lettered_by, "stage");
        assert_eq!(l.stage, "qr_validation");
        assert_eq!(l.reason, "not_json");
        assert_eq!(l.original_exchange.as_deref(), Some("pay.requests"));
        assert_eq!(l.original_routing_key.as_deref(), Some("pos.m1.t1.scan"));
        assert!(matches!(l.age_secs, Some(89..=91)), "{:?}", l.age_secs);
        assert_eq!(l.replayed, 0);
        assert_eq!(l.id.len(), 12);
    }

    #[test]
    fn broker_dead_letters_are_described_from_x_death() {
        let now = Utc::now();
        let mut death = FieldTable::default();
        death.insert("reason".into(), s("delivery_limit"));
        death.insert("queue".into(), s("campuspay.settlement.2"));
        death.insert("exchange".into(), s("pay.stage"));
        death.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(vec![s("settlement.2")].into()),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert(
            "time".into(),
            AMQPValue::Timestamp((now.timestamp() - 10) as u64),
        );
        // Stale headers of an earlier stage dead-lettering, kept by a replay.
        let p = props(&[
            (
                "x-death",
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
            ),
            ("x-campuspay-reason", s("not_json")),
            (REPLAYED_HEADER, s("2")),
        ]);
        let l = describe("settlement", &p, b"\x02...", now);
        assert_eq!(l.dead_lettered_by, "broker");
        assert_eq!(l.stage, "settlement");
        assert_eq!(l.reason, "delivery_limit");
        assert_eq!(l.queue.as_deref(), Some("campuspay.settlement.2"));
        assert_eq!(l.original_exchange.as_deref(), Some("pay.stage"));
        assert_eq!(l.original_routing_key.as_deref(), Some("settlement.2"));
        assert!(matches!(l.age_secs, Some(9..=11)));
        assert_eq!(l.replayed, 2);
        assert_eq!(
            origin(&l).unwrap(),
            ("pay.stage".into(), "settlement.2".into())
        );
    }

    #[test]
    fn ids_are_stable_across_requeues_and_prefer_the_message_id() {
        let a = props(&[("x-campuspay-reason", s("not_json"))]);
        let b = props(&[
            ("x-campuspay-reason", s("not_json")),
            ("x-delivery-count", AMQPValue::LongLongInt(3)),
        ]);
        assert_eq!(dead_letter_id(&a, b"x"), dead_letter_id(&b, b"x"));
        assert_ne!(dead_letter_id(&a, b"x"), dead_letter_id(&a, b"y"));
        let c = props(&[("x-campuspay-reason", s("too_large"))]);
        assert_ne!(dead_letter_id(&a, b"x"), dead_letter_id(&c, b"x"));
        let m = a.clone().with_message_id("msg-1".into());
        assert_eq!(dead_letter_id(&m, b"x"), "msg-1");
    }

    #[test]
    fn bodies_decode_as_json_batch_or_hex_and_codes_are_masked() {
        match decode_body(br#"{"type":"scan.v1","payment_code":"281234567890123456"}"#) {
            Body::Json { value } => assert_eq!(value["payment_code"], "28************3456"),
            other => panic!("{other:?}"),
        }
        let batch = StageBatch { items: vec![] }.encode(b"key").unwrap();
        assert!(matches!(decode_body(&batch), Body::StageBatch { .. }));
        match decode_body(b"not json") {
            Body::Hex { hex, text, .. } => {
                assert_eq!(hex, "6e6f74206a736f6e");
                assert_eq!(text.as_deref(), Some("not json"));
            }
            other => panic!("{other:?}"),
        }
        match decode_body(&[1, 0xff, 0xfe]) {
            Body::Hex { note, .. } => assert!(note.is_some()),
            other => panic!("{other:?}"),
        }
    }
}
