//! Read-only listings for the back office (the console's tables and its dashboard): merchants
//! with their tills, cards found by a search, the fee rules, and today's payment figures. Each
//! list is bounded; none of them changes anything.

use super::schema::{accounts, cardholders, cards, fee_rules, merchants, terminals};
use super::{money, DbError};
use crate::domain::{CardStatus, Identity, Money};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Most merchants, cards and fee rules one listing returns.
pub const MAX_LISTED: i64 = 500;

#[derive(Debug, Clone, Serialize)]
pub struct TerminalRow {
    pub terminal_id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MerchantRow {
    pub merchant_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Its live tills (removed ones are left out), by id.
    pub terminals: Vec<TerminalRow>,
}

/// The merchants by id, each with its live terminals.
pub fn merchants(conn: &mut PgConnection) -> Result<Vec<MerchantRow>, DbError> {
    let rows: Vec<(String, String, DateTime<Utc>)> = merchants::table
        .order(merchants::id)
        .limit(MAX_LISTED)
        .select((merchants::id, merchants::name, merchants::created_at))
        .load(conn)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let mut tills: BTreeMap<String, Vec<TerminalRow>> = BTreeMap::new();
    let found: Vec<(String, String, DateTime<Utc>)> = terminals::table
        .filter(terminals::merchant_id.eq_any(&ids))
        .filter(terminals::removed_at.is_null())
        .order((terminals::merchant_id, terminals::id))
        .select((terminals::merchant_id, terminals::id, terminals::created_at))
        .load(conn)?;
    for (m, t, at) in found {
        tills.entry(m).or_default().push(TerminalRow {
            terminal_id: t,
            created_at: at,
        });
    }
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at)| MerchantRow {
            terminals: tills.remove(&id).unwrap_or_default(),
            merchant_id: id,
            name,
            created_at,
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct CardRow {
    pub user_id: String,
    pub name: String,
    pub identity: Identity,
    pub status: CardStatus,
    pub balance: Money,
}

/// `%`, `_` and `\` taken literally in a LIKE pattern.
fn like_literal(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// Cards whose user id starts with `query` or whose holder's name contains it (case
/// insensitive), by user id; at most `limit` (1 to MAX_LISTED).
pub fn search_cards(
    conn: &mut PgConnection,
    query: &str,
    limit: i64,
) -> Result<Vec<CardRow>, DbError> {
    let q = like_literal(query.trim());
    let rows: Vec<(String, String, Identity, CardStatus, Decimal)> = cards::table
        .inner_join(cardholders::table)
        .inner_join(accounts::table)
        .filter(
            cards::user_id
                .ilike(format!("{q}%"))
                .or(cardholders::name.ilike(format!("%{q}%"))),
        )
        .order(cards::user_id)
        .limit(limit.clamp(1, MAX_LISTED))
        .select((
            cards::user_id,
            cardholders::name,
            cardholders::identity,
            cards::status,
            accounts::balance,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(user_id, name, identity, status, balance)| CardRow {
            user_id,
            name,
            identity,
            status,
            balance: money(balance),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct FeeRuleRow {
    pub rule_id: i64,
    pub identity: Identity,
    pub merchant_id: Option<String>,
    pub rate: String,
    pub effective_from: DateTime<Utc>,
    /// Whether this rule decides the fee now for its identity (and merchant): the newest one
    /// in effect for the pair.
    pub current: bool,
}

type RuleRow = (i64, Identity, Option<String>, Decimal, DateTime<Utc>);

/// The fee rules, newest first.
pub fn fee_rules(conn: &mut PgConnection) -> Result<Vec<FeeRuleRow>, DbError> {
    let rows: Vec<RuleRow> = fee_rules::table
        .order((fee_rules::effective_from.desc(), fee_rules::id.desc()))
        .limit(MAX_LISTED)
        .select((
            fee_rules::id,
            fee_rules::identity,
            fee_rules::merchant_id,
            fee_rules::rate,
            fee_rules::effective_from,
        ))
        .load(conn)?;
    let now = Utc::now();
    let mut decided = std::collections::BTreeSet::new();
    Ok(rows
        .into_iter()
        .map(|(id, identity, merchant_id, rate, effective_from)| {
            let current = effective_from <= now
                && decided.insert((identity.to_string(), merchant_id.clone()));
            FeeRuleRow {
                rule_id: id,
                identity,
                merchant_id,
                rate: rate.normalize().to_string(),
                effective_from,
                current,
            }
        })
        .collect())
}

/// Payments of one minute.
#[derive(Debug, Clone, Serialize)]
pub struct Minute {
    pub minute: DateTime<Utc>,
    pub approved: i64,
    pub declined: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentFigures {
    pub from_utc: DateTime<Utc>,
    pub approved: i64,
    pub declined: i64,
    /// Still in flight (created, pending, awaiting the phone's confirmation).
    pub in_flight: i64,
    /// Approved ÷ (approved + declined), 0 to 1; null before the first decided payment.
    pub approval_rate: Option<f64>,
    pub declines_by_reason: BTreeMap<String, i64>,
    /// Amount and 搭伙费 of the payments approved since `from_utc` (refunds not deducted).
    pub amount_approved: Money,
    pub fees_approved: Money,
    /// The last `minutes` whole minutes up to now, oldest first, every minute present.
    pub per_minute: Vec<Minute>,
}

#[derive(QueryableByName)]
struct StateCount {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Numeric)]
    amount: Decimal,
    #[diesel(sql_type = Numeric)]
    fee: Decimal,
}

#[derive(QueryableByName)]
struct MinuteCount {
    #[diesel(sql_type = Timestamptz)]
    minute: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    approved: i64,
    #[diesel(sql_type = BigInt)]
    declined: i64,
}

/// The payments since `from` (the campus day's start), and per minute over the last
/// `minutes` (1 to 120).
pub fn payment_figures(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    minutes: i64,
) -> Result<PaymentFigures, DbError> {
    let minutes = minutes.clamp(1, 120);
    let counts: Vec<StateCount> = diesel::sql_query(
        "SELECT state, coalesce(reason, '') AS reason, count(*) AS n, \
                coalesce(sum(amount), 0) AS amount, coalesce(sum(fee), 0) AS fee \
         FROM transactions WHERE created_at >= $1 GROUP BY state, reason",
    )
    .bind::<Timestamptz, _>(from)
    .load(conn)?;
    let mut f = PaymentFigures {
        from_utc: from,
        approved: 0,
        declined: 0,
        in_flight: 0,
        approval_rate: None,
        declines_by_reason: BTreeMap::new(),
        amount_approved: Money::ZERO,
        fees_approved: Money::ZERO,
        per_minute: Vec::new(),
    };
    for c in counts {
        match c.state.as_str() {
            "approved" => {
                f.approved += c.n;
                f.amount_approved += money(c.amount);
                f.fees_approved += money(c.fee);
            }
            "declined" => {
                f.declined += c.n;
                *f.declines_by_reason.entry(c.reason).or_default() += c.n;
            }
            _ => f.in_flight += c.n,
        }
    }
    let decided = f.approved + f.declined;
    if decided > 0 {
        f.approval_rate = Some(f.approved as f64 / decided as f64);
    }
    let rows: Vec<MinuteCount> = diesel::sql_query(
        "SELECT m.minute, \
                count(t.id) FILTER (WHERE t.state = 'approved') AS approved, \
                count(t.id) FILTER (WHERE t.state = 'declined') AS declined \
         FROM generate_series(date_trunc('minute', now()) - ($1 - 1) * interval '1 minute', \
                              date_trunc('minute', now()), interval '1 minute') AS m(minute) \
         LEFT JOIN transactions t \
           ON t.created_at >= m.minute AND t.created_at < m.minute + interval '1 minute' \
         GROUP BY m.minute ORDER BY m.minute",
    )
    .bind::<BigInt, _>(minutes)
    .load(conn)?;
    f.per_minute = rows
        .into_iter()
        .map(|r| Minute {
            minute: r.minute,
            approved: r.approved,
            declined: r.declined,
        })
        .collect();
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_patterns_take_the_query_literally() {
        assert_eq!(like_literal("s_0%1\\"), "s\\_0\\%1\\\\");
        assert_eq!(like_literal("李华"), "李华");
    }
}
