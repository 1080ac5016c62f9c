//! Connecting to RabbitMQ with bounded, growing back-off.

use super::BrokerError;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

/// Exponential back-off with a ceiling: 200 ms, 400 ms, … 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub fn reset(&mut self) {
        *self = Backoff::new();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// One attempt. The connection name shows in the management UI, which is how an operator
/// tells the stage workers apart.
pub async fn connect(url: &str, name: &str) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, props).await?)
}

/// Retries `connect` up to `attempts` times with back-off; used by short-lived commands.
pub async fn connect_retrying(
    url: &str,
    name: &str,
    attempts: u32,
) -> Result<Connection, BrokerError> {
    let mut backoff = Backoff::new();
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match connect(url, name).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                log::warn!("cannot connect to RabbitMQ ({e}); retrying");
                last = Some(e);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    Err(last.unwrap_or(BrokerError::ConsumerClosed))
}
