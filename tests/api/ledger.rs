//! The ledger against the real PostgreSQL: postings move balances in double entry, a replayed
//! key posts once, a different posting under a used key is refused, overdrafts are refused and
//! change nothing, transfers cannot be changed or removed, and the invariants hold throughout.

use airbar::domain::money::{Currency, Money};
use airbar::services::ledger::{self, Account, Posting, Reference};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::support::spawn_app;

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR", "currency").unwrap())
}

fn posting(key: &str, debit: Account, credit: Account, amount: i64, m: Uuid) -> Posting {
    Posting {
        key: key.to_owned(),
        debit,
        credit,
        amount: eur(amount),
        reference: Reference::Match(m),
    }
}

#[tokio::test]
async fn a_paid_and_released_match_moves_money_in_double_entry() {
    let app = spawn_app().await;
    let mut conn = app.db().await;
    let (m, traveler) = (Uuid::now_v7(), Uuid::now_v7());
    let pay = posting(
        "match:pay",
        Account::ProviderClearing,
        Account::MatchHeld(m),
        4000,
        m,
    );
    ledger::post(&mut conn, &pay).await.unwrap();
    let release = [
        posting(
            "match:release",
            Account::MatchHeld(m),
            Account::UserAvailable(traveler),
            3400,
            m,
        ),
        posting(
            "match:fee",
            Account::MatchHeld(m),
            Account::PlatformRevenue,
            600,
            m,
        ),
    ];
    for p in &release {
        ledger::post(&mut conn, p).await.unwrap();
    }
    let balance = async |conn: &mut _, a| ledger::balance(conn, a, "EUR").await.unwrap();
    assert_eq!(balance(&mut conn, Account::ProviderClearing).await, -4000);
    assert_eq!(balance(&mut conn, Account::MatchHeld(m)).await, 0);
    assert_eq!(
        balance(&mut conn, Account::UserAvailable(traveler)).await,
        3400
    );
    assert_eq!(balance(&mut conn, Account::PlatformRevenue).await, 600);
    let inv = ledger::check(&mut conn).await.unwrap();
    assert!(inv.hold(), "{inv:?}");
    assert_eq!(inv.transfers, 3);
}

#[tokio::test]
async fn a_key_posts_once_and_cannot_be_reused_for_another_amount() {
    let app = spawn_app().await;
    let mut conn = app.db().await;
    let m = Uuid::now_v7();
    let pay = posting(
        "match:once",
        Account::ProviderClearing,
        Account::MatchHeld(m),
        2500,
        m,
    );
    let first = ledger::post(&mut conn, &pay).await.unwrap();
    let again = ledger::post(&mut conn, &pay).await.unwrap();
    assert_eq!(first.id, again.id, "a replay returns the first transfer");
    let other = posting(
        "match:once",
        Account::ProviderClearing,
        Account::MatchHeld(m),
        2600,
        m,
    );
    let err = ledger::post(&mut conn, &other).await.unwrap_err();
    assert_eq!(err.code(), "idempotency_conflict");
    assert_eq!(
        ledger::balance(&mut conn, Account::MatchHeld(m), "EUR")
            .await
            .unwrap(),
        2500
    );
    assert_eq!(ledger::check(&mut conn).await.unwrap().transfers, 1);
}

#[tokio::test]
async fn an_overdraft_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let mut conn = app.db().await;
    let (m, user) = (Uuid::now_v7(), Uuid::now_v7());
    ledger::post(
        &mut conn,
        &posting(
            "in",
            Account::ProviderClearing,
            Account::UserAvailable(user),
            1000,
            m,
        ),
    )
    .await
    .unwrap();
    let out = Posting {
        key: "withdraw".into(),
        debit: Account::UserAvailable(user),
        credit: Account::PayoutsInFlight,
        amount: eur(1001),
        reference: Reference::Withdrawal(Uuid::now_v7()),
    };
    let err = ledger::post(&mut conn, &out).await.unwrap_err();
    assert_eq!(err.code(), "insufficient_funds");
    assert_eq!(
        ledger::balance(&mut conn, Account::UserAvailable(user), "EUR")
            .await
            .unwrap(),
        1000
    );
    assert_eq!(
        ledger::balance(&mut conn, Account::PayoutsInFlight, "EUR")
            .await
            .unwrap(),
        0
    );
    let inv = ledger::check(&mut conn).await.unwrap();
    assert!(inv.hold() && inv.transfers == 1, "{inv:?}");
}

#[tokio::test]
async fn transfers_cannot_be_changed_or_removed() {
    let app = spawn_app().await;
    let mut conn = app.db().await;
    let m = Uuid::now_v7();
    ledger::post(
        &mut conn,
        &posting(
            "fixed",
            Account::ProviderClearing,
            Account::MatchHeld(m),
            100,
            m,
        ),
    )
    .await
    .unwrap();
    for sql in [
        "UPDATE ledger_transfers SET amount = 1",
        "DELETE FROM ledger_transfers",
        "TRUNCATE ledger_transfers",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
    // Nor can a balance be set by hand without the books showing it.
    diesel::sql_query("UPDATE ledger_accounts SET balance = balance + 5 WHERE kind = 'match_held'")
        .execute(&mut conn)
        .await
        .unwrap();
    let inv = ledger::check(&mut conn).await.unwrap();
    assert_eq!((inv.drifted_accounts, inv.unbalanced_currencies), (1, 1));
}

#[tokio::test]
async fn concurrent_withdrawals_never_overdraw() {
    let app = spawn_app().await;
    let mut conn = app.db().await;
    let (m, user) = (Uuid::now_v7(), Uuid::now_v7());
    ledger::post(
        &mut conn,
        &posting(
            "deposit",
            Account::ProviderClearing,
            Account::UserAvailable(user),
            1000,
            m,
        ),
    )
    .await
    .unwrap();
    // 12 withdrawals of 100 race for 1 000: exactly 10 can be posted.
    let attempts = (0..12).map(|i| {
        let app = &app;
        async move {
            let mut conn = app.db().await;
            let out = Posting {
                key: format!("withdraw-{i}"),
                debit: Account::UserAvailable(user),
                credit: Account::PayoutsInFlight,
                amount: eur(100),
                reference: Reference::Withdrawal(Uuid::now_v7()),
            };
            ledger::post(&mut conn, &out)
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let posted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(posted, 10, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.is_ok() || *r == Err("insufficient_funds")));
    assert_eq!(
        ledger::balance(&mut conn, Account::UserAvailable(user), "EUR")
            .await
            .unwrap(),
        0
    );
    let inv = ledger::check(&mut conn).await.unwrap();
    assert!(inv.hold() && inv.transfers == 11, "{inv:?}");
}
