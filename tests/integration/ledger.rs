//! The ledger defends itself in the database too: whatever writes postings, an unbalanced
//! journal entry cannot commit and a posting cannot be edited or deleted.

use crate::helpers::*;
use campuspay::db::{self, DbError};
use campuspay::domain::Identity;
use diesel::connection::SimpleConnection;
use diesel::Connection;

/// Runs raw SQL statements in one transaction; the error text if it fails.
async fn in_one_transaction(env: &TestEnv, sql: String) -> Result<(), String> {
    db::run(&env.pool, move |c| {
        Ok(c.transaction::<_, DbError, _>(|c| Ok(c.batch_execute(&sql)?)))
    })
    .await
    .unwrap()
    .map_err(|e| e.to_string())
}

#[actix_rt::test]
async fn an_unbalanced_entry_cannot_commit_and_postings_are_append_only() {
    let env = TestEnv::empty().await;
    let user = env.card("s001", Identity::Student, "10.00").await;
    let card = format!("(SELECT id FROM accounts WHERE kind = 'card' AND owner = '{user}')");
    let clearing = "(SELECT id FROM accounts WHERE kind = 'topup_clearing')";

    // One leg of 5.00 with nothing against it: refused, nothing stored.
    let entry = uuid::Uuid::new_v4();
    let err = in_one_transaction(
        &env,
        format!(
            "INSERT INTO journal_entries (id, kind) VALUES ('{entry}', 'topup');
             INSERT INTO postings (entry_id, leg, account_id, amount) VALUES ('{entry}', 'card', {card}, 5.00);"
        ),
    )
    .await
    .expect_err("an unbalanced entry must not commit");
    assert!(err.contains("does not balance"), "{err}");
    let n = env
        .count(&format!(
            "SELECT COUNT(*) AS n FROM journal_entries WHERE id = '{entry}'"
        ))
        .await;
    assert_eq!(n, 0);

    // Both legs, but the second by a statement of its own: an entry's postings are written
    // together, in one statement, and the first statement alone does not balance.
    let err = in_one_transaction(
        &env,
        format!(
            "INSERT INTO journal_entries (id, kind) VALUES ('{entry}', 'topup');
             INSERT INTO postings (entry_id, leg, account_id, amount) VALUES ('{entry}', 'card', {card}, 5.00);
             INSERT INTO postings (entry_id, leg, account_id, amount) VALUES ('{entry}', 'clearing', {clearing}, -5.00);"
        ),
    )
    .await
    .expect_err("legs written by two statements");
    assert!(err.contains("does not balance"), "{err}");

    // Balanced and written together: commits.
    in_one_transaction(
        &env,
        format!(
            "INSERT INTO journal_entries (id, kind) VALUES ('{entry}', 'topup');
             INSERT INTO postings (entry_id, leg, account_id, amount) VALUES
                 ('{entry}', 'card', {card}, 5.00), ('{entry}', 'clearing', {clearing}, -5.00);
             UPDATE accounts SET balance = balance + 5.00 WHERE id = {card};
             UPDATE accounts SET balance = balance - 5.00 WHERE id = {clearing};"
        ),
    )
    .await
    .expect("a balanced entry commits");
    // Nor can a leg be added to it afterwards.
    let err = in_one_transaction(
        &env,
        format!(
            "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES ('{entry}', 'fee', {clearing}, 1.00);"
        ),
    )
    .await
    .expect_err("a leg added to a committed entry");
    assert!(err.contains("with its card leg"), "{err}");
    assert_eq!(env.balance(&user).await, money("15.00"));

    // Postings are never edited or deleted: a correction is a new entry.
    for sql in [
        format!("UPDATE postings SET amount = 6.00 WHERE entry_id = '{entry}' AND leg = 'card'"),
        format!("DELETE FROM postings WHERE entry_id = '{entry}'"),
        "TRUNCATE postings CASCADE".to_owned(),
    ] {
        let err = in_one_transaction(&env, sql.clone()).await.expect_err(&sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert!(env.verify().await.ok);
}
