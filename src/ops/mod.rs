//! Use cases of the back office, shared by the CLI (`campuspay admin …`), `/admin/v1` and the
//! operator console: one path to money. Each front end parses its input into domain types,
//! calls one function here, and maps the result to its own words; none of them talks to `db`
//! or the broker for these jobs itself.
//!
//! Errors: `OpsError::Refused` is a business refusal (`domain::Refusal`: nothing changed, the
//! request was understood and is not allowed); every other variant is infrastructure failing.

pub mod cards;
pub mod merchants;
pub mod money;
pub mod queues;
pub mod reports;
pub mod tokens;

use crate::broker::BrokerError;
use crate::config::Config;
use crate::db::{self, DbError, Pool};
use crate::domain::Refusal;
use diesel::pg::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    #[error("token: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("broker management: {0}")]
    Management(#[from] crate::admin::management::ManagementError),
    #[error("a background task failed: {0}")]
    Task(String),
}

impl From<lapin::Error> for OpsError {
    fn from(e: lapin::Error) -> OpsError {
        OpsError::Broker(BrokerError::Amqp(e))
    }
}

/// Who asked: recorded with every change (`operator_actions`), so the back office can answer
/// "who froze this card".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(String);

impl Operator {
    /// An operator signed in with an admin token (`sub` of the token, e.g. `admin:li`).
    pub fn admin(name: &str) -> Operator {
        Operator(name.chars().take(100).collect())
    }

    /// The shell user running `campuspay admin …` (`cli:<login>`).
    pub fn from_shell() -> Operator {
        let login = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Operator(format!(
            "cli:{}",
            login.chars().take(64).collect::<String>()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the use cases need: the database and the settings (keys, broker URL).
#[derive(Clone)]
pub struct Ops {
    pub pool: Pool,
    pub config: Config,
}

impl Ops {
    pub fn new(pool: Pool, config: Config) -> Ops {
        Ops { pool, config }
    }

    /// Runs a repository call that may refuse, flattening its refusal into `OpsError`.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, OpsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<Result<T, Refusal>, DbError> + Send + 'static,
    {
        Ok(db::run(&self.pool, f).await??)
    }

    /// Records a change made by `who` (best effort: the change itself is committed already and
    /// carries its own trail in the ledger; a failed audit write is logged, not fatal).
    pub(crate) async fn record(
        &self,
        who: &Operator,
        action: &'static str,
        subject: String,
        detail: serde_json::Value,
    ) {
        let who = who.clone();
        let r = db::run(&self.pool, move |c| {
            db::audit::record(c, who.as_str(), action, &subject, &detail)
        })
        .await;
        if let Err(e) = r {
            log::error!("could not record {action}: {e}");
        }
    }
}
