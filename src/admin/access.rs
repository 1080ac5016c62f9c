//! Terminals' own broker users. Each terminal logs in to RabbitMQ as itself, and the broker —
//! not only our code — limits what it can do:
//! - configure: nothing (it cannot declare, delete or bind anything);
//! - write: only the exchange `pay.requests`, and there (a topic permission) only routing keys
//!   `pos.<merchant>.<terminal>.<verb>`;
//! - read: only its own result queue `pos.<merchant>.<terminal>`.
//!
//! So a terminal cannot reach the internal stage exchanges and queues, cannot publish results,
//! cannot speak for another till, and cannot read anyone else's results. Users are global in
//! RabbitMQ while campuspay lives in one vhost, so a terminal's user is named after its queue,
//! plus `@<vhost>` outside the default vhost (test vhosts share one broker).

use super::management::{Management, ManagementError};
use crate::broker::amqp_url;
use crate::broker::topology::REQUESTS;
use crate::domain::{MerchantId, TerminalId};
use rand::RngCore;
use serde::Serialize;

/// The broker user of terminal `m`/`t` in `vhost`.
pub fn terminal_user(vhost: &str, m: &MerchantId, t: &TerminalId) -> String {
    if vhost == "/" {
        format!("pos.{m}.{t}")
    } else {
        format!("pos.{m}.{t}@{vhost}")
    }
}

/// What a terminal is told, once: how to log in to the broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerLogin {
    pub user: String,
    pub password: String,
    /// The pipeline's broker URL with these credentials (the host may differ for a till that
    /// reaches the broker by another name).
    pub amqp_url: String,
}

/// 32 random bytes (OS CSPRNG), hex: as strong as the signing keys.
fn new_password() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Ids are `[A-Za-z0-9_-]`, so only the dots between them need escaping in a pattern.
fn pattern_for(m: &MerchantId, t: &TerminalId) -> String {
    format!("pos\\.{m}\\.{t}")
}

/// Creates the terminal's user with a fresh password, or gives an existing one a new password
/// (rotation); sets its permissions and closes its open connections, so an old password stops
/// working at once.
pub fn grant(
    mgmt: &Management,
    amqp: &str,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<BrokerLogin, ManagementError> {
    let vhost = amqp_url::vhost(amqp).unwrap_or_else(|| "/".into());
    let user = terminal_user(&vhost, m, t);
    let password = new_password();
    mgmt.put_user(&user, &password)?;
    let own = pattern_for(m, t);
    mgmt.set_permissions(
        &vhost,
        &user,
        "^$",
        &format!("^{}$", regex_escape(REQUESTS)),
        &format!("^{own}$"),
    )?;
    mgmt.set_topic_permissions(&vhost, &user, REQUESTS, &format!("^{own}\\.[a-z_]+$"), "^$")?;
    mgmt.close_user_connections(&user)?;
    Ok(BrokerLogin {
        amqp_url: amqp_url::with_credentials(amqp, &user, &password).unwrap_or_default(),
        user,
        password,
    })
}

/// Deletes the terminal's user and closes its connections: its login stops working at once.
pub fn revoke(mgmt: &Management, user: &str) -> Result<(), ManagementError> {
    mgmt.delete_user(user)?;
    mgmt.close_user_connections(user)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let (m, t) = (
            MerchantId::parse("canteen-1").unwrap(),
            TerminalId::parse("t_2").unwrap(),
        );
        assert_eq!(terminal_user("/", &m, &t), "pos.canteen-1.t_2");
        assert_eq!(terminal_user("cp_x", &m, &t), "pos.canteen-1.t_2@cp_x");
        assert_eq!(pattern_for(&m, &t), "pos\\.canteen-1\\.t_2");
        assert_eq!(regex_escape("pay.requests"), "pay\\.requests");
        assert_eq!(new_password().len(), 64);
        assert_ne!(new_password(), new_password());
    }
}
