//! Ledger invariants: all postings sum to zero, every journal entry balances, every account's
//! balance equals the sum of its postings, no card is negative, every approved payment has its
//! posting and nothing else does, and no request is stuck before its final state.

use super::DbError;
use crate::domain::{AccountKind, EntryKind, TxState};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Numeric, Text};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, QueryableByName)]
struct SumRow {
    #[diesel(sql_type = Numeric)]
    total: Decimal,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(Debug, QueryableByName, Serialize)]
pub struct AccountMismatch {
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub owner: String,
    #[diesel(sql_type = Numeric)]
    pub balance: Decimal,
    #[diesel(sql_type = Numeric)]
    pub postings_sum: Decimal,
}

#[derive(Debug, QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(Debug, Serialize)]
pub struct LedgerReport {
    pub ok: bool,
    pub postings: i64,
    pub postings_sum: String,
    pub unbalanced_entries: Vec<String>,
    pub account_mismatches: Vec<AccountMismatch>,
    pub negative_cards: Vec<String>,
    pub approved_without_posting: Vec<String>,
    pub postings_without_approval: Vec<String>,
    pub stuck_requests: Vec<String>,
    pub fee_income: String,
}

fn ids(conn: &mut PgConnection, sql: &str) -> Result<Vec<String>, DbError> {
    Ok(diesel::sql_query(sql)
        .load::<IdRow>(conn)?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

/// `stuck_after_secs`: a request still `created` after this long, or still awaiting its
/// cardholder this long after its deadline, has lost its way.
pub fn verify(conn: &mut PgConnection, stuck_after_secs: i64) -> Result<LedgerReport, DbError> {
    // One snapshot for every check, so concurrent payments cannot cause false alarms.
    conn.build_transaction().repeatable_read().read_only().run(|conn| {
        let sum: SumRow = diesel::sql_query(
            "SELECT COALESCE(SUM(amount), 0) AS total, COUNT(*) AS n FROM postings",
        )
        .get_result(conn)?;
        let unbalanced_entries = ids(
            conn,
            "SELECT entry_id::text AS id FROM postings GROUP BY entry_id HAVING SUM(amount) <> 0 LIMIT 100",
        )?;
        let account_mismatches = diesel::sql_query(
            "SELECT a.id AS account_id, a.kind, a.owner, a.balance, \
                    COALESCE(SUM(p.amount), 0)::numeric AS postings_sum \
             FROM accounts a LEFT JOIN postings p ON p.account_id = a.id \
             GROUP BY a.id HAVING a.balance <> COALESCE(SUM(p.amount), 0) LIMIT 100",
        )
        .load::<AccountMismatch>(conn)?;
        // Names below come from the domain enums (constants, never input).
        let (card, fee_income) = (AccountKind::Card, AccountKind::FeeIncome);
        let (approved, reversed, created) = (TxState::Approved, TxState::Reversed, TxState::Created);
        let awaiting = TxState::AwaitingConfirmation;
        let payment = EntryKind::Payment;
        let negative_cards = ids(
            conn,
            &format!(
                "SELECT owner AS id FROM accounts WHERE kind = '{card}' AND balance < 0 LIMIT 100"
            ),
        )?;
        let approved_without_posting = ids(
            conn,
            &format!(
                "SELECT t.id::text AS id FROM transactions t \
                 WHERE t.state IN ('{approved}', '{reversed}') AND NOT EXISTS \
                   (SELECT 1 FROM journal_entries e WHERE e.id = t.id AND e.kind = '{payment}') \
                 LIMIT 100"
            ),
        )?;
        let postings_without_approval = ids(
            conn,
            &format!(
                "SELECT e.id::text AS id FROM journal_entries e \
                 JOIN transactions t ON t.id = e.transaction_id \
                 WHERE e.kind = '{payment}' AND t.state NOT IN ('{approved}', '{reversed}') \
                 LIMIT 100"
            ),
        )?;
        let stuck_requests = ids(
            conn,
            &format!(
                "SELECT id::text AS id FROM transactions WHERE (state = '{created}' \
                 AND created_at < now() - interval '{stuck} seconds') \
                 OR (state = '{awaiting}' AND confirm_deadline < now() - interval '{stuck} seconds') \
                 LIMIT 100",
                stuck = stuck_after_secs.max(0)
            ),
        )?;
        let fee: SumRow = diesel::sql_query(format!(
            "SELECT COALESCE(SUM(balance), 0) AS total, COUNT(*) AS n FROM accounts \
             WHERE kind = '{fee_income}'"
        ))
        .get_result(conn)?;
        let ok = sum.total.is_zero()
            && unbalanced_entries.is_empty()
            && account_mismatches.is_empty()
            && negative_cards.is_empty()
            && approved_without_posting.is_empty()
            && postings_without_approval.is_empty()
            && stuck_requests.is_empty();
        Ok(LedgerReport {
            ok,
            postings: sum.n,
            postings_sum: format!("{:.2}", sum.total),
            unbalanced_entries,
            account_mismatches,
            negative_cards,
            approved_without_posting,
            postings_without_approval,
            stuck_requests,
            fee_income: format!("{:.2}", fee.total),
        })
    })
}
