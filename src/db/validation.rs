//! QR validation's repository: which merchants and (live) terminals exist with their
//! credentials, which payment codes (by keyed hash) exist, and the per-terminal counters that
//! throttle code guessing.

use super::payments::card_ref;
use super::schema::*;
use super::DbError;
use crate::domain::Identity;
use crate::messages::internal::CardRef;
use crate::messages::now_micros;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

/// Failed payment-code attempts a terminal may make within the current and the previous
/// minute before it is throttled (`rate_limited`). A cashier mistypes a few; a guesser needs
/// millions.
pub const FAILURE_LIMIT: i64 = 10;

/// A live terminal's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalAccess {
    pub token_version: i32,
    pub broker_user: Option<String>,
}

/// The merchants and live terminals a batch names.
#[derive(Debug, Default)]
pub struct Gate {
    pub merchants: HashSet<String>,
    pub terminals: HashMap<(String, String), TerminalAccess>,
}

pub fn gate(conn: &mut PgConnection, merchant_ids: &[String]) -> Result<Gate, DbError> {
    if merchant_ids.is_empty() {
        return Ok(Gate::default());
    }
    let merchants: HashSet<String> = merchants::table
        .filter(merchants::id.eq_any(merchant_ids))
        .select(merchants::id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let terminals = terminals::table
        .filter(terminals::merchant_id.eq_any(merchant_ids))
        .filter(terminals::removed_at.is_null())
        .select((
            terminals::merchant_id,
            terminals::id,
            terminals::token_version,
            terminals::broker_user,
        ))
        .load::<(String, String, i32, Option<String>)>(conn)?
        .into_iter()
        .map(|(m, t, token_version, broker_user)| {
            (
                (m, t),
                TerminalAccess {
                    token_version,
                    broker_user,
                },
            )
        })
        .collect();
    Ok(Gate {
        merchants,
        terminals,
    })
}

/// The cards behind the payment codes that exist, by keyed hash.
pub fn cards_by_code(
    conn: &mut PgConnection,
    code_hashes: &[Vec<u8>],
) -> Result<HashMap<Vec<u8>, CardRef>, DbError> {
    if code_hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Vec<u8>, i64, i64, String)> = payment_codes::table
        .inner_join(cards::table)
        .filter(payment_codes::code_hash.eq_any(code_hashes))
        .select((
            payment_codes::code_hash,
            cards::id,
            cards::account_id,
            cards::user_id,
        ))
        .load(conn)?;
    // Identities in a second query by key: joined in the first, the planner hashed the whole
    // cardholders table for every batch.
    let users: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let identities: HashMap<String, Identity> = if users.is_empty() {
        HashMap::new()
    } else {
        cardholders::table
            .filter(cardholders::user_id.eq_any(&users))
            .select((cardholders::user_id, cardholders::identity))
            .load::<(String, Identity)>(conn)?
            .into_iter()
            .collect()
    };
    let mut cards = HashMap::with_capacity(rows.len());
    for (hash, card_id, account_id, user) in &rows {
        let identity = *identities
            .get(user)
            .ok_or_else(|| DbError::Invariant(format!("card {card_id} has no cardholder")))?;
        cards.insert(
            hash.clone(),
            card_ref(*card_id, *account_id, user, identity)?,
        );
    }
    Ok(cards)
}

/// Takes a transaction-scoped lock per terminal (in one order, so two batches wait rather than
/// deadlock) and returns each terminal's failures in the current and the previous minute. With
/// the locks held until the caller's commit, a terminal's failures are counted one at a time
/// across every process: two batches of the same terminal cannot both spend its allowance.
pub fn lock_failure_counts(
    conn: &mut PgConnection,
    terminals: &[(String, String)],
) -> Result<HashMap<(String, String), i64>, DbError> {
    use chrono::DurationRound;
    if terminals.is_empty() {
        return Ok(HashMap::new());
    }
    let mut keys: Vec<String> = terminals.iter().map(|(m, t)| format!("{m}/{t}")).collect();
    keys.sort();
    keys.dedup();
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(hashtextextended('terminal_failures/' || k, 0)) \
         FROM unnest($1::text[]) AS k ORDER BY k",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&keys)
    .execute(conn)?;
    // The start of the previous minute: the counters are per minute.
    let window_start = (now_micros() - chrono::Duration::minutes(1))
        .duration_trunc(chrono::Duration::minutes(1))
        .map_err(|e| DbError::Invariant(format!("minute window: {e}")))?;
    let merchants: Vec<&str> = terminals.iter().map(|(m, _)| m.as_str()).collect();
    let rows: Vec<(String, String, DateTime<Utc>, i32)> = terminal_failures::table
        .filter(terminal_failures::merchant_id.eq_any(&merchants))
        .filter(terminal_failures::minute.ge(window_start))
        .select((
            terminal_failures::merchant_id,
            terminal_failures::terminal_id,
            terminal_failures::minute,
            terminal_failures::failures,
        ))
        .load(conn)?;
    let mut sums: HashMap<(String, String), i64> = HashMap::new();
    for (m, t, _, n) in rows {
        *sums.entry((m, t)).or_default() += i64::from(n);
    }
    Ok(sums)
}

/// Adds failed attempts to the terminals' counters for the current minute.
pub fn record_failures(
    conn: &mut PgConnection,
    failures: &HashMap<(String, String), i32>,
) -> Result<(), DbError> {
    for ((m, t), n) in failures {
        diesel::sql_query(
            "INSERT INTO terminal_failures (merchant_id, terminal_id, minute, failures) \
             VALUES ($1, $2, date_trunc('minute', now()), $3) \
             ON CONFLICT (merchant_id, terminal_id, minute) \
             DO UPDATE SET failures = terminal_failures.failures + EXCLUDED.failures",
        )
        .bind::<diesel::sql_types::Text, _>(m)
        .bind::<diesel::sql_types::Text, _>(t)
        .bind::<diesel::sql_types::Integer, _>(n)
        .execute(conn)?;
    }
    if !failures.is_empty() {
        // Old counters are useless after the window; keep the table small.
        diesel::delete(
            terminal_failures::table
                .filter(terminal_failures::minute.lt(now_micros() - chrono::Duration::minutes(10))),
        )
        .execute(conn)?;
    }
    Ok(())
}
