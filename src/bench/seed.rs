//! A benchmark campus in a few set-based statements: merchants, terminals, cardholders with
//! cards, fee rules, and payment codes loaded with `COPY`; each card's starting balance is one
//! top-up entry posted through the ledger writer (`db::journal`), like every other credit.
//!
//! Issuing codes through the TSM costs a transaction per card (10,000 cards × a batch of 10
//! codes takes minutes); here the codes are generated exactly as the TSM generates them (CSPRNG,
//! Luhn, HMAC-SHA256 under the code key) and only their hashes are copied in, so the pipeline
//! sees rows it cannot tell from TSM-issued ones.

use campuspay::db::schema::payment_codes;
use campuspay::db::{journal, DbError};
use campuspay::domain::{AccountId, AccountKind, Amount, EntryKind, JournalEntry, PaymentCode};
use campuspay::tsm::code_hash;
use diesel::connection::SimpleConnection;
use diesel::pg::{CopyFormat, PgConnection};
use diesel::prelude::*;
use rand::seq::SliceRandom;
use std::collections::HashSet;
use std::io::Write;

/// Largest amount a benchmark payment charges, in fen: below every identity's password-free
/// amount (50 yuan), so no payment is declined `pin_required`.
pub const MAX_AMOUNT_FEN: u32 = 3_000;
/// Balance of the "broke" cards (the ones that meet `insufficient_balance`).
const BROKE_BALANCE: &str = "5.00";

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub cards: usize,
    pub terminals: usize,
    pub merchants: usize,
    /// Payment codes to issue in total (spread evenly over the cards).
    pub codes: usize,
    /// Share of cards (0–100) that start nearly empty.
    pub broke_percent: f64,
    pub code_ttl: chrono::Duration,
    /// What the codes start with: the pipeline's (`CAMPUSPAY_CODE_PREFIX`).
    pub code_prefix: campuspay::domain::CodePrefix,
}

/// What the load generator needs: the terminals and the codes, in the order to spend them.
#[derive(Debug, Clone)]
pub struct Campus {
    /// (merchant id, terminal id)
    pub terminals: Vec<(String, String)>,
    /// Shuffled, so consecutive payments hit different cards and settlement shards.
    pub codes: Vec<String>,
}

pub fn merchant_id(i: usize) -> String {
    format!("bm{:03}", i + 1)
}

pub fn terminal_id(i: usize) -> String {
    format!("bt{:04}", i + 1)
}

/// The whole campus, in one database transaction.
pub fn seed(
    conn: &mut PgConnection,
    opts: &SeedOptions,
    code_key: &[u8],
) -> Result<Campus, DbError> {
    let merchants = opts.merchants.clamp(1, opts.terminals.max(1));
    let per_card = opts.codes.div_ceil(opts.cards.max(1)).max(1);
    // Enough for every code at the largest amount plus a 10 % fee, with room to spare.
    let balance = (per_card as u64 * (u64::from(MAX_AMOUNT_FEN) * 11 / 10 + 100)) / 100 + 100;
    let broke = ((opts.cards as f64) * opts.broke_percent.clamp(0.0, 100.0) / 100.0) as usize;
    let terminals: Vec<(String, String)> = (0..opts.terminals)
        .map(|i| (merchant_id(i % merchants), terminal_id(i)))
        .collect();

    conn.transaction(|conn| {
        // Numbers only are formatted into this SQL, never input text.
        conn.batch_execute(&format!(
            "INSERT INTO accounts (kind, owner)
                 SELECT 'merchant', 'bm' || lpad(g::text, 3, '0') FROM generate_series(1, {merchants}) g;
             INSERT INTO merchants (id, name, account_id)
                 SELECT owner, 'Bench merchant ' || owner, id FROM accounts WHERE kind = 'merchant';
             INSERT INTO terminals (merchant_id, id)
                 SELECT 'bm' || lpad((((g - 1) % {merchants}) + 1)::text, 3, '0'),
                        'bt' || lpad(g::text, 4, '0')
                 FROM generate_series(1, {terminals}) g;
             INSERT INTO cardholders (user_id, name, identity)
                 SELECT 'bc' || lpad(g::text, 6, '0'), 'Bench cardholder ' || g,
                        CASE WHEN g % 20 = 0 THEN 'external'
                             WHEN g % 10 = 0 THEN 'temporary'
                             WHEN g % 7 = 0 THEN 'staff'
                             ELSE 'student' END
                 FROM generate_series(1, {cards}) g;
             INSERT INTO accounts (kind, owner)
                 SELECT 'card', user_id FROM cardholders ORDER BY user_id;
             -- No daily limit gets in the way of a long run; the per-transaction and
             -- password-free limits of each identity still apply.
             INSERT INTO cards (user_id, account_id, daily_limit)
                 SELECT owner, id, 100000000 FROM accounts WHERE kind = 'card' ORDER BY id;
             INSERT INTO fee_rules (identity, rate, effective_from)
                 VALUES ('temporary', 0.10, now() - interval '1 day'),
                        ('external', 0.05, now() - interval '1 day');",
            cards = opts.cards,
            terminals = opts.terminals,
        ))?;

        // The starting balances: one top-up per card, through the ledger writer.
        let accounts: Vec<(i64, String)> = campuspay::db::schema::accounts::table
            .filter(campuspay::db::schema::accounts::kind.eq(AccountKind::Card))
            .select((
                campuspay::db::schema::accounts::id,
                campuspay::db::schema::accounts::owner,
            ))
            .order(campuspay::db::schema::accounts::id)
            .load(conn)?;
        let clearing = journal::clearing(conn)?;
        let (full, low) = (
            Amount::try_from_decimal(rust_decimal::Decimal::from(balance))
                .map_err(|e| DbError::Invariant(format!("bench balance: {e}")))?,
            Amount::parse(BROKE_BALANCE)
                .map_err(|e| DbError::Invariant(format!("bench balance: {e}")))?,
        );
        let mut entries = Vec::with_capacity(accounts.len());
        for (i, (id, _owner)) in accounts.iter().enumerate() {
            let amount = if i < broke { low } else { full };
            let entry = JournalEntry::credit(
                uuid::Uuid::new_v4(),
                EntryKind::Topup,
                "bench seed",
                AccountId(*id),
                clearing,
                amount,
            )
            .map_err(|e| DbError::Invariant(format!("bench top-up: {e}")))?;
            entries.push(entry);
        }
        let ids: Vec<AccountId> = accounts.iter().map(|a| AccountId(a.0)).collect();
        let mut locks = journal::lock_cards(conn, &ids)?;
        journal::post(conn, &mut locks, &entries)?;

        let card_ids: Vec<i64> = campuspay::db::schema::cards::table
            .select(campuspay::db::schema::cards::id)
            .order(campuspay::db::schema::cards::id)
            .load(conn)?;
        let mut rng = rand::thread_rng();
        let mut seen = HashSet::with_capacity(per_card * card_ids.len());
        let mut rows: Vec<(Vec<u8>, i64)> = Vec::with_capacity(per_card * card_ids.len());
        let mut codes: Vec<String> = Vec::with_capacity(per_card * card_ids.len());
        for &card in &card_ids {
            let mut made = 0;
            while made < per_card {
                let code = PaymentCode::generate(&mut rng, opts.code_prefix);
                // 15 random digits: a collision is rare but would break the primary key.
                if !seen.insert(code.expose().to_owned()) {
                    continue;
                }
                rows.push((code_hash(code_key, &code), card));
                codes.push(code.expose().to_owned());
                made += 1;
            }
        }
        let batch = uuid::Uuid::new_v4();
        let expires = (campuspay::messages::now_micros() + opts.code_ttl).to_rfc3339();
        diesel::copy_from(payment_codes::table)
            .from_raw_data(
                (
                    payment_codes::code_hash,
                    payment_codes::card_id,
                    payment_codes::batch_id,
                    payment_codes::expires_at,
                ),
                |out: &mut dyn Write| -> Result<(), diesel::result::Error> {
                    let mut buf = std::io::BufWriter::with_capacity(1 << 16, out);
                    for (hash, card) in &rows {
                        writeln!(buf, "\\x{},{card},{batch},{expires}", hex::encode(hash))
                            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
                    }
                    buf.flush()
                        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
                },
            )
            .with_format(CopyFormat::Csv)
            .execute(conn)?;
        codes.shuffle(&mut rng);
        Ok(Campus { terminals, codes })
    })
}
