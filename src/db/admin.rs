//! Back-office repository: merchants, terminals, cards, top-ups, fee rules. Business refusals
//! (an unknown merchant, a name taken) come back as `Ok(Err(Refusal))` with nothing changed;
//! `Err(DbError)` is for the database failing.

use super::journal::{self, CardLocks};
use super::schema::*;
use super::{is_unique_violation, money, DbError};
use crate::domain::{
    AccountId, AccountKind, Amount, CardId, CardStatus, DeclineReason, EntryKind, FeeRate,
    FeeRuleId, Identity, JournalEntry, MerchantId, Money, PaymentMode, Refusal, SessionRole,
    TerminalId, TxState, UserId,
};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// Longest merchant or cardholder name (the columns' CHECK says the same).
pub const MAX_NAME_CHARS: usize = 100;

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS
}

/// Runs `f` in a transaction; a unique violation anywhere in it becomes `exists`.
fn unless_exists<T>(
    conn: &mut PgConnection,
    exists: Refusal,
    f: impl FnOnce(&mut PgConnection) -> Result<T, DbError>,
) -> Result<Result<T, Refusal>, DbError> {
    match conn.transaction(f) {
        Ok(v) => Ok(Ok(v)),
        Err(e) if is_unique_violation(&e) => Ok(Err(exists)),
        Err(e) => Err(e),
    }
}

pub fn merchant_exists(conn: &mut PgConnection, m: &MerchantId) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(merchants::table.find(m.as_str()))).get_result(conn)?)
}

pub fn add_merchant(
    conn: &mut PgConnection,
    id: &MerchantId,
    name: &str,
) -> Result<Result<(), Refusal>, DbError> {
    let name = name.trim();
    if !valid_name(name) {
        return Ok(Err(Refusal::InvalidName("merchant")));
    }
    unless_exists(conn, Refusal::MerchantExists(id.clone()), |conn| {
        let account: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq(AccountKind::Merchant),
                accounts::owner.eq(id.as_str()),
            ))
            .returning(accounts::id)
            .get_result(conn)?;
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

/// Registers a terminal (or brings back one that was removed, with a new token version, so the
/// tokens it had before stay dead). `broker_user`: its own broker user (`None` for a till that
/// only ever acts through the pipeline's user, e.g. the demo's). Returns its token version.
pub fn add_terminal(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
    broker_user: Option<&str>,
) -> Result<Result<i32, Refusal>, DbError> {
    if !merchant_exists(conn, m)? {
        return Ok(Err(Refusal::UnknownMerchant(m.clone())));
    }
    let revived: Option<i32> = diesel::update(
        terminals::table
            .find((m.as_str(), t.as_str()))
            .filter(terminals::removed_at.is_not_null()),
    )
    .set((
        terminals::removed_at.eq(None::<DateTime<Utc>>),
        terminals::token_version.eq(terminals::token_version + 1),
        terminals::broker_user.eq(broker_user),
    ))
    .returning(terminals::token_version)
    .get_result(conn)
    .optional()?;
    if let Some(v) = revived {
        return Ok(Ok(v));
    }
    unless_exists(
        conn,
        Refusal::TerminalExists(m.clone(), t.clone()),
        |conn| {
            Ok(diesel::insert_into(terminals::table)
                .values((
                    terminals::merchant_id.eq(m.as_str()),
                    terminals::id.eq(t.as_str()),
                    terminals::broker_user.eq(broker_user),
                ))
                .returning(terminals::token_version)
                .get_result(conn)?)
        },
    )
}

/// A terminal's credentials as the database knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalCredentials {
    pub token_version: i32,
    pub broker_user: Option<String>,
}

/// Bumps a live terminal's token version (every token it holds stops working) and records its
/// broker user; the new version.
pub fn rotate_terminal(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
    broker_user: &str,
) -> Result<Result<i32, Refusal>, DbError> {
    let v: Option<i32> = diesel::update(
        terminals::table
            .find((m.as_str(), t.as_str()))
            .filter(terminals::removed_at.is_null()),
    )
    .set((
        terminals::token_version.eq(terminals::token_version + 1),
        terminals::broker_user.eq(broker_user),
    ))
    .returning(terminals::token_version)
    .get_result(conn)
    .optional()?;
    Ok(v.ok_or_else(|| Refusal::UnknownTerminal(m.clone(), t.clone())))
}

/// Marks a terminal removed and revokes its tokens; its credentials as they were.
pub fn remove_terminal(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<Result<TerminalCredentials, Refusal>, DbError> {
    let row: Option<(i32, Option<String>)> = diesel::update(
        terminals::table
            .find((m.as_str(), t.as_str()))
            .filter(terminals::removed_at.is_null()),
    )
    .set((
        terminals::removed_at.eq(diesel::dsl::now),
        terminals::token_version.eq(terminals::token_version + 1),
    ))
    .returning((terminals::token_version, terminals::broker_user))
    .get_result(conn)
    .optional()?;
    Ok(row
        .map(|(token_version, broker_user)| TerminalCredentials {
            token_version,
            broker_user,
        })
        .ok_or_else(|| Refusal::UnknownTerminal(m.clone(), t.clone())))
}

/// The token version of a live terminal (`None`: unknown or removed).
pub fn terminal_token_version(
    conn: &mut PgConnection,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<Option<i32>, DbError> {
    Ok(terminals::table
        .find((m.as_str(), t.as_str()))
        .filter(terminals::removed_at.is_null())
        .select(terminals::token_version)
        .first(conn)
        .optional()?)
}

/// The current token version of a cardholder.
pub fn cardholder_token_version(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Option<i32>, DbError> {
    Ok(cardholders::table
        .find(user.as_str())
        .select(cardholders::token_version)
        .first(conn)
        .optional()?)
}

/// Revokes every token the cardholder holds (a lost phone), and with them their browser
/// sessions and unused sign-in links (both carry the version); the new version.
pub fn revoke_cardholder_tokens(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<i32, Refusal>, DbError> {
    conn.transaction(|conn| {
        let v: Option<i32> = diesel::update(cardholders::table.find(user.as_str()))
            .set(cardholders::token_version.eq(cardholders::token_version + 1))
            .returning(cardholders::token_version)
            .get_result(conn)
            .optional()?;
        let Some(v) = v else {
            return Ok(Err(Refusal::NoCard(user.clone())));
        };
        super::sessions::end_sessions_of(conn, SessionRole::Cardholder, user.as_str())?;
        Ok(Ok(v))
    })
}

pub fn add_card(
    conn: &mut PgConnection,
    user: &UserId,
    name: &str,
    identity: Identity,
) -> Result<Result<CardId, Refusal>, DbError> {
    let name = name.trim();
    if !valid_name(name) {
        return Ok(Err(Refusal::InvalidName("cardholder")));
    }
    unless_exists(conn, Refusal::CardholderExists(user.clone()), |conn| {
        diesel::insert_into(cardholders::table)
            .values((
                cardholders::user_id.eq(user.as_str()),
                cardholders::name.eq(name),
                cardholders::identity.eq(identity),
            ))
            .execute(conn)?;
        let account: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq(AccountKind::Card),
                accounts::owner.eq(user.as_str()),
            ))
            .returning(accounts::id)
            .get_result(conn)?;
        let card: i64 = diesel::insert_into(cards::table)
            .values((
                cards::user_id.eq(user.as_str()),
                cards::account_id.eq(account),
            ))
            .returning(cards::id)
            .get_result(conn)?;
        Ok(CardId(card))
    })
}

/// The card account of `user`, if the user has a card.
pub fn card_account(conn: &mut PgConnection, user: &UserId) -> Result<Option<AccountId>, DbError> {
    journal::account_of(conn, AccountKind::Card, user.as_str())
}

/// Credits a card from the top-up clearing account. Idempotent on `entry_id`: the same id never
/// credits twice. Returns the balance after.
pub fn topup(
    conn: &mut PgConnection,
    user: &UserId,
    amount: Amount,
    entry_id: Uuid,
    memo: &str,
) -> Result<Result<Money, Refusal>, DbError> {
    conn.transaction(|conn| {
        let Some(card) = card_account(conn, user)? else {
            return Ok(Err(Refusal::NoCard(user.clone())));
        };
        let clearing = journal::clearing(conn)?;
        let entry = JournalEntry::credit(entry_id, EntryKind::Topup, memo, card, clearing, amount)
            .map_err(|e| DbError::Invariant(format!("top-up entry: {e}")))?;
        let mut locks = journal::lock_cards(conn, &[card])?;
        journal::post(conn, &mut locks, &[entry])?;
        Ok(Ok(locked_balance(&locks, card)?))
    })
}

/// The balance of a card account locked in this transaction.
pub fn locked_balance(locks: &CardLocks, account: AccountId) -> Result<Money, DbError> {
    locks
        .balance(account)
        .ok_or_else(|| DbError::Invariant(format!("card account {account} is not locked")))
}

pub fn balance_of(conn: &mut PgConnection, account: AccountId) -> Result<Money, DbError> {
    let b: Decimal = accounts::table
        .find(account.0)
        .select(accounts::balance)
        .first(conn)?;
    Ok(money(b))
}

pub fn set_fee(
    conn: &mut PgConnection,
    identity: Identity,
    rate: FeeRate,
    merchant: Option<&MerchantId>,
) -> Result<Result<FeeRuleId, Refusal>, DbError> {
    if let Some(m) = merchant {
        if !merchant_exists(conn, m)? {
            return Ok(Err(Refusal::UnknownMerchant(m.clone())));
        }
    }
    let id: i64 = diesel::insert_into(fee_rules::table)
        .values((
            fee_rules::identity.eq(identity),
            fee_rules::merchant_id.eq(merchant.map(|m| m.as_str())),
            fee_rules::rate.eq(rate.value()),
        ))
        .returning(fee_rules::id)
        .get_result(conn)?;
    Ok(Ok(FeeRuleId(id)))
}

#[derive(Debug, Clone, Serialize)]
pub struct TxSummary {
    pub transaction_id: Uuid,
    pub mode: PaymentMode,
    pub state: TxState,
    pub reason: Option<DeclineReason>,
    pub merchant_id: String,
    /// The merchant's name (null only if the merchant is not registered).
    pub merchant_name: Option<String>,
    pub terminal_id: String,
    pub amount: Option<Money>,
    pub fee: Option<Money>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    pub user_id: String,
    pub name: String,
    pub identity: Identity,
    pub card_id: i64,
    pub status: CardStatus,
    pub balance: Money,
    pub recent: Vec<TxSummary>,
    /// The card's newest refunds (full or partial, by the back office), newest first.
    pub refunds: Vec<super::refunds::RefundSummary>,
    /// The newest batch of payment codes (null: never any), so a phone can tell whether the
    /// codes it holds are still the current ones and how many of them are left.
    pub payment_codes: Option<super::codes::BatchSummary>,
}

/// Newest transactions (and refunds) a card view lists.
const RECENT: i64 = 10;

type SummaryRow = (
    Uuid,
    PaymentMode,
    TxState,
    Option<DeclineReason>,
    String,
    Option<String>,
    String,
    Option<Decimal>,
    Option<Decimal>,
    DateTime<Utc>,
);

pub fn card_show(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Result<CardView, Refusal>, DbError> {
    let row: Option<(String, Identity, i64, CardStatus, Decimal)> = cards::table
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
        .optional()?;
    let Some((name, identity, card_id, status, balance)) = row else {
        return Ok(Err(Refusal::NoCard(user.clone())));
    };
    let recent = transactions::table
        .left_join(merchants::table.on(merchants::id.eq(transactions::merchant_id)))
        .filter(transactions::card_id.eq(card_id))
        .order(transactions::created_at.desc())
        .limit(RECENT)
        .select((
            transactions::id,
            transactions::mode,
            transactions::state,
            transactions::reason,
            transactions::merchant_id,
            merchants::name.nullable(),
            transactions::terminal_id,
            transactions::amount,
            transactions::fee,
            transactions::created_at,
        ))
        .load::<SummaryRow>(conn)?
        .into_iter()
        .map(
            |(id, mode, state, reason, m, name, t, amount, fee, created_at)| TxSummary {
                transaction_id: id,
                mode,
                state,
                reason,
                merchant_id: m,
                merchant_name: name,
                terminal_id: t,
                amount: amount.map(money),
                fee: fee.map(money),
                created_at,
            },
        )
        .collect();
    Ok(Ok(CardView {
        user_id: user.to_string(),
        name,
        identity,
        card_id,
        status,
        balance: money(balance),
        recent,
        refunds: super::refunds::recent_of_card(conn, card_id, RECENT)?,
        payment_codes: super::codes::newest_batch(conn, CardId(card_id))?,
    }))
}

pub fn is_cardholder(conn: &mut PgConnection, user: &UserId) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        cards::table.filter(cards::user_id.eq(user.as_str())),
    ))
    .get_result(conn)?)
}
