//! Back-office repository: merchants, terminals, cards, top-ups, fee rules.

use super::models::{NewEntry, NewPosting};
use super::schema::*;
use super::DbError;
use crate::domain::{Amount, FeeRate, Identity, MerchantId, Money, TerminalId, UserId};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

fn money(d: Decimal) -> Money {
    // NUMERIC(18,2) always has fen precision; fall back to rounding rather than panic.
    Money::from_decimal(d).unwrap_or_else(|| Money::round_half_up(d))
}

pub fn add_merchant(conn: &mut PgConnection, id: &MerchantId, name: &str) -> Result<(), DbError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(DbError::Rejected(
            "merchant name must be 1 to 100 characters".into(),
        ));
    }
    conn.transaction(|conn| {
        let account: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq("merchant"),
                accounts::owner.eq(id.as_str()),
            ))
            .returning(accounts::id)
            .get_result(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    DbError::Conflict(format!("merchant {id}"))
                } else {
                    e.into()
                }
            })?;
        diesel::insert_into(merchants::table)
            .values((
                merchants::id.eq(id.as_str()),
                merchants::name.eq(name),
                merchants::account_id.eq(account),
            ))
            .execute(conn)?;
        Ok(())
    })
}

pub fn add_terminal(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<(), DbError> {
    let exists: bool = diesel::select(diesel::dsl::exists(
        merchants::table.filter(merchants::id.eq(m.as_str())),
    ))
    .get_result(conn)?;
    if !exists {
        return Err(DbError::NotFound(format!("merchant {m}")));
    }
    diesel::insert_into(terminals::table)
        .values((
            terminals::merchant_id.eq(m.as_str()),
            terminals::id.eq(t.as_str()),
        ))
        .execute(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                DbError::Conflict(format!("terminal {m}/{t}"))
            } else {
                e.into()
            }
        })?;
    Ok(())
}

pub fn add_card(
    conn: &mut PgConnection,
    user: &UserId,
    name: &str,
    identity: Identity,
) -> Result<i64, DbError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(DbError::Rejected(
            "cardholder name must be 1 to 100 characters".into(),
        ));
    }
    conn.transaction(|conn| {
        diesel::insert_into(cardholders::table)
            .values((
                cardholders::user_id.eq(user.as_str()),
                cardholders::name.eq(name),
                cardholders::identity.eq(identity.as_str()),
            ))
            .execute(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    DbError::Conflict(format!("cardholder {user}"))
                } else {
                    e.into()
                }
            })?;
        let account: i64 = diesel::insert_into(accounts::table)
            .values((accounts::kind.eq("card"), accounts::owner.eq(user.as_str())))
            .returning(accounts::id)
            .get_result(conn)?;
        let card: i64 = diesel::insert_into(cards::table)
            .values((
                cards::user_id.eq(user.as_str()),
                cards::account_id.eq(account),
            ))
            .returning(cards::id)
            .get_result(conn)?;
        Ok(card)
    })
}

pub fn account_of(conn: &mut PgConnection, kind: &str, owner: &str) -> Result<i64, DbError> {
    accounts::table
        .filter(accounts::kind.eq(kind).and(accounts::owner.eq(owner)))
        .select(accounts::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| DbError::NotFound(format!("{kind} account {owner}")))
}

/// Credits a card from the top-up clearing account. Idempotent on `entry_id`: the same id never
/// credits twice. Returns the balance after.
pub fn topup(
    conn: &mut PgConnection,
    user: &UserId,
    amount: Amount,
    entry_id: Uuid,
    memo: &str,
) -> Result<Money, DbError> {
    credit(conn, user, amount, entry_id, "topup", memo)
}

/// Credits a card from the school's clearing account as a `kind` entry (`topup`, `subsidy`).
/// Idempotent on `entry_id`. Returns the balance after.
pub fn credit(
    conn: &mut PgConnection,
    user: &UserId,
    amount: Amount,
    entry_id: Uuid,
    kind: &str,
    memo: &str,
) -> Result<Money, DbError> {
    conn.transaction(|conn| {
        let card_account = account_of(conn, "card", user.as_str())
            .map_err(|_| DbError::NotFound(format!("card of {user}")))?;
        let clearing = account_of(conn, "topup_clearing", "school")?;
        let inserted = diesel::insert_into(journal_entries::table)
            .values(&NewEntry {
                id: entry_id,
                kind,
                transaction_id: None,
                memo,
            })
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 1 {
            diesel::insert_into(postings::table)
                .values(&vec![
                    NewPosting {
                        entry_id,
                        leg: "card",
                        account_id: card_account,
                        amount: amount.value(),
                    },
                    NewPosting {
                        entry_id,
                        leg: "clearing",
                        account_id: clearing,
                        amount: -amount.value(),
                    },
                ])
                .execute(conn)?;
            // Lock order: card accounts before school accounts, everywhere.
            diesel::update(accounts::table.find(card_account))
                .set(accounts::balance.eq(accounts::balance + amount.value()))
                .execute(conn)?;
            diesel::update(accounts::table.find(clearing))
                .set(accounts::balance.eq(accounts::balance - amount.value()))
                .execute(conn)?;
        }
        let balance: Decimal = accounts::table
            .find(card_account)
            .select(accounts::balance)
            .first(conn)?;
        Ok(money(balance))
    })
}

pub fn balance_of(conn: &mut PgConnection, account: i64) -> Result<Money, DbError> {
    let b: Decimal = accounts::table
        .find(account)
        .select(accounts::balance)
        .first(conn)?;
    Ok(money(b))
}

pub fn set_fee(
    conn: &mut PgConnection,
    identity: Identity,
    rate: FeeRate,
    merchant: Option<&MerchantId>,
) -> Result<i64, DbError> {
    if let Some(m) = merchant {
        let exists: bool = diesel::select(diesel::dsl::exists(
            merchants::table.filter(merchants::id.eq(m.as_str())),
        ))
        .get_result(conn)?;
        if !exists {
            return Err(DbError::NotFound(format!("merchant {m}")));
        }
    }
    Ok(diesel::insert_into(fee_rules::table)
        .values((
            fee_rules::identity.eq(identity.as_str()),
            fee_rules::merchant_id.eq(merchant.map(|m| m.as_str())),
            fee_rules::rate.eq(rate.value()),
        ))
        .returning(fee_rules::id)
        .get_result(conn)?)
}

#[derive(Debug, Clone, Serialize)]
pub struct TxSummary {
    pub transaction_id: Uuid,
    pub mode: String,
    pub state: String,
    pub reason: Option<String>,
    pub merchant_id: String,
    pub terminal_id: String,
    pub amount: Option<Money>,
    pub fee: Option<Money>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    pub user_id: String,
    pub name: String,
    pub identity: String,
    pub card_id: i64,
    pub status: String,
    pub balance: Money,
    pub recent: Vec<TxSummary>,
}

pub fn card_show(conn: &mut PgConnection, user: &UserId) -> Result<CardView, DbError> {
    let (name, identity, card_id, status, balance): (String, String, i64, String, Decimal) =
        cards::table
            .inner_join(cardholders::table)
            .inner_join(accounts::table)
            .filter(cards::user_id.eq(user.as_str()))
            .select((
                cardholders::name,
                cardholders::identity,
                cards::id,
                cards::status,
                accounts::balance,
            ))
            .first(conn)
            .optional()?
            .ok_or_else(|| DbError::NotFound(format!("card of {user}")))?;
    let recent = transactions::table
        .filter(transactions::card_id.eq(card_id))
        .order(transactions::created_at.desc())
        .limit(10)
        .select((
            transactions::id,
            transactions::mode,
            transactions::state,
            transactions::reason,
            transactions::merchant_id,
            transactions::terminal_id,
            transactions::amount,
            transactions::fee,
            transactions::created_at,
        ))
        .load::<(
            Uuid,
            String,
            String,
            Option<String>,
            String,
            String,
            Option<Decimal>,
            Option<Decimal>,
            DateTime<Utc>,
        )>(conn)?
        .into_iter()
        .map(
            |(id, mode, state, reason, m, t, amount, fee, created_at)| TxSummary {
                transaction_id: id,
                mode,
                state,
                reason,
                merchant_id: m,
                terminal_id: t,
                amount: amount.map(money),
                fee: fee.map(money),
                created_at,
            },
        )
        .collect();
    Ok(CardView {
        user_id: user.to_string(),
        name,
        identity,
        card_id,
        status,
        balance: money(balance),
        recent,
    })
}

pub fn is_cardholder(conn: &mut PgConnection, user: &UserId) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        cards::table.filter(cards::user_id.eq(user.as_str())),
    ))
    .get_result(conn)?)
}

pub fn entry_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(journal_entries::table.find(id))).get_result(conn)?)
}
