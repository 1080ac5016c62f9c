//! A simulated phone: the payment platform's HTTP API with a cardholder's token. Blocking (it is
//! a command-line tool and test helper); call it from `spawn_blocking` inside async code.

use super::SimError;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Phone {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// An HTTP answer: status and JSON body (errors are JSON too: `{"code","message"}`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Phone {
    pub fn new(base: &str, token: &str) -> Phone {
        Phone {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(15))
                .build(),
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Answer, SimError> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token));
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(SimError::Other(format!("{method} {path}: {e}"))),
        };
        let status = resp.status();
        let text = resp
            .into_string()
            .map_err(|e| SimError::Other(e.to_string()))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    pub fn payment_codes(&self) -> Result<Answer, SimError> {
        self.call("POST", "/v1/payment-codes", None)
    }

    pub fn create_order(&self, request_id: &str, qr: &str) -> Result<Answer, SimError> {
        self.call(
            "POST",
            "/v1/orders",
            Some(json!({"request_id": request_id, "qr": qr})),
        )
    }

    pub fn pay(&self, order_id: &str, amount: Option<&str>) -> Result<Answer, SimError> {
        let body = match amount {
            Some(a) => json!({ "amount": a }),
            None => json!({}),
        };
        self.call("POST", &format!("/v1/orders/{order_id}/pay"), Some(body))
    }

    pub fn order(&self, order_id: &str) -> Result<Answer, SimError> {
        self.call("GET", &format!("/v1/orders/{order_id}"), None)
    }

    pub fn me(&self) -> Result<Answer, SimError> {
        self.call("GET", "/v1/me", None)
    }

    /// The payments waiting for this cardholder's confirmation (`confirmation_request.v1`
    /// objects, newest first).
    pub fn confirmations(&self) -> Result<Answer, SimError> {
        self.call("GET", "/v1/confirmations", None)
    }

    /// Confirms a reverse-scan payment with the card's PIN.
    pub fn confirm(&self, transaction_id: &str, pin: &str) -> Result<Answer, SimError> {
        self.call(
            "POST",
            &format!("/v1/confirmations/{transaction_id}/confirm"),
            Some(json!({ "pin": pin })),
        )
    }

    /// Declines a reverse-scan payment.
    pub fn decline(&self, transaction_id: &str) -> Result<Answer, SimError> {
        self.call(
            "POST",
            &format!("/v1/confirmations/{transaction_id}/decline"),
            None,
        )
    }

    /// Polls the card's recent transactions (`GET /v1/me`) until `transaction_id` is final;
    /// returns its summary.
    pub fn wait_transaction(
        &self,
        transaction_id: &str,
        timeout: Duration,
    ) -> Result<Value, SimError> {
        let deadline = Instant::now() + timeout;
        loop {
            let me = self.me()?;
            let found = me.body["recent"]
                .as_array()
                .and_then(|r| r.iter().find(|t| t["transaction_id"] == transaction_id))
                .cloned();
            if let Some(t) = found {
                let state = t["state"].as_str().unwrap_or("");
                if !(state == "created" || state == "awaiting_confirmation") {
                    return Ok(t);
                }
            }
            if Instant::now() > deadline {
                return Err(SimError::Timeout {
                    request_id: transaction_id.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the order until it has a final status.
    pub fn wait_final(&self, order_id: &str, timeout: Duration) -> Result<Answer, SimError> {
        let deadline = Instant::now() + timeout;
        loop {
            let a = self.order(order_id)?;
            let status = a.body["status"].as_str().unwrap_or("");
            if a.status != 200 || !(status == "open" || status == "processing") {
                return Ok(a);
            }
            if Instant::now() > deadline {
                return Err(SimError::Timeout {
                    request_id: order_id.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
