//! A small blocking client of the RabbitMQ management HTTP API. Blocking is fine: it serves
//! admin commands and test set-up, never the payment path.

use base64::Engine;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("RABBITMQ_MANAGEMENT_URL {0:?} must look like http://user:pass@host:port")]
    BadUrl(String),
    #[error("management API {method} {path}: {detail}")]
    Http {
        method: &'static str,
        path: String,
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct Management {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

fn encode(segment: &str) -> String {
    // Percent-encode everything but unreserved characters (vhost "/" becomes %2F).
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Management {
    pub fn new(url: &str) -> Result<Management, ManagementError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ManagementError::BadUrl(url.into()))?;
        let (creds, host) = rest
            .split_once('@')
            .ok_or_else(|| ManagementError::BadUrl(url.into()))?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds.as_bytes())
        );
        Ok(Management {
            base: format!("http://{}", host.trim_end_matches('/')),
            auth,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(15))
                .build(),
        })
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, ManagementError> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("authorization", &self.auth);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let err = |detail: String| ManagementError::Http {
            method,
            path: path.to_owned(),
            detail,
        };
        match resp {
            Ok(r) if r.status() == 204 => Ok(None),
            Ok(r) => {
                let text = r.into_string().map_err(|e| err(e.to_string()))?;
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| err(e.to_string()))
                }
            }
            Err(ureq::Error::Status(code, r)) => Err(err(format!(
                "HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            ))),
            Err(e) => Err(err(e.to_string())),
        }
    }

    pub fn create_vhost(&self, vhost: &str) -> Result<(), ManagementError> {
        self.call("PUT", &format!("/api/vhosts/{}", encode(vhost)), None)?;
        Ok(())
    }

    pub fn delete_vhost(&self, vhost: &str) -> Result<(), ManagementError> {
        self.call("DELETE", &format!("/api/vhosts/{}", encode(vhost)), None)?;
        Ok(())
    }

    pub fn grant_all(&self, vhost: &str, user: &str) -> Result<(), ManagementError> {
        self.call(
            "PUT",
            &format!("/api/permissions/{}/{}", encode(vhost), encode(user)),
            Some(serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"})),
        )?;
        Ok(())
    }

    /// The vhost's definitions (exchanges, queues, bindings) as the broker sees them.
    pub fn definitions(&self, vhost: &str) -> Result<Value, ManagementError> {
        Ok(self
            .call("GET", &format!("/api/definitions/{}", encode(vhost)), None)?
            .unwrap_or(Value::Null))
    }

    pub fn queues(&self, vhost: &str) -> Result<Vec<Value>, ManagementError> {
        Ok(
            match self.call("GET", &format!("/api/queues/{}", encode(vhost)), None)? {
                Some(Value::Array(v)) => v,
                _ => Vec::new(),
            },
        )
    }

    /// Client connections to the vhost.
    pub fn connections(&self, vhost: &str) -> Result<Vec<Value>, ManagementError> {
        Ok(
            match self.call(
                "GET",
                &format!("/api/vhosts/{}/connections", encode(vhost)),
                None,
            )? {
                Some(Value::Array(v)) => v,
                _ => Vec::new(),
            },
        )
    }

    /// The vhost's consumers, each with its queue, channel details and (for a single-active-
    /// consumer queue) whether it is the active one.
    pub fn consumers(&self, vhost: &str) -> Result<Vec<Value>, ManagementError> {
        Ok(
            match self.call("GET", &format!("/api/consumers/{}", encode(vhost)), None)? {
                Some(Value::Array(v)) => v,
                _ => Vec::new(),
            },
        )
    }

    /// Force-closes a client connection (the client sees a connection-forced error).
    pub fn close_connection(&self, name: &str) -> Result<(), ManagementError> {
        self.call(
            "DELETE",
            &format!("/api/connections/{}", encode(name)),
            None,
        )?;
        Ok(())
    }

    pub fn queue(&self, vhost: &str, name: &str) -> Result<Value, ManagementError> {
        Ok(self
            .call(
                "GET",
                &format!("/api/queues/{}/{}", encode(vhost), encode(name)),
                None,
            )?
            .unwrap_or(Value::Null))
    }
}
