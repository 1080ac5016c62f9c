//! Subsidies (补助): crediting many cards from one CSV file in one idempotent batch. Each row's
//! journal entry id is derived from the file's content hash and the row's line number, so
//! importing the same file again credits nothing twice.

use super::admin::{credit, is_cardholder};
use super::DbError;
use crate::domain::{Amount, UserId};
use diesel::pg::PgConnection;
use diesel::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Rows a single file may hold (a campus has tens of thousands of cardholders).
pub const MAX_ROWS: usize = 200_000;
const NAMESPACE: Uuid = Uuid::from_u128(0x3f6e_91c2_7a0b_4d5e_8c1f_2b3a_4c5d_6e7f);

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub text: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file_sha256: String,
    pub rows: usize,
    /// Rows credited by this import.
    pub credited: usize,
    /// Rows already credited by an earlier import of the same file.
    pub already_credited: usize,
    pub total_credited: String,
    pub rejected: Vec<Rejected>,
}

struct Row {
    line: usize,
    user: UserId,
    amount: Amount,
    memo: String,
}

/// Parses `user_id,amount[,memo]` lines (a header line `user_id,amount…` is skipped; blank lines
/// and `#` comments too). Bad rows are reported with their line numbers, not imported.
fn parse(text: &str) -> (Vec<Row>, Vec<Rejected>) {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty()
            || trimmed.starts_with('#')
            || (line == 1 && trimmed.starts_with("user_id"))
        {
            continue;
        }
        let mut reject = |why: String| {
            rejected.push(Rejected {
                line,
                text: raw.chars().take(200).collect(),
                why,
            })
        };
        let fields: Vec<&str> = trimmed.splitn(3, ',').map(str::trim).collect();
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
        rows.push(Row {
            line,
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

/// `batch` names the subsidy run (e.g. "2026-11 meal subsidy"): rows are keyed by batch and line
/// number, so a corrected file re-imported under the same batch credits only the rows that were
/// rejected before. Without a batch name the file's content hash is the key.
pub fn import(
    conn: &mut PgConnection,
    text: &str,
    batch: Option<&str>,
) -> Result<ImportReport, DbError> {
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    let (rows, mut rejected) = parse(text);
    if rows.len() + rejected.len() > MAX_ROWS {
        return Err(DbError::Rejected(format!(
            "a subsidy file may hold at most {MAX_ROWS} rows"
        )));
    }
    let file_id = Uuid::new_v5(&NAMESPACE, batch.unwrap_or(&sha).as_bytes());
    let mut credited = 0;
    let mut already = 0;
    let mut total = rust_decimal::Decimal::ZERO;
    // One transaction: the batch is credited whole or not at all.
    conn.transaction(|conn| {
        for row in &rows {
            if !is_cardholder(conn, &row.user)? {
                rejected.push(Rejected {
                    line: row.line,
                    text: format!("{},{}", row.user, row.amount),
                    why: format!("no card for {}", row.user),
                });
                continue;
            }
            let entry = Uuid::new_v5(&file_id, row.line.to_string().as_bytes());
            let before = super::admin::entry_exists(conn, entry)?;
            let memo = if row.memo.is_empty() {
                "subsidy".to_owned()
            } else {
                row.memo.clone()
            };
            credit(conn, &row.user, row.amount, entry, "subsidy", &memo)?;
            if before {
                already += 1;
            } else {
                credited += 1;
                total += row.amount.value();
            }
        }
        Ok::<_, DbError>(())
    })?;
    rejected.sort_by_key(|r| r.line);
    Ok(ImportReport {
        file_sha256: sha,
        rows: rows.len(),
        credited,
        already_credited: already,
        total_credited: format!("{total:.2}"),
        rejected,
    })
}
