//! The demo campus: four merchants with eight terminals, 200 cardholders across the four
//! identities, fee rules, and a morning top-up. Re-running it tops cards back up and changes
//! nothing else.

use super::SimError;
use crate::db::{self, admin, DbError, Pool};
use crate::domain::{Amount, FeeRate, Identity, MerchantId, TerminalId, UserId};
use rust_decimal::Decimal;

pub const MERCHANTS: [(&str, &str, &[&str]); 4] = [
    ("canteen-1", "First Canteen 第一食堂", &["t1", "t2", "t3"]),
    ("canteen-2", "Second Canteen 第二食堂", &["t1", "t2"]),
    ("market", "Campus Market 校园超市", &["t1", "t2"]),
    ("cafe", "Library Cafe 图书馆咖啡", &["t1"]),
];

/// (prefix, identity, how many)
const CARDHOLDERS: [(&str, Identity, usize); 4] = [
    ("s", Identity::Student, 120),
    ("f", Identity::Staff, 40),
    ("v", Identity::Temporary, 20),
    ("x", Identity::External, 20),
];

/// Students s111..s120 start the day nearly broke, so the lunch hour has real declines.
pub const BROKE_FROM: usize = 111;
pub const START_BALANCE: &str = "300.00";
pub const BROKE_BALANCE: &str = "3.00";

#[derive(Debug, Clone)]
pub struct Cardholder {
    pub user: UserId,
    pub identity: Identity,
    pub broke: bool,
}

#[derive(Debug, Clone)]
pub struct Campus {
    pub terminals: Vec<(MerchantId, TerminalId)>,
    pub cardholders: Vec<Cardholder>,
}

fn ok_if_exists(r: Result<(), DbError>) -> Result<(), DbError> {
    match r {
        Err(DbError::Conflict(_)) => Ok(()),
        other => other,
    }
}

fn parse<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, SimError> {
    r.map_err(|e| SimError::Other(e.to_string()))
}

pub async fn seed(pool: &Pool) -> Result<Campus, SimError> {
    let mut terminals = Vec::new();
    for (m, _, ts) in MERCHANTS {
        for t in ts {
            terminals.push((parse(MerchantId::parse(m))?, parse(TerminalId::parse(t))?));
        }
    }
    let mut cardholders = Vec::new();
    for (prefix, identity, n) in CARDHOLDERS {
        for i in 1..=n {
            cardholders.push(Cardholder {
                user: parse(UserId::parse(&format!("{prefix}{i:03}")))?,
                identity,
                broke: identity == Identity::Student && i >= BROKE_FROM,
            });
        }
    }
    let c = cardholders.clone();
    db::run(pool, move |conn| {
        for (m, name, ts) in MERCHANTS {
            let mid = MerchantId::parse(m).map_err(|e| DbError::Rejected(e.to_string()))?;
            ok_if_exists(admin::add_merchant(conn, &mid, name))?;
            for t in ts {
                let tid = TerminalId::parse(t).map_err(|e| DbError::Rejected(e.to_string()))?;
                ok_if_exists(admin::add_terminal(conn, &mid, &tid))?;
            }
        }
        let rules: i64 = {
            use crate::db::schema::fee_rules::dsl::*;
            use diesel::prelude::*;
            fee_rules.count().get_result(conn)?
        };
        if rules == 0 {
            let rate = |s: &str| FeeRate::parse(s).map_err(|e| DbError::Rejected(e.to_string()));
            admin::set_fee(conn, Identity::Student, rate("0")?, None)?;
            admin::set_fee(conn, Identity::Staff, rate("0")?, None)?;
            admin::set_fee(conn, Identity::Temporary, rate("0.10")?, None)?;
            admin::set_fee(conn, Identity::External, rate("0.15")?, None)?;
            // The market is a shop, not a canteen: no meal surcharge for temporary people.
            let market =
                MerchantId::parse("market").map_err(|e| DbError::Rejected(e.to_string()))?;
            admin::set_fee(conn, Identity::Temporary, rate("0")?, Some(&market))?;
        }
        for ch in &c {
            let exists = match admin::add_card(
                conn,
                &ch.user,
                &format!("Cardholder {}", ch.user),
                ch.identity,
            ) {
                Ok(_) | Err(DbError::Conflict(_)) => true,
                Err(e) => return Err(e),
            };
            debug_assert!(exists);
            let target: Decimal = (if ch.broke {
                BROKE_BALANCE
            } else {
                START_BALANCE
            })
            .parse()
            .map_err(|_| DbError::Rejected("target balance".into()))?;
            let account = admin::account_of(conn, "card", ch.user.as_str())?;
            let balance = admin::balance_of(conn, account)?.value();
            if balance < target {
                let amount = Amount::try_from_decimal(target - balance)
                    .map_err(|e| DbError::Rejected(e.to_string()))?;
                admin::topup(
                    conn,
                    &ch.user,
                    amount,
                    uuid::Uuid::new_v4(),
                    "morning top-up",
                )?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(Campus {
        terminals,
        cardholders,
    })
}
