//! Subsidies (补助): crediting many cards from one CSV file. Every import names its batch
//! ("2026-11 meal subsidy"), and each row is keyed within the batch by its `row_id` column when
//! the file has one, else by the cardholder. A row is credited once per (batch, key), whatever
//! happens to the file afterwards:
//! - imported again, the same: every row "already credited";
//! - reordered, or with comment lines added: the keys do not depend on the position;
//! - edited (another amount or cardholder for a key credited before): the row is rejected with
//!   what was credited, and nothing changes — a correction is a new row or a new batch;
//! - a key twice in one file (a cardholder listed twice without row ids): both rejected, so
//!   nobody is credited by a file that is ambiguous.

use super::journal;
use super::schema::{accounts, subsidy_credits};
use super::{money, DbError};
use crate::domain::{
    AccountId, AccountKind, Amount, EntryKind, JournalEntry, Money, Refusal, UserId,
};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

/// Rows a single file may hold (a campus has tens of thousands of cardholders).
pub const MAX_ROWS: usize = 200_000;
/// Longest batch name and row id.
pub const MAX_BATCH_CHARS: usize = 100;
pub const MAX_ROW_ID_CHARS: usize = 64;
const NAMESPACE: Uuid = Uuid::from_u128(0x3f6e_91c2_7a0b_4d5e_8c1f_2b3a_4c5d_6e7f);

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub text: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub batch: String,
    pub file_sha256: String,
    pub rows: usize,
    /// Rows credited by this import.
    pub credited: usize,
    /// Rows credited by an earlier import of this batch, exactly as the file says now.
    pub already_credited: usize,
    pub total_credited: String,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone)]
struct Row {
    line: usize,
    text: String,
    /// The row's id within the batch: its `row_id`, or the cardholder.
    key: String,
    user: UserId,
    amount: Amount,
    memo: String,
}

/// A batch name: 1 to 100 characters, no control characters.
pub fn valid_batch(batch: &str) -> bool {
    let n = batch.chars().count();
    (1..=MAX_BATCH_CHARS).contains(&n) && !batch.chars().any(char::is_control)
}

/// Parses the file. Lines are `user_id,amount[,memo]`, or `row_id,user_id,amount[,memo]` when
/// the header (the first line that is not blank or a `#` comment) starts with `row_id`; a header
/// `user_id,…` is skipped, and so are blank lines and comments. Bad rows are reported with their line numbers.
fn parse(text: &str) -> (Vec<Row>, Vec<Rejected>) {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut with_row_ids = false;
    // The first line that is neither blank nor a comment may be a header.
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if std::mem::take(&mut first) {
            if trimmed.starts_with("row_id") {
                with_row_ids = true;
                continue;
            }
            if trimmed.starts_with("user_id") {
                continue;
            }
        }
        let shown: String = raw.chars().take(200).collect();
        let mut reject = |why: String| {
            rejected.push(Rejected {
                line,
                text: shown.clone(),
                why,
            })
        };
        let (row_id, rest) = if with_row_ids {
            match trimmed.split_once(',') {
                Some((id, rest)) => (Some(id.trim()), rest),
                None => {
                    reject("expected row_id,user_id,amount[,memo]".into());
                    continue;
                }
            }
        } else {
            (None, trimmed)
        };
        let fields: Vec<&str> = rest.splitn(3, ',').map(str::trim).collect();
        let (Some(user), Some(amount)) = (fields.first(), fields.get(1)) else {
            reject("expected user_id,amount[,memo]".into());
            continue;
        };
        let user = match UserId::parse(user) {
            Ok(u) => u,
            Err(e) => {
                reject(e.to_string());
                continue;
            }
        };
        let amount = match Amount::parse(amount) {
            Ok(a) => a,
            Err(e) => {
                reject(e.to_string());
                continue;
            }
        };
        let key = match row_id {
            Some(id) if id.is_empty() || id.chars().count() > MAX_ROW_ID_CHARS => {
                reject(format!("a row_id is 1 to {MAX_ROW_ID_CHARS} characters"));
                continue;
            }
            Some(id) => format!("row:{id}"),
            None => format!("user:{user}"),
        };
        rows.push(Row {
            line,
            text: shown,
            key,
            user,
            amount,
            memo: fields
                .get(2)
                .map(|m| m.chars().take(100).collect())
                .unwrap_or_default(),
        });
    }
    (rows, rejected)
}

/// Imports the file under `batch`: see the module doc. One database transaction, holding a lock
/// on the batch name so that two imports of one batch at once run one after the other; the
/// credits are posted in one call of the ledger writer.
pub fn import(
    conn: &mut PgConnection,
    text: &str,
    batch: &str,
) -> Result<Result<ImportReport, Refusal>, DbError> {
    run(conn, text, batch, false)
}

/// What `import` would do with this file now, row by row, and nothing done: the same
/// transaction, rolled back at its end (the console's preview before the operator confirms).
pub fn preview(
    conn: &mut PgConnection,
    text: &str,
    batch: &str,
) -> Result<Result<ImportReport, Refusal>, DbError> {
    run(conn, text, batch, true)
}

/// How the import's transaction ends: failed, or (a preview) rolled back with its report.
enum Ended {
    Failed(DbError),
    Previewed(Box<(ImportReport, Vec<Rejected>)>),
}

impl From<diesel::result::Error> for Ended {
    fn from(e: diesel::result::Error) -> Ended {
        Ended::Failed(e.into())
    }
}

impl From<DbError> for Ended {
    fn from(e: DbError) -> Ended {
        Ended::Failed(e)
    }
}

fn run(
    conn: &mut PgConnection,
    text: &str,
    batch: &str,
    preview: bool,
) -> Result<Result<ImportReport, Refusal>, DbError> {
    if !valid_batch(batch) {
        return Ok(Err(Refusal::InvalidBatch {
            max: MAX_BATCH_CHARS,
        }));
    }
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    let (parsed, mut rejected) = parse(text);
    if parsed.len() + rejected.len() > MAX_ROWS {
        return Ok(Err(Refusal::TooManyRows { max: MAX_ROWS }));
    }
    // A key twice in the file: which row is meant is unclear, so neither is credited.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &parsed {
        *seen.entry(r.key.as_str()).or_default() += 1;
    }
    let mut rows = Vec::with_capacity(parsed.len());
    for r in &parsed {
        if seen[r.key.as_str()] > 1 {
            let why = match r.key.strip_prefix("user:") {
                Some(user) => format!(
                    "{user} appears more than once in this file: give each row a row_id \
                     (header row_id,user_id,amount,memo), or split the batch"
                ),
                None => format!("row id {} appears more than once", &r.key[4..]),
            };
            rejected.push(Rejected {
                line: r.line,
                text: r.text.clone(),
                why,
            });
        } else {
            rows.push(r.clone());
        }
    }
    let batch_ns = Uuid::new_v5(&NAMESPACE, batch.as_bytes());
    let report = conn.transaction::<_, Ended, _>(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('subsidy/' || $1, 0))")
            .bind::<diesel::sql_types::Text, _>(batch)
            .execute(conn)?;
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let earlier: HashMap<String, (String, Decimal)> = subsidy_credits::table
            .filter(subsidy_credits::batch.eq(batch))
            .filter(subsidy_credits::row_key.eq_any(&keys))
            .select((
                subsidy_credits::row_key,
                subsidy_credits::user_id,
                subsidy_credits::amount,
            ))
            .load::<(String, String, Decimal)>(conn)?
            .into_iter()
            .map(|(k, u, a)| (k, (u, a)))
            .collect();
        let users: Vec<&str> = rows.iter().map(|r| r.user.as_str()).collect();
        let card_accounts: HashMap<String, AccountId> = accounts::table
            .filter(accounts::kind.eq(AccountKind::Card))
            .filter(accounts::owner.eq_any(&users))
            .select((accounts::owner, accounts::id))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .map(|(o, id)| (o, AccountId(id)))
            .collect();
        let clearing = journal::clearing(conn)?;
        let mut already = 0;
        let mut new_rows = Vec::new();
        let mut entries = Vec::new();
        let mut total = Money::ZERO;
        let mut rejected_now = Vec::new();
        for row in &rows {
            if let Some((user, amount)) = earlier.get(&row.key) {
                let amount = money(*amount);
                if user == row.user.as_str() && amount == row.amount.money() {
                    already += 1;
                } else {
                    rejected_now.push(Rejected {
                        line: row.line,
                        text: row.text.clone(),
                        why: format!(
                            "this batch already credited {amount} to {user} for this row; \
                             nothing changed (correct it with a new row or a new batch)"
                        ),
                    });
                }
                continue;
            }
            let Some(&card) = card_accounts.get(row.user.as_str()) else {
                rejected_now.push(Rejected {
                    line: row.line,
                    text: row.text.clone(),
                    why: format!("no card for {}", row.user),
                });
                continue;
            };
            let entry_id = Uuid::new_v5(&batch_ns, row.key.as_bytes());
            let memo = if row.memo.is_empty() {
                "subsidy"
            } else {
                row.memo.as_str()
            };
            let entry = JournalEntry::credit(
                entry_id,
                EntryKind::Subsidy,
                memo,
                card,
                clearing,
                row.amount,
            )
            .map_err(|e| DbError::Invariant(format!("subsidy line {}: {e}", row.line)))?;
            entries.push(entry);
            new_rows.push((row, entry_id));
            total += row.amount.money();
        }
        let cards: Vec<AccountId> = entries
            .iter()
            .flat_map(|e| e.legs())
            .filter(|l| l.kind == crate::domain::LegKind::Card)
            .map(|l| l.account)
            .collect();
        let mut locks = journal::lock_cards(conn, &cards)?;
        let posted = journal::post(conn, &mut locks, &entries)?;
        if posted.new.len() != entries.len() {
            // Under the batch lock, with no credit recorded for these keys, their entries
            // cannot exist yet.
            return Err(Ended::Failed(DbError::Invariant(format!(
                "subsidy batch {batch}: {} of {} entries existed already",
                entries.len() - posted.new.len(),
                entries.len()
            ))));
        }
        for chunk in new_rows.chunks(super::batch::ROWS_PER_STATEMENT) {
            let values: Vec<_> = chunk
                .iter()
                .map(|(row, entry_id)| {
                    (
                        subsidy_credits::batch.eq(batch),
                        subsidy_credits::row_key.eq(row.key.as_str()),
                        subsidy_credits::user_id.eq(row.user.as_str()),
                        subsidy_credits::amount.eq(row.amount.value()),
                        subsidy_credits::entry_id.eq(*entry_id),
                    )
                })
                .collect();
            diesel::insert_into(subsidy_credits::table)
                .values(&values)
                .execute(conn)?;
        }
        let report = ImportReport {
            batch: batch.to_owned(),
            file_sha256: sha.clone(),
            rows: parsed.len(),
            credited: new_rows.len(),
            already_credited: already,
            total_credited: total.to_string(),
            rejected: Vec::new(),
        };
        if preview {
            return Err(Ended::Previewed(Box::new((report, rejected_now))));
        }
        Ok::<_, Ended>((report, rejected_now))
    });
    let (report, rejected_now) = match report {
        Ok(done) => done,
        Err(Ended::Previewed(previewed)) => *previewed,
        Err(Ended::Failed(e)) => return Err(e),
    };
    rejected.extend(rejected_now);
    rejected.sort_by_key(|r| r.line);
    Ok(Ok(ImportReport { rejected, ..report }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_row_ids_or_the_cardholder_never_the_position() {
        let (rows, rejected) = parse("user_id,amount\n# note\ns001,10.00\n\ns002,5,memo\n");
        assert!(rejected.is_empty());
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["user:s001", "user:s002"]);
        let (rows, rejected) =
            parse("row_id,user_id,amount,memo\nA1,s001,10.00,x\nA2,s001,3\n,s002,1\n");
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["row:A1", "row:A2"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, 4);
        assert!(valid_batch("2026-11 meal subsidy"));
        assert!(!valid_batch(""));
        assert!(!valid_batch("a\nb"));
    }
}
