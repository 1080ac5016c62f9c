//! The daily report per merchant (count, gross, fees, refunds, net for one campus day), tied
//! out against the ledger: the business figures come from transactions and refunds, the ledger
//! figures from postings, and any difference is reported, not hidden.

use super::DbError;
use crate::domain::{AccountKind, EntryKind};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MerchantDay {
    pub merchant_id: String,
    pub name: String,
    pub count: i64,
    pub gross: String,
    pub fees: String,
    pub refunds: String,
    pub net: String,
    /// What the merchant's ledger account moved that day (must equal `net`).
    pub ledger_net: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyReport {
    pub date: String,
    pub from_utc: DateTime<Utc>,
    pub to_utc: DateTime<Utc>,
    pub merchants: Vec<MerchantDay>,
    pub total: MerchantDay,
    /// Fees kept by the school that day per the business figures, and per the ledger.
    pub fee_income: String,
    pub ledger_fee_income: String,
    pub ties_out: bool,
    pub mismatches: Vec<String>,
}

#[derive(QueryableByName)]
struct Figure {
    #[diesel(sql_type = Text)]
    merchant_id: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Numeric)]
    a: Decimal,
    #[diesel(sql_type = Numeric)]
    b: Decimal,
}

fn figures(
    conn: &mut PgConnection,
    sql: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<String, (i64, Decimal, Decimal)>, DbError> {
    Ok(diesel::sql_query(sql)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .load::<Figure>(conn)?
        .into_iter()
        .map(|f| (f.merchant_id, (f.n, f.a, f.b)))
        .collect())
}

pub fn daily(
    conn: &mut PgConnection,
    date: chrono::NaiveDate,
    offset: chrono::FixedOffset,
) -> Result<DailyReport, DbError> {
    let from = DateTime::<Utc>::from_naive_utc_and_offset(
        date.and_time(chrono::NaiveTime::MIN) - offset,
        Utc,
    );
    let to = from + chrono::Duration::days(1);
    // Names in the SQL below come from the domain enums (constants, never input).
    let (payment, reversal) = (EntryKind::Payment, EntryKind::Reversal);
    let (merchant, fee_income) = (AccountKind::Merchant, AccountKind::FeeIncome);
    conn.build_transaction().repeatable_read().read_only().run(|conn| {
        // Payments approved that day (their payment entry was written that day).
        let sales = figures(
            conn,
            &format!("SELECT t.merchant_id, COUNT(*) AS n, COALESCE(SUM(t.amount), 0) AS a, COALESCE(SUM(t.fee), 0) AS b \
             FROM journal_entries e JOIN transactions t ON t.id = e.transaction_id \
             WHERE e.kind = '{payment}' AND e.created_at >= $1 AND e.created_at < $2 GROUP BY t.merchant_id"),
            from,
            to,
        )?;
        // Refunds made that day, and POS reversals made that day (what was not refunded before).
        let refunds = figures(
            conn,
            "SELECT t.merchant_id, COUNT(*) AS n, COALESCE(SUM(r.amount), 0) AS a, COALESCE(SUM(r.fee), 0) AS b \
             FROM refunds r JOIN transactions t ON t.id = r.transaction_id \
             WHERE r.created_at >= $1 AND r.created_at < $2 GROUP BY t.merchant_id",
            from,
            to,
        )?;
        let reversals = figures(
            conn,
            &format!("SELECT t.merchant_id, COUNT(*) AS n, \
                    COALESCE(SUM(t.amount - COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.transaction_id = t.id), 0)), 0) AS a, \
                    COALESCE(SUM(COALESCE(t.fee, 0) - COALESCE((SELECT SUM(r.fee) FROM refunds r WHERE r.transaction_id = t.id), 0)), 0) AS b \
             FROM journal_entries e JOIN transactions t ON t.id = e.transaction_id \
             WHERE e.kind = '{reversal}' AND e.created_at >= $1 AND e.created_at < $2 GROUP BY t.merchant_id"),
            from,
            to,
        )?;
        // The ledger's own view: postings to merchant accounts and the fee account that day.
        let ledger = figures(
            conn,
            &format!("SELECT a.owner AS merchant_id, COUNT(*) AS n, COALESCE(SUM(p.amount), 0) AS a, 0::numeric AS b \
             FROM postings p JOIN accounts a ON a.id = p.account_id \
             WHERE a.kind = '{merchant}' AND p.created_at >= $1 AND p.created_at < $2 GROUP BY a.owner"),
            from,
            to,
        )?;
        let ledger_fees = figures(
            conn,
            &format!("SELECT 'school' AS merchant_id, COUNT(*) AS n, COALESCE(SUM(p.amount), 0) AS a, 0::numeric AS b \
             FROM postings p JOIN accounts a ON a.id = p.account_id \
             WHERE a.kind = '{fee_income}' AND p.created_at >= $1 AND p.created_at < $2"),
            from,
            to,
        )?;
        let names: BTreeMap<String, String> = super::schema::merchants::table
            .select((super::schema::merchants::id, super::schema::merchants::name))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect();
        let mut ids: Vec<&String> = sales.keys().chain(refunds.keys()).chain(reversals.keys()).chain(ledger.keys()).collect();
        ids.sort();
        ids.dedup();
        let zero = (0, Decimal::ZERO, Decimal::ZERO);
        let mut merchants = Vec::new();
        let mut mismatches = Vec::new();
        let (mut t_count, mut t_gross, mut t_fees, mut t_refunds, mut t_ledger) = (0, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut fee_income = Decimal::ZERO;
        for id in ids {
            let s = sales.get(id).unwrap_or(&zero);
            let r = refunds.get(id).unwrap_or(&zero);
            let v = reversals.get(id).unwrap_or(&zero);
            let l = ledger.get(id).unwrap_or(&zero);
            let refunded = r.1 + v.1;
            let net = s.1 - refunded;
            if net != l.1 {
                mismatches.push(format!("{id}: net {net:.2} but its ledger account moved {:.2}", l.1));
            }
            fee_income += s.2 - r.2 - v.2;
            t_count += s.0;
            t_gross += s.1;
            t_fees += s.2;
            t_refunds += refunded;
            t_ledger += l.1;
            merchants.push(MerchantDay {
                merchant_id: id.clone(),
                name: names.get(id).cloned().unwrap_or_default(),
                count: s.0,
                gross: format!("{:.2}", s.1),
                fees: format!("{:.2}", s.2),
                refunds: format!("{refunded:.2}"),
                net: format!("{net:.2}"),
                ledger_net: format!("{:.2}", l.1),
            });
        }
        let ledger_fee = ledger_fees.get("school").map(|f| f.1).unwrap_or_default();
        if ledger_fee != fee_income {
            mismatches.push(format!("fee income {fee_income:.2} but the fee account moved {ledger_fee:.2}"));
        }
        Ok(DailyReport {
            date: date.to_string(),
            from_utc: from,
            to_utc: to,
            merchants,
            total: MerchantDay {
                merchant_id: "TOTAL".into(),
                name: String::new(),
                count: t_count,
                gross: format!("{t_gross:.2}"),
                fees: format!("{t_fees:.2}"),
                refunds: format!("{t_refunds:.2}"),
                net: format!("{:.2}", t_gross - t_refunds),
                ledger_net: format!("{t_ledger:.2}"),
            },
            fee_income: format!("{fee_income:.2}"),
            ledger_fee_income: format!("{ledger_fee:.2}"),
            ties_out: mismatches.is_empty(),
            mismatches,
        })
    })
}

impl DailyReport {
    /// The report as CSV for a spreadsheet. Names are merchants' own words: see `csv_text`.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("date,merchant_id,name,count,gross,fees,refunds,net,ledger_net\n");
        for m in self.merchants.iter().chain(std::iter::once(&self.total)) {
            let name = csv_text(&m.name);
            out.push_str(&format!(
                "{},{},\"{name}\",{},{},{},{},{},{}\n",
                self.date, m.merchant_id, m.count, m.gross, m.fees, m.refunds, m.net, m.ledger_net
            ));
        }
        out
    }
}

/// A text cell's content for a CSV that a spreadsheet will open: quotes doubled, and a leading
/// `=`, `+`, `-`, `@`, tab or carriage return defused with an apostrophe, so that a merchant
/// named `=HYPERLINK(…)` shows as text instead of running as a formula (CSV injection).
pub fn csv_text(s: &str) -> String {
    let s = s.replace('"', "\"\"");
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_in_names_are_defused() {
        assert_eq!(csv_text("Noodle Bar"), "Noodle Bar");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"\"x\"\")");
        for f in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(csv_text(f).starts_with('\''), "{f:?}");
        }
    }
}
