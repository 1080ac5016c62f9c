//! Simulators: a POS terminal and a result subscriber over AMQP, the demo campus and its lunch
//! hour. They use only the public contract (routing keys, JSON, JWT headers), exactly as a
//! terminal written in another language would.

pub mod demo;
pub mod load;
pub mod phone;
pub mod pos;
pub mod results;
pub mod seed;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Queues(#[from] crate::admin::queues::QueuesError),
    #[error(
        "no result for request {request_id} within {secs} s (send query.v1, then reversal.v1)"
    )]
    Timeout { request_id: String, secs: u64 },
    #[error("the result queue closed")]
    Closed,
    #[error("{0}")]
    Other(String),
}

/// Tokens at the current versions the database holds (a token of an older version is
/// revoked), for the simulated tills and phones.
pub struct Tokens {
    jwt: crate::auth::JwtKeys,
    pool: crate::db::Pool,
}

impl Tokens {
    pub fn new(config: &crate::config::Config, pool: crate::db::Pool) -> Tokens {
        Tokens {
            jwt: crate::auth::JwtKeys::new(&config.keys),
            pool,
        }
    }

    pub async fn terminal(
        &self,
        m: &crate::domain::MerchantId,
        t: &crate::domain::TerminalId,
    ) -> Result<String, SimError> {
        let (mm, tt) = (m.clone(), t.clone());
        let version = crate::db::run(&self.pool, move |c| {
            crate::db::admin::terminal_token_version(c, &mm, &tt)
        })
        .await?
        .ok_or_else(|| SimError::Other(format!("no live terminal {m}/{t}")))?;
        Ok(self.jwt.issue_terminal(m, t, version)?)
    }

    pub async fn cardholder(
        &self,
        user: &crate::domain::UserId,
        ttl_secs: i64,
    ) -> Result<String, SimError> {
        let u = user.clone();
        let version = crate::db::run(&self.pool, move |c| {
            crate::db::admin::cardholder_token_version(c, &u)
        })
        .await?
        .ok_or_else(|| SimError::Other(format!("no cardholder {user}")))?;
        Ok(self.jwt.issue_cardholder(user, ttl_secs, version)?)
    }
}
