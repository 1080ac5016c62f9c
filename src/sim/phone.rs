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
