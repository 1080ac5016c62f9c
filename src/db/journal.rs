//! The ledger writer: the one place that writes `journal_entries`, `postings` and account
//! balances. Every money path (settlement, reversals, refunds, top-ups, subsidies, the bench
//! seed) hands it `domain::JournalEntry` values, which cannot be unbalanced; the database checks
//! the same again at commit (a deferred constraint trigger on `postings`).
//!
//! Lock order, the same for every writer so that two of them wait instead of deadlocking:
//! 1. card accounts, in id order (`lock_cards`; settlement takes these first because it must
//!    read the balances before it decides);
//! 2. every other account (merchants, the school's fee income and clearing accounts), in id
//!    order, last, just before the commit (`post`): every settlement shard credits them, so the
//!    shorter each transaction holds them, the less the shards wait for each other.
//!
//! Row locks are `FOR NO KEY UPDATE`: the lock an UPDATE of the balance takes anyway, and one
//! that does not block the key-share locks that inserting postings (which reference accounts)
//! takes.

use super::models::{NewEntry, NewPosting};
use super::schema::{accounts, journal_entries, postings};
use super::DbError;
use crate::domain::{AccountId, AccountKind, JournalEntry, LegKind, Money};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Numeric};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Entries per INSERT statement. All legs of an entry go into one statement with it, and a
/// bounded chunk keeps each statement far from PostgreSQL's 65,535 bind parameters.
const ENTRIES_PER_STATEMENT: usize = 1_000;

/// Card accounts locked by this database transaction, with their balances. Holding one is the
/// proof `post` asks for that step 1 of the lock order happened.
#[derive(Debug, Default)]
pub struct CardLocks {
    balances: HashMap<AccountId, Money>,
}

impl CardLocks {
    pub fn balance(&self, account: AccountId) -> Option<Money> {
        self.balances.get(&account).copied()
    }
}

/// Locks the card accounts in id order and reads their balances. Every id must be a card
/// account: anything else is a bug in the caller.
pub fn lock_cards(conn: &mut PgConnection, ids: &[AccountId]) -> Result<CardLocks, DbError> {
    let rows = lock_in_order(conn, ids)?;
    let mut balances = HashMap::with_capacity(rows.len());
    for (id, kind, balance) in rows {
        if kind != AccountKind::Card {
            return Err(DbError::Invariant(format!(
                "account {id} is a {kind} account, locked as a card"
            )));
        }
        balances.insert(id, balance);
    }
    Ok(CardLocks { balances })
}

/// What `post` did.
#[derive(Debug, Default)]
pub struct Posted {
    /// Entries written now; the others existed already (a retry) and changed nothing.
    pub new: HashSet<Uuid>,
}

/// Posts the entries not stored yet (an entry id that exists already is a retry and changes
/// nothing), and moves the balances. Card legs must post to accounts in `cards`; the balances
/// in `cards` follow the writes. The CHECK constraints on card and merchant balances stand
/// behind the callers' arithmetic: a write that would take one below zero fails the whole
/// transaction.
pub fn post(
    conn: &mut PgConnection,
    cards: &mut CardLocks,
    entries: &[JournalEntry],
) -> Result<Posted, DbError> {
    for entry in entries {
        for leg in entry.legs() {
            if leg.kind == LegKind::Card && !cards.balances.contains_key(&leg.account) {
                return Err(DbError::Invariant(format!(
                    "entry {} posts to card account {} without locking it first",
                    entry.id(),
                    leg.account
                )));
            }
        }
    }
    let mut new: HashSet<Uuid> = HashSet::with_capacity(entries.len());
    for chunk in entries.chunks(ENTRIES_PER_STATEMENT) {
        let rows: Vec<NewEntry> = chunk
            .iter()
            .map(|e| NewEntry {
                id: e.id(),
                kind: e.kind(),
                transaction_id: e.transaction().map(|t| t.0),
                memo: e.memo(),
            })
            .collect();
        new.extend(
            diesel::insert_into(journal_entries::table)
                .values(&rows)
                .on_conflict(journal_entries::id)
                .do_nothing()
                .returning(journal_entries::id)
                .get_results::<Uuid>(conn)?,
        );
    }
    let fresh: Vec<&JournalEntry> = entries.iter().filter(|e| new.contains(&e.id())).collect();
    let mut card_deltas: BTreeMap<AccountId, Money> = BTreeMap::new();
    let mut other_deltas: BTreeMap<AccountId, (LegKind, Money)> = BTreeMap::new();
    for chunk in fresh.chunks(ENTRIES_PER_STATEMENT) {
        let rows: Vec<NewPosting> = chunk
            .iter()
            .flat_map(|e| {
                e.legs().iter().map(|leg| NewPosting {
                    entry_id: e.id(),
                    leg: leg.kind,
                    account_id: leg.account.0,
                    amount: leg.amount.value(),
                })
            })
            .collect();
        diesel::insert_into(postings::table)
            .values(&rows)
            .execute(conn)?;
    }
    for entry in &fresh {
        for leg in entry.legs() {
            if leg.kind == LegKind::Card {
                *card_deltas.entry(leg.account).or_default() += leg.amount;
            } else {
                other_deltas
                    .entry(leg.account)
                    .or_insert((leg.kind, Money::ZERO))
                    .1 += leg.amount;
            }
        }
    }
    // 1. Cards: locked already (checked above).
    let deltas: Vec<(AccountId, Money)> = card_deltas.into_iter().collect();
    adjust_balances(conn, &deltas)?;
    for (account, delta) in &deltas {
        if let Some(b) = cards.balances.get_mut(account) {
            *b += *delta;
        }
    }
    // 2. Everything else, in id order, last.
    if !other_deltas.is_empty() {
        let ids: Vec<AccountId> = other_deltas.keys().copied().collect();
        for (id, kind, _) in lock_in_order(conn, &ids)? {
            let expected = other_deltas.get(&id).map(|(leg, _)| leg.account_kind());
            if expected != Some(kind) {
                return Err(DbError::Invariant(format!(
                    "a {expected:?} leg posts to account {id}, a {kind} account"
                )));
            }
        }
        let deltas: Vec<(AccountId, Money)> =
            other_deltas.into_iter().map(|(a, (_, d))| (a, d)).collect();
        adjust_balances(conn, &deltas)?;
    }
    Ok(Posted { new })
}

/// Locks accounts in id order; returns (id, kind, balance) of each. Fails if one is missing.
fn lock_in_order(
    conn: &mut PgConnection,
    ids: &[AccountId],
) -> Result<Vec<(AccountId, AccountKind, Money)>, DbError> {
    let mut ids: Vec<i64> = ids.iter().map(|a| a.0).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, AccountKind, Decimal)> = accounts::table
        .filter(accounts::id.eq_any(&ids))
        .order(accounts::id)
        .for_no_key_update()
        .select((accounts::id, accounts::kind, accounts::balance))
        .load(conn)?;
    if rows.len() != ids.len() {
        return Err(DbError::Invariant(format!(
            "{} of {} accounts to lock exist",
            rows.len(),
            ids.len()
        )));
    }
    rows.into_iter()
        .map(|(id, kind, balance)| Ok((AccountId(id), kind, super::money(balance))))
        .collect()
}

/// Adds each delta to its account's balance; the accounts are locked already.
fn adjust_balances(conn: &mut PgConnection, deltas: &[(AccountId, Money)]) -> Result<(), DbError> {
    for chunk in deltas.chunks(super::batch::ROWS_PER_STATEMENT) {
        let ids: Vec<i64> = chunk.iter().map(|d| d.0 .0).collect();
        let amounts: Vec<Decimal> = chunk.iter().map(|d| d.1.value()).collect();
        diesel::sql_query(
            "UPDATE accounts a SET balance = a.balance + v.delta \
             FROM unnest($1::int8[], $2::numeric[]) AS v(id, delta) \
             WHERE a.id = v.id",
        )
        .bind::<Array<BigInt>, _>(ids)
        .bind::<Array<Numeric>, _>(amounts)
        .execute(conn)?;
    }
    Ok(())
}

/// The account of `kind` owned by `owner` (the school's own accounts are owned by `school`).
pub fn account_of(
    conn: &mut PgConnection,
    kind: AccountKind,
    owner: &str,
) -> Result<Option<AccountId>, DbError> {
    Ok(accounts::table
        .filter(accounts::kind.eq(kind).and(accounts::owner.eq(owner)))
        .select(accounts::id)
        .first::<i64>(conn)
        .optional()?
        .map(AccountId))
}

/// The school's fee-income account (made by the first migration).
pub fn fee_income(conn: &mut PgConnection) -> Result<AccountId, DbError> {
    account_of(conn, AccountKind::FeeIncome, SCHOOL)?
        .ok_or_else(|| DbError::Invariant("the school's fee-income account is missing".into()))
}

/// The school's top-up clearing account (made by the first migration).
pub fn clearing(conn: &mut PgConnection) -> Result<AccountId, DbError> {
    account_of(conn, AccountKind::TopupClearing, SCHOOL)?
        .ok_or_else(|| DbError::Invariant("the school's clearing account is missing".into()))
}

/// Owner of the school's own accounts.
pub const SCHOOL: &str = "school";
