//! Ledger figures for BENCHMARKS.md (issue 7, "Measure"): postings per second through
//! `services::ledger::post` (each its own transaction, several connections at once), and the
//! time of the full invariant check over a million transfers. Run by `scripts/bench_ledger.sh`
//! against a migrated throw-away database:
//!
//!   ledger_bench <database-url> [postings=20000] [connections=8] [seed_transfers=1000000]

use std::time::Instant;

use airbar::domain::money::{Currency, Money};
use airbar::services::ledger::{self, Account, Posting, Reference};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

const USERS: usize = 1000;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: ledger_bench <database-url> [postings] [connections] [seed]")?;
    let (postings, connections, seed) = (arg(2, 20_000), arg(3, 8), arg(4, 1_000_000));
    let eur = Currency::parse("EUR", "currency").map_err(|e| format!("{e:?}"))?;
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();

    // Postings: money in from the provider to random users' available balances.
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..connections {
        let (url, users) = (url.clone(), users.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            let mut i = w;
            while i < postings {
                let p = Posting {
                    key: format!("bench:{i}"),
                    debit: Account::ProviderClearing,
                    credit: Account::UserAvailable(users[i % USERS]),
                    amount: Money::new(100 + (i % 900) as i64, eur),
                    reference: Reference::Webhook(Uuid::now_v7()),
                };
                ledger::post(&mut conn, &p)
                    .await
                    .map_err(|e| format!("posting {i}: {}", e.code()))?;
                i += connections;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for w in workers {
        w.await?.map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "postings: {postings} over {connections} connections in {secs:.2} s = {:.0} postings/s",
        postings as f64 / secs
    );

    // A million transfers, then the check. Seeded in bulk with the balance trigger off and the
    // balances set from the sums afterwards: one statement updating the same few rows a million
    // times would be quadratic (each update follows the row's chain of versions).
    let mut conn = AsyncPgConnection::establish(&url).await?;
    let started = Instant::now();
    diesel::sql_query("ALTER TABLE ledger_transfers DISABLE TRIGGER ledger_transfers_post")
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!(
        "INSERT INTO ledger_transfers (id, idempotency_key, debit_account, credit_account, amount,
                                       currency, reference_kind, reference_id)
         SELECT gen_random_uuid(), 'seed:' || g, c.id, acc.ids[1 + g % 50], 1 + g % 500,
                'EUR', 'webhook', gen_random_uuid()
           FROM generate_series(1, {seed}) g
          CROSS JOIN (SELECT array_agg(id) AS ids FROM (SELECT id FROM ledger_accounts
                       WHERE kind = 'user_available' LIMIT 50) s) acc
          CROSS JOIN (SELECT id FROM ledger_accounts WHERE kind = 'provider_clearing') c"
    ))
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "UPDATE ledger_accounts a SET balance = s.total
           FROM (SELECT account, sum(delta)::bigint AS total
                   FROM (SELECT debit_account AS account, -amount AS delta FROM ledger_transfers
                         UNION ALL
                         SELECT credit_account, amount FROM ledger_transfers) m
                  GROUP BY account) s
          WHERE s.account = a.id",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query("ALTER TABLE ledger_transfers ENABLE TRIGGER ledger_transfers_post")
        .execute(&mut conn)
        .await?;
    println!(
        "seeded {seed} transfers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let inv = ledger::check(&mut conn)
            .await
            .map_err(|e| e.code().to_owned())?;
        best = best.min(started.elapsed().as_secs_f64());
        if !inv.hold() {
            return Err(format!("invariants broken: {inv:?}").into());
        }
        println!("check over {} transfers: {inv:?}", inv.transfers);
    }
    println!("invariant check (best of 3): {:.0} ms", best * 1000.0);
    Ok(())
}
