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

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool as R2d2Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::cell::Cell;
use std::time::{Duration, Instant};

pub type Pool = R2d2Pool<Manager>;
pub type Conn = PooledConnection<Manager>;

thread_local! {
    /// Set by `run` just before it gives back a connection whose work failed because the
    /// connection itself is gone; read (and cleared) by `Manager::has_broken`, which the pool
    /// calls on the same thread as the connection goes back.
    static LOST: Cell<bool> = const { Cell::new(false) };
}

/// diesel's connection manager, which also drops a connection `run` found dead.
#[derive(Debug)]
pub struct Manager(ConnectionManager<PgConnection>);

impl ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        // Both read, so the flag is always cleared.
        let lost = LOST.with(|l| l.replace(false));
        self.0.has_broken(conn) || lost
    }
}

/// When a pooled connection was last used successfully (an r2d2 extension of the connection).
struct LastUsed(Instant);

/// A connection used successfully this recently is handed out as it is; one idle for longer
/// (or never used) is checked with a `SELECT 1` first, so a database restart is noticed before
/// the work starts. Checking on every checkout cost a round trip per stage batch: at a few
/// hundred payments a second, ~one statement in eight.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

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
    /// The connection itself is gone (the server closed it, a restart): it must not be used
    /// again.
    pub fn is_connection_lost(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match self {
            DbError::Query(E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _)) => {
                true
            }
            DbError::Query(E::DatabaseError(K::Unknown, info)) => {
                let m = info.message();
                m.contains("terminating connection") || m.contains("server closed the connection")
            }
            DbError::Query(E::BrokenTransactionManager) => true,
            _ => false,
        }
    }

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
    let manager = Manager(ConnectionManager::<PgConnection>::new(url));
    Ok(R2d2Pool::builder()
        .max_size(size)
        // No idle connections opened in the background: a short CLI command must not exit
        // while the pool is still connecting (that crashed libpq at exit), and workers open
        // what they need on first use and keep it.
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        // A connection killed by a database restart is detected before it is handed out by
        // `checkout` (when idle) or dropped after its first failure (`run`).
        .test_on_check_out(false)
        .build(manager)?)
}

/// A connection from the pool, checked with a `SELECT 1` unless it was used successfully
/// within `TRUSTED_FOR` (see there). A dead one is dropped and another taken.
fn checkout(pool: &Pool) -> Result<Conn, DbError> {
    let mut attempts = pool.max_size();
    loop {
        let mut conn = pool.get()?;
        let trusted = PooledConnection::extensions(&conn)
            .get::<LastUsed>()
            .is_some_and(|u| u.0.elapsed() < TRUSTED_FOR);
        if trusted {
            return Ok(conn);
        }
        match conn.batch_execute("SELECT 1") {
            Ok(()) => return Ok(conn),
            Err(e) if attempts > 0 => {
                log::debug!("dropping a dead database connection: {e}");
                attempts -= 1;
                LOST.with(|l| l.set(true));
                drop(conn);
            }
            Err(e) => {
                LOST.with(|l| l.set(true));
                drop(conn);
                return Err(e.into());
            }
        }
    }
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
        let mut conn = checkout(&pool)?;
        let result = f(&mut conn);
        match &result {
            Ok(_) => {
                PooledConnection::extensions_mut(&mut conn).insert(LastUsed(Instant::now()));
            }
            // Not given out again: the pool drops it as it comes back (`Manager::has_broken`).
            Err(e) if e.is_connection_lost() => LOST.with(|l| l.set(true)),
            Err(_) => {}
        }
        drop(conn);
        result
    })
    .await
    .map_err(|e| DbError::Join(e.to_string()))?
}
