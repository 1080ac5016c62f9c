//! Subsidies (补助): crediting many cards from one CSV file in one idempotent batch. Each row's
//! journal entry id is derived from the file's content hash and the row's line number, so
//! importing the same file again credits nothing twice.

use super::journal;
use super::schema::accounts;
use super::DbError;
use crate::domain::{
    AccountId, AccountKind, Amount, EntryKind, JournalEntry, Money, Refusal, UserId,
};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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
/// rejected before. Without a batch name the file's content hash is the key. The whole file is
/// one database transaction and one call of the ledger writer: credited whole or not at all.
pub fn import(
    conn: &mut PgConnection,
    text: &str,
    batch: Option<&str>,
) -> Result<Result<ImportReport, Refusal>, DbError> {
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    let (rows, mut rejected) = parse(text);
    if rows.len() + rejected.len() > MAX_ROWS {
        return Ok(Err(Refusal::TooManyRows { max: MAX_ROWS }));
    }
    let file_id = Uuid::new_v5(&NAMESPACE, batch.unwrap_or(&sha).as_bytes());
    let report = conn.transaction(|conn| {
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
        let mut entries = Vec::with_capacity(rows.len());
        let mut amounts: HashMap<Uuid, Money> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let Some(&card) = card_accounts.get(row.user.as_str()) else {
                rejected.push(Rejected {
                    line: row.line,
                    text: format!("{},{}", row.user, row.amount),
                    why: format!("no card for {}", row.user),
                });
                continue;
            };
            let entry_id = Uuid::new_v5(&file_id, row.line.to_string().as_bytes());
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
            amounts.insert(entry_id, row.amount.money());
            entries.push(entry);
        }
        let cards: Vec<AccountId> = card_accounts.values().copied().collect();
        let mut locks = journal::lock_cards(conn, &cards)?;
        let posted = journal::post(conn, &mut locks, &entries)?;
        let total: Money = posted
            .new
            .iter()
            .filter_map(|id| amounts.get(id).copied())
            .sum();
        Ok::<_, DbError>(ImportReport {
            file_sha256: sha.clone(),
            rows: rows.len(),
            credited: posted.new.len(),
            already_credited: entries.len() - posted.new.len(),
            total_credited: total.to_string(),
            rejected: Vec::new(),
        })
    })?;
    rejected.sort_by_key(|r| r.line);
    Ok(Ok(ImportReport { rejected, ..report }))
}
