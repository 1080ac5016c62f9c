//! The demo campus: four merchants with eight terminals, 200 cardholders across the four
//! identities, fee rules, and a morning top-up. Re-running it tops cards back up and changes
//! nothing else.

use super::SimError;
use crate::db::{self, admin, Pool};
use crate::domain::{Amount, FeeRate, Identity, MerchantId, Money, Refusal, TerminalId, UserId};

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

/// Seeding again finds what it made before: "exists" is fine, every other refusal is not.
fn ok_if_exists<T>(r: Result<T, Refusal>) -> Result<(), SimError> {
    match r {
        Ok(_)
        | Err(Refusal::MerchantExists(_))
        | Err(Refusal::TerminalExists(..))
        | Err(Refusal::CardholderExists(_)) => Ok(()),
        Err(other) => Err(SimError::Other(other.to_string())),
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
    let mut merchants = Vec::new();
    for (m, name, ts) in MERCHANTS {
        let tids = ts
            .iter()
            .map(|t| parse(TerminalId::parse(t)))
            .collect::<Result<Vec<_>, _>>()?;
        merchants.push((parse(MerchantId::parse(m))?, name, tids));
    }
    let rate = |s: &str| parse(FeeRate::parse(s));
    let rates = [
        (Identity::Student, rate("0")?),
        (Identity::Staff, rate("0")?),
        (Identity::Temporary, rate("0.10")?),
        (Identity::External, rate("0.15")?),
    ];
    // The market is a shop, not a canteen: no meal surcharge for temporary people.
    let market = (parse(MerchantId::parse("market"))?, rate("0")?);
    let start = parse(Money::try_from(START_BALANCE.to_owned()))?;
    let broke = parse(Money::try_from(BROKE_BALANCE.to_owned()))?;
    let refusals = db::run(pool, move |conn| {
        let mut refusals = Vec::new();
        for (mid, name, tids) in &merchants {
            refusals.push(admin::add_merchant(conn, mid, name)?.map(|_| ()));
            for tid in tids {
                refusals.push(admin::add_terminal(conn, mid, tid, None)?.map(|_| ()));
            }
        }
        let rules: i64 = {
            use crate::db::schema::fee_rules::dsl::*;
            use diesel::prelude::*;
            fee_rules.count().get_result(conn)?
        };
        if rules == 0 {
            for (identity, r) in rates {
                refusals.push(admin::set_fee(conn, identity, r, None)?.map(|_| ()));
            }
            refusals.push(
                admin::set_fee(conn, Identity::Temporary, market.1, Some(&market.0))?.map(|_| ()),
            );
        }
        for ch in &c {
            let name = format!("Cardholder {}", ch.user);
            refusals.push(admin::add_card(conn, &ch.user, &name, ch.identity)?.map(|_| ()));
            let target = if ch.broke { broke } else { start };
            let Some(account) = admin::card_account(conn, &ch.user)? else {
                continue;
            };
            let balance = admin::balance_of(conn, account)?;
            if let Ok(amount) = Amount::try_from_decimal((target - balance).value()) {
                refusals.push(
                    admin::topup(
                        conn,
                        &ch.user,
                        amount,
                        uuid::Uuid::new_v4(),
                        "morning top-up",
                    )?
                    .map(|_| ()),
                );
            }
        }
        Ok(refusals)
    })
    .await?;
    for r in refusals {
        ok_if_exists(r)?;
    }
    Ok(Campus {
        terminals,
        cardholders,
    })
}
