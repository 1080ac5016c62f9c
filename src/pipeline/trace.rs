//! Following one payment through the stages. A stage message carries a batch of payments, so
//! its headers list them: `x-request-id` (comma-separated request ids, in item order) and
//! `x-received-at` (when the pipeline received each, RFC 3339, aligned with the ids; empty
//! where it is not known). Every stage logs one line per payment with its `request_id` (and
//! `transaction_id` once there is one), so a grep for one id shows its whole path, and fan-out
//! measures the time from receipt to the published result.

use crate::broker::consumer::Incoming;
use crate::broker::topology::StageName;
use crate::broker::Outgoing;
use crate::domain::RequestId;
use crate::messages::internal::{Outcome, PaymentItem, MAX_BATCH_ITEMS};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const RECEIVED_AT_HEADER: &str = "x-received-at";

/// When the pipeline received each payment of a batch, as far as known.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    received: HashMap<RequestId, DateTime<Utc>>,
}

impl Trace {
    /// Payments entering the pipeline now (at QR validation, or from the platform).
    pub fn received_now(items: &[PaymentItem]) -> Trace {
        let now = Utc::now();
        Trace {
            received: items.iter().map(|i| (i.request_id, now)).collect(),
        }
    }

    /// What the headers of a batch's deliveries say. Unreadable entries are skipped (the
    /// headers are for tracing; the items themselves are authenticated by their MAC), and at
    /// most MAX_BATCH_ITEMS are read per delivery.
    pub fn from_headers(batch: &[Incoming]) -> Trace {
        let mut received = HashMap::new();
        for inc in batch {
            let header = |name: &str| {
                inc.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let (Some(ids), Some(times)) = (header(REQUEST_ID_HEADER), header(RECEIVED_AT_HEADER))
            else {
                continue;
            };
            for (id, at) in ids.split(',').zip(times.split(',')).take(MAX_BATCH_ITEMS) {
                if let (Ok(id), Ok(at)) = (
                    RequestId::parse(id.trim()),
                    DateTime::parse_from_rfc3339(at.trim()),
                ) {
                    received.insert(id, at.with_timezone(&Utc));
                }
            }
        }
        Trace { received }
    }

    pub fn received_at(&self, id: &RequestId) -> Option<DateTime<Utc>> {
        self.received.get(id).copied()
    }

    /// `msg` (carrying `items`) with the tracing headers.
    pub fn stamp(&self, msg: Outgoing, items: &[PaymentItem]) -> Outgoing {
        let ids: Vec<String> = items.iter().map(|i| i.request_id.to_string()).collect();
        let times: Vec<String> = items
            .iter()
            .map(|i| {
                self.received_at(&i.request_id)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default()
            })
            .collect();
        msg.with_header(REQUEST_ID_HEADER, &ids.join(","))
            .with_header(RECEIVED_AT_HEADER, &times.join(","))
    }
}

/// The log target of a stage: its module, so `RUST_LOG=campuspay::pipeline::fee=debug` works.
fn target(stage: StageName) -> &'static str {
    match stage {
        StageName::QrValidation => "campuspay::pipeline::qr_validation",
        StageName::Order => "campuspay::pipeline::order",
        StageName::Fee => "campuspay::pipeline::fee",
        StageName::Settlement => "campuspay::pipeline::settlement",
        StageName::Fanout => "campuspay::pipeline::fanout",
    }
}

/// One line per payment a stage has handled: what became of it there. Never the payment code
/// or anything from which it could be told (items carry only its keyed hash), never a PIN.
pub fn log_items(stage: StageName, items: &[PaymentItem]) {
    for item in items {
        let what = match &item.outcome {
            Outcome::Pending => "passed on".to_owned(),
            Outcome::Done(done) => match done.reason {
                Some(r) => format!("{} ({})", done.status.as_str(), r.as_str()),
                None => done.status.as_str().to_owned(),
            },
            Outcome::AwaitingConfirmation(_) => "awaiting the cardholder's confirmation".into(),
        };
        let stage_name = stage.as_str();
        match item.transaction_id {
            Some(tx) => log::info!(
                target: target(stage),
                request_id:% = item.request_id, transaction_id:% = tx, stage = stage_name;
                "{stage_name}: payment {what}"
            ),
            None => log::info!(
                target: target(stage),
                request_id:% = item.request_id, stage = stage_name;
                "{stage_name}: payment {what}"
            ),
        }
    }
}
