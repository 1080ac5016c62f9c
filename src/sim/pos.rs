//! A simulated POS terminal: publishes `scan.v1` to `pay.requests` with its JWT in the
//! `authorization` header and the broker user it logged in as in `user-id` (persistent,
//! mandatory, confirmed) and reads its result queue.

use super::results::Subscriber;
use super::SimError;
use crate::broker::publisher::{Outgoing, Publisher};
use crate::broker::topology::REQUESTS;
use crate::domain::{MerchantId, RequestId, TerminalId};
use crate::messages::external::{
    pos_result_key, DynamicQrIssuedV1, ResultV1, DYNAMIC_QR_ISSUED_V1, DYNAMIC_QR_V1, SCAN_V1,
};
use lapin::Connection;
use serde_json::json;
use std::time::Duration;

pub struct Pos {
    pub merchant: MerchantId,
    pub terminal: TerminalId,
    token: String,
    publisher: Publisher,
    results: Subscriber,
}

impl Pos {
    /// A till on a connection of the pipeline's own broker user `user` (trusted to act for any
    /// terminal; it also provisions the result queue): the demo, the tests, tools.
    pub async fn open(
        conn: &Connection,
        user: &str,
        merchant: MerchantId,
        terminal: TerminalId,
        token: String,
    ) -> Result<Pos, SimError> {
        let publisher = Publisher::new(conn, Duration::from_secs(10))
            .await?
            .as_user(user);
        let results = Subscriber::open(conn, &pos_result_key(&merchant, &terminal)).await?;
        Ok(Pos {
            merchant,
            terminal,
            token,
            publisher,
            results,
        })
    }

    /// A till logged in as its own broker user `user` (`admin terminal add` created it and its
    /// result queue): it publishes and reads its queue, and declares nothing.
    pub async fn open_as_terminal(
        conn: &Connection,
        user: &str,
        merchant: MerchantId,
        terminal: TerminalId,
        token: String,
    ) -> Result<Pos, SimError> {
        let publisher = Publisher::new(conn, Duration::from_secs(10))
            .await?
            .as_user(user);
        let results = Subscriber::attach(conn, &pos_result_key(&merchant, &terminal)).await?;
        Ok(Pos {
            merchant,
            terminal,
            token,
            publisher,
            results,
        })
    }

    pub fn scan_body(&self, request_id: RequestId, code: &str, amount: &str) -> Vec<u8> {
        json!({
            "type": SCAN_V1,
            "request_id": request_id.to_string(),
            "merchant_id": self.merchant.as_str(),
            "terminal_id": self.terminal.as_str(),
            "payment_code": code,
            "amount": amount,
            "sent_at": crate::messages::format_time(chrono::Utc::now()),
        })
        .to_string()
        .into_bytes()
    }

    pub fn routing_key(&self, verb: &str) -> String {
        format!("pos.{}.{}.{verb}", self.merchant, self.terminal)
    }

    /// Publishes any body on any routing key, with this terminal's token unless `auth` says
    /// otherwise (`Some(None)`: no header; `Some(Some(h))`: that header).
    pub async fn publish_raw(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        auth: Option<Option<String>>,
    ) -> Result<(), SimError> {
        let mut msg = Outgoing::json(REQUESTS, routing_key.to_owned(), body);
        match auth {
            None => msg = msg.with_header("authorization", &format!("Bearer {}", self.token)),
            Some(Some(h)) => msg = msg.with_header("authorization", &h),
            Some(None) => {}
        }
        Ok(self.publisher.publish(msg).await?)
    }

    pub async fn send_scan(
        &self,
        request_id: RequestId,
        code: &str,
        amount: &str,
    ) -> Result<(), SimError> {
        self.publish_raw(
            &self.routing_key("scan"),
            self.scan_body(request_id, code, amount),
            None,
        )
        .await
    }

    pub async fn wait(
        &mut self,
        request_id: RequestId,
        timeout: Duration,
    ) -> Result<ResultV1, SimError> {
        self.results.wait_for(request_id, timeout).await
    }

    /// Waits for the final result of `request_id` within `timeout` in all, handing a `pending`
    /// one (the cardholder is asked to confirm on the phone) to `on_pending` first.
    pub async fn wait_final(
        &mut self,
        request_id: RequestId,
        timeout: Duration,
        mut on_pending: impl FnMut(&ResultV1),
    ) -> Result<ResultV1, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self
                .results
                .wait_for(request_id, left)
                .await
                .map_err(|e| match e {
                    // Name the whole wait, not what was left of it.
                    SimError::Timeout { request_id, .. } => SimError::Timeout {
                        request_id,
                        secs: timeout.as_secs(),
                    },
                    other => other,
                })?;
            if r.is_final() {
                return Ok(r);
            }
            on_pending(&r);
        }
    }

    /// Scan and wait: what a cashier's "charge" button does. Returns the first answer, which is
    /// `pending` for a payment its cardholder must confirm (then `wait_final`).
    pub async fn pay(
        &mut self,
        request_id: RequestId,
        code: &str,
        amount: &str,
        timeout: Duration,
    ) -> Result<ResultV1, SimError> {
        self.send_scan(request_id, code, amount).await?;
        self.wait(request_id, timeout).await
    }

    /// Sends `query.v1` or `reversal.v1` (`verb` = "query" | "reversal") about `request_id`.
    pub async fn send_follow_up(&self, verb: &str, request_id: RequestId) -> Result<(), SimError> {
        let body = json!({
            "type": format!("{verb}.v1"),
            "request_id": request_id.to_string(),
            "merchant_id": self.merchant.as_str(),
            "terminal_id": self.terminal.as_str(),
            "sent_at": crate::messages::format_time(chrono::Utc::now()),
        })
        .to_string()
        .into_bytes();
        self.publish_raw(&self.routing_key(verb), body, None).await
    }

    /// Asks the gateway for a dynamic merchant QR code and waits for `dynamic_qr_issued.v1`.
    pub async fn request_dynamic_qr(
        &mut self,
        request_id: RequestId,
        amount: &str,
        timeout: Duration,
    ) -> Result<DynamicQrIssuedV1, SimError> {
        let body = json!({
            "type": DYNAMIC_QR_V1,
            "request_id": request_id.to_string(),
            "merchant_id": self.merchant.as_str(),
            "terminal_id": self.terminal.as_str(),
            "amount": amount,
            "sent_at": crate::messages::format_time(chrono::Utc::now()),
        })
        .to_string()
        .into_bytes();
        self.publish_raw(&self.routing_key("dynamic_qr"), body, None)
            .await?;
        let raw = self
            .results
            .wait_raw(DYNAMIC_QR_ISSUED_V1, request_id, timeout)
            .await?;
        serde_json::from_slice(&raw)
            .map_err(|e| SimError::Other(format!("bad dynamic_qr_issued.v1: {e}")))
    }

    pub fn results(&mut self) -> &mut Subscriber {
        &mut self.results
    }
}
