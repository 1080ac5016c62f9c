//! QR validation's repository: which merchants, terminals and payment codes (by keyed hash)
//! exist, and the per-terminal counters that throttle code guessing.

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

/// What QR validation needs to know about a batch, in three queries.
#[derive(Debug, Default)]
pub struct ValidationLookup {
    pub merchants: HashSet<String>,
    pub terminals: HashSet<(String, String)>,
    pub cards_by_code: HashMap<Vec<u8>, CardRef>,
}

pub fn lookup_for_validation(
    conn: &mut PgConnection,
    merchant_ids: &[String],
    code_hashes: &[Vec<u8>],
) -> Result<ValidationLookup, DbError> {
    let merchants: HashSet<String> = merchants::table
        .filter(merchants::id.eq_any(merchant_ids))
        .select(merchants::id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let terminals: HashSet<(String, String)> = terminals::table
        .filter(terminals::merchant_id.eq_any(merchant_ids))
        .select((terminals::merchant_id, terminals::id))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
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
    let mut cards_by_code = HashMap::with_capacity(rows.len());
    for (hash, card_id, account_id, user) in &rows {
        let identity = *identities
            .get(user)
            .ok_or_else(|| DbError::Invariant(format!("card {card_id} has no cardholder")))?;
        cards_by_code.insert(
            hash.clone(),
            card_ref(*card_id, *account_id, user, identity)?,
        );
    }
    Ok(ValidationLookup {
        merchants,
        terminals,
        cards_by_code,
    })
}

/// Failed payment-code attempts a terminal may make within the current and the previous
/// minute before it is throttled (`rate_limited`). A cashier mistypes a few; a guesser needs
/// millions.
pub const FAILURE_LIMIT: i64 = 10;

/// The terminals among `merchants`' that are over the failure limit right now.
pub fn throttled_terminals(
    conn: &mut PgConnection,
    merchant_ids: &[String],
) -> Result<HashSet<(String, String)>, DbError> {
    use chrono::DurationRound;
    // The start of the previous minute: the counters are per minute.
    let window_start = (now_micros() - chrono::Duration::minutes(1))
        .duration_trunc(chrono::Duration::minutes(1))
        .map_err(|e| DbError::Invariant(format!("minute window: {e}")))?;
    let rows: Vec<(String, String, DateTime<Utc>, i32)> = terminal_failures::table
        .filter(terminal_failures::merchant_id.eq_any(merchant_ids))
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
    Ok(sums
        .into_iter()
        .filter(|(_, n)| *n >= FAILURE_LIMIT)
        .map(|(k, _)| k)
        .collect())
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
    // Old counters are useless after the window; keep the table small.
    diesel::delete(
        terminal_failures::table
            .filter(terminal_failures::minute.lt(now_micros() - chrono::Duration::minutes(10))),
    )
    .execute(conn)?;
    Ok(())
}
