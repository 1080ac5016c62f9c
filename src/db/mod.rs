//! diesel only: the schema, the r2d2 pool, migrations and the repositories. Blocking work runs
//! on tokio's blocking pool (`run`), never on the arbiter that drives AMQP.

pub mod admin;
pub mod audit;
pub mod batch;
pub mod cards;
pub mod codes;
pub mod confirmations;
pub mod enums;
pub mod fees;
pub mod forward;
pub mod journal;
pub mod ledger;
pub mod listings;
pub mod models;
pub mod orders;
pub mod payments;
pub mod refunds;
pub mod report;
pub mod requests;
pub mod schema;
pub mod sessions;
pub mod settle;
pub mod subsidy;
pub mod till;
pub mod validation;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool as R2d2Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub type Pool = R2d2Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("database task failed: {0}")]
    Join(String),
    /// A broken invariant that our own code must keep (a row locked as a card that is not one,
    /// a school account missing): a bug or a damaged database, never the request's fault.
    /// Business refusals are not errors: they are `domain::Refusal` (or a stage's decline).
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
}

impl DbError {
    /// Failures of the database or the way to it (restart, killed backend, pool exhausted,
    /// serialisation conflict): the same work may well succeed in a moment. Everything else
    /// (a constraint violation, a row that is not there) will fail again.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match self {
            DbError::Pool(_) | DbError::Connect(_) | DbError::Join(_) => true,
            // A backend killed mid-query (`pg_terminate_backend`, a restart) reports itself in
            // words only.
            DbError::Query(E::DatabaseError(K::Unknown, info)) => {
                let m = info.message();
                m.contains("terminating connection")
                    || m.contains("server closed the connection")
                    // Two batches locking the same rows in different orders: PostgreSQL
                    // aborts one, and running it again succeeds.
                    || m.contains("deadlock detected")
            }
            DbError::Query(E::DatabaseError(kind, _)) => matches!(
                kind,
                K::ClosedConnection
                    | K::SerializationFailure
                    | K::UnableToSendCommand
                    | K::ReadOnlyTransaction
            ),
            DbError::Query(E::BrokenTransactionManager) => true,
            DbError::Query(_) => false,
            DbError::Migration(_) | DbError::Invariant(_) => false,
        }
    }
}

/// A unique-constraint violation: a row with this key exists already.
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// A stored NUMERIC(18,2) as money. The column type guarantees fen precision, so the rounding
/// fallback never changes a value; it only keeps this infallible.
pub fn money(d: rust_decimal::Decimal) -> crate::domain::Money {
    crate::domain::Money::from_decimal(d).unwrap_or_else(|| crate::domain::Money::round_half_up(d))
}

pub fn pool(url: &str, size: u32) -> Result<Pool, DbError> {
    let manager = ConnectionManager::<PgConnection>::new(url);
    Ok(R2d2Pool::builder()
        .max_size(size)
        // No idle connections opened in the background: a short CLI command must not exit
        // while the pool is still connecting (that crashed libpq at exit), and workers open
        // what they need on first use and keep it.
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        // A connection killed by a database restart is detected before it is handed out.
        .test_on_check_out(true)
        .build(manager)?)
}

pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied.iter().map(|m| m.to_string()).collect())
}

/// Runs blocking diesel work on the blocking thread pool.
pub async fn run<T, F>(pool: &Pool, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
    .map_err(|e| DbError::Join(e.to_string()))?
}
