//! A small blocking client of the RabbitMQ management HTTP API. Blocking is fine: it serves
//! admin commands and test set-up, never the payment path.

use base64::Engine;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// The URL is shown with its password replaced: it ends up in logs and HTTP answers.
    #[error("RABBITMQ_MANAGEMENT_URL {0:?} must look like http://user:pass@host:port")]
    BadUrl(String),
    #[error("management API {method} {path}: {detail}")]
    Http {
        method: &'static str,
        path: String,
        detail: String,
    },
}

/// A URL with the password part of its user info replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: show no part of it that could be a secret.
        return "<not a URL>".into();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{userinfo}@{host}"),
        },
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Management {
    /// One base URL per node (`RABBITMQ_MANAGEMENT_URL` may list a cluster's nodes); a call
    /// goes to the first node that answers.
    bases: Vec<String>,
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

/// How one node's attempt at a call ended, when not with an answer.
enum NodeError {
    /// The node could not be reached or cannot serve now: try another.
    Unavailable(ManagementError),
    /// The node answered with an error: the cluster's answer.
    Answered(ManagementError),
}

impl Management {
    /// `url` is one node's `http://user:password@host:port`, or a comma-separated list of a
    /// cluster's nodes, all with the same credentials.
    pub fn new(url: &str) -> Result<Management, ManagementError> {
        let bad = || ManagementError::BadUrl(redact_url(url));
        let mut creds = None;
        let mut bases = Vec::new();
        for node in url.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let rest = node.strip_prefix("http://").ok_or_else(bad)?;
            let (c, host) = rest.split_once('@').ok_or_else(bad)?;
            if *creds.get_or_insert(c) != c {
                return Err(bad());
            }
            bases.push(format!("http://{}", host.trim_end_matches('/')));
        }
        let creds = creds.ok_or_else(bad)?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds.as_bytes())
        );
        Ok(Management {
            bases,
            auth,
            agent: ureq::AgentBuilder::new()
                // A node cut off by a partition never answers a connect: move on to the next.
                .timeout_connect(Duration::from_secs(3))
                .timeout(Duration::from_secs(15))
                .build(),
        })
    }

    /// `call_node` on each node in turn until one answers: a node that cannot be reached, or
    /// answers 503 (booting, or paused in a minority), gives way to the next.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, ManagementError> {
        let mut last = None;
        for base in &self.bases {
            match self.call_node(base, method, path, body.clone()) {
                Err(NodeError::Unavailable(e)) => last = Some(e),
                Err(NodeError::Answered(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
        Err(last.unwrap_or_else(|| ManagementError::BadUrl("no node".into())))
    }

    fn call_node(
        &self,
        base: &str,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, NodeError> {
        let req = self
            .agent
            .request(method, &format!("{base}{path}"))
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
                let text = r
                    .into_string()
                    .map_err(|e| NodeError::Answered(err(e.to_string())))?;
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| NodeError::Answered(err(e.to_string())))
                }
            }
            Err(ureq::Error::Status(503, r)) => Err(NodeError::Unavailable(err(format!(
                "HTTP 503: {}",
                r.into_string().unwrap_or_default()
            )))),
            Err(ureq::Error::Status(code, r)) => Err(NodeError::Answered(err(format!(
                "HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            )))),
            Err(e @ ureq::Error::Transport(_)) => Err(NodeError::Unavailable(err(e.to_string()))),
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

    /// Sets one policy: `policy` is an element of `Topology::policies_json` (its `vhost` and
    /// `name` are in the path, the rest is the body).
    pub fn put_policy(&self, vhost: &str, policy: &Value) -> Result<(), ManagementError> {
        let name = policy["name"].as_str().unwrap_or_default();
        let mut body = policy.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("vhost");
            m.remove("name");
        }
        self.call(
            "PUT",
            &format!("/api/policies/{}/{}", encode(vhost), encode(name)),
            Some(body),
        )?;
        Ok(())
    }

    /// The vhost's policies.
    pub fn policies(&self, vhost: &str) -> Result<Vec<Value>, ManagementError> {
        Ok(
            match self.call("GET", &format!("/api/policies/{}", encode(vhost)), None)? {
                Some(Value::Array(v)) => v,
                _ => Vec::new(),
            },
        )
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

    /// Creates a user, or sets a new password for an existing one (no tags: it cannot use the
    /// management API).
    pub fn put_user(&self, name: &str, password: &str) -> Result<(), ManagementError> {
        self.call(
            "PUT",
            &format!("/api/users/{}", encode(name)),
            Some(serde_json::json!({"password": password, "tags": ""})),
        )?;
        Ok(())
    }

    /// Deletes a user; a user that is not there is already deleted.
    pub fn delete_user(&self, name: &str) -> Result<(), ManagementError> {
        match self.call("DELETE", &format!("/api/users/{}", encode(name)), None) {
            Ok(_) => Ok(()),
            Err(ManagementError::Http { detail, .. }) if detail.starts_with("HTTP 404") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The names of all users.
    pub fn users(&self) -> Result<Vec<String>, ManagementError> {
        Ok(match self.call("GET", "/api/users", None)? {
            Some(Value::Array(v)) => v
                .iter()
                .filter_map(|u| u["name"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// A user's permissions on a vhost: regular expressions over resource names.
    pub fn set_permissions(
        &self,
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), ManagementError> {
        self.call(
            "PUT",
            &format!("/api/permissions/{}/{}", encode(vhost), encode(user)),
            Some(serde_json::json!({"configure": configure, "write": write, "read": read})),
        )?;
        Ok(())
    }

    /// A user's topic permissions on one topic exchange: regular expressions over the routing
    /// keys it may publish (`write`) and bind (`read`) with.
    pub fn set_topic_permissions(
        &self,
        vhost: &str,
        user: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), ManagementError> {
        self.call(
            "PUT",
            &format!("/api/topic-permissions/{}/{}", encode(vhost), encode(user)),
            Some(serde_json::json!({"exchange": exchange, "write": write, "read": read})),
        )?;
        Ok(())
    }

    /// Force-closes every connection of `user`, at once: a deleted user's or a changed
    /// password's open connections would otherwise live on. (The broker's own connection
    /// tracking, not the management statistics, which lag by seconds.)
    ///
    /// RabbitMQ 3.10 sometimes answers 500 when a connection of the user closes while it walks
    /// them (seen on a busy machine); closing is idempotent, so that is tried again, at most
    /// `CLOSE_ATTEMPTS` times in all.
    pub fn close_user_connections(&self, user: &str) -> Result<(), ManagementError> {
        const CLOSE_ATTEMPTS: u32 = 4;
        let path = format!("/api/connections/username/{}", encode(user));
        let mut attempt = 1;
        loop {
            match self.call("DELETE", &path, None) {
                Ok(_) => return Ok(()),
                Err(ManagementError::Http { detail, .. })
                    if detail.starts_with("HTTP 500") && attempt < CLOSE_ATTEMPTS =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let e = Management::new("https://ops:s3cret@mq:15672")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("ops:***@mq:15672"), "{e}");
        let e = Management::new("ops:s3cret").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
