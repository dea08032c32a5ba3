//! Notification figures for BENCHMARKS.md (issue 8, "Measure"), in one process against a
//! throw-away database and the local SMTP stand-in (`scripts/notify_sinks.py`):
//!
//! - **enqueue**: `services::notifications::write` (the in-app row and its email delivery,
//!   preferences applied, in one statement) in its own transaction, one after another on one
//!   connection — against the baseline of inserting the bare in-app row the same way,
//!   interleaved so both see the same conditions. The difference is what the outbox adds to
//!   the triggering request.
//! - **send**: the outbox drained by this node's email worker (claim with SKIP LOCKED, render,
//!   SMTP, record) — against the baseline of the same rendered mails sent straight through the
//!   same SMTP channel at the same concurrency, without the outbox.
//!
//! Run by `scripts/bench_notify.sh`:
//!
//!   notify_bench <database-url> <smtp-port> [messages=5000] [batch=64]

use std::time::{Duration, Instant};

use airbar::config::{Environment, Secret, Settings, Source};
use airbar::services::delivery::channels::{Channel, Outgoing, Smtp};
use airbar::services::delivery::templates::Context;
use airbar::services::notifications::{self, Note};
use airbar::startup::{self, Application};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use uuid::Uuid;

const USERS: usize = 1000;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>, total: Duration) -> f64 {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    println!(
        "{name:<34} {:>8.0}/s  p50 {p50:.3} ms  p99 {:.3} ms",
        samples.len() as f64 / total.as_secs_f64(),
        percentile(&samples, 0.99),
    );
    p50
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: notify_bench <database-url> <smtp-port> [messages] [batch]";
    let url = std::env::args().nth(1).ok_or(usage)?;
    let smtp_port: u16 = std::env::args().nth(2).ok_or(usage)?.parse()?;
    let (messages, batch) = (arg(3, 5000), arg(4, 64));

    let source = Source {
        dir: "config".into(),
        environment: Environment::Development,
    };
    let mut settings = Settings::load(&source, &std::collections::BTreeMap::new())?;
    settings.database.url = Secret::new(url.clone());
    settings.redis.url = Secret::new("");
    settings.server.port = 0;
    settings.email.smtp_host = "127.0.0.1".into();
    settings.email.smtp_port = smtp_port;
    settings.email.smtp_tls = "none".into();
    // The worker only runs when kicked (after the enqueue phase).
    settings.notifications.poll_interval_ms = 3_600_000;
    settings.notifications.batch_size = u32::try_from(batch)?;
    settings.notifications.concurrency = u32::try_from(batch)?;
    settings.notifications.max_per_recipient_per_hour = u32::MAX;
    startup::prepare_database(&settings).await?;
    let smtp = Smtp::new(&settings.email)?;
    let app = Application::build(settings, Environment::Development, None)?;
    let state = app.state();

    let mut conn = AsyncPgConnection::establish(&url).await?;
    diesel::sql_query(format!(
        "INSERT INTO users (id, email, password_hash, display_name)
         SELECT gen_random_uuid(), 'bench' || g || '@bench.test', 'x', 'Bench'
           FROM generate_series(1, {USERS}) g"
    ))
    .execute(&mut conn)
    .await?;
    let users: Vec<Uuid> = diesel::sql_query("SELECT id FROM users")
        .load::<UserId>(&mut conn)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();

    // Enqueue, interleaved with the baseline.
    let (mut bare, mut outbox) = (Vec::new(), Vec::new());
    let (mut bare_total, mut outbox_total) = (Duration::ZERO, Duration::ZERO);
    for i in 0..messages {
        let user = users[i % users.len()];
        let started = Instant::now();
        conn.transaction(async |c| {
            diesel::sql_query(
                "INSERT INTO notifications (id, user_id, kind, title, body, data)
                 VALUES ($1, $2, 'match_paid', 'Booking paid', 'The booking is paid.', '{}')",
            )
            .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
            .bind::<diesel::sql_types::Uuid, _>(user)
            .execute(c)
            .await
        })
        .await?;
        let took = started.elapsed();
        bare.push(took);
        bare_total += took;

        let note = Note {
            user,
            kind: "match_paid",
            data: serde_json::json!({"match_id": Uuid::now_v7(), "status": "paid"}),
        };
        let started = Instant::now();
        let stored = conn
            .transaction(async |c| notifications::write(c, &state, &[note]).await)
            .await
            .map_err(|e| e.to_string())?;
        let took = started.elapsed();
        assert_eq!(stored[0].channels, ["email"]);
        outbox.push(took);
        outbox_total += took;
    }
    println!("{messages} notifications, one transaction each, one connection:");
    let base_p50 = report("  in-app row only (baseline)", bare, bare_total);
    let with_p50 = report("  in-app row + email delivery", outbox, outbox_total);
    println!(
        "  added on the triggering request: {:.3} ms at p50 (ratio {:.2})",
        with_p50 - base_p50,
        with_p50 / base_p50
    );

    // Send through the worker.
    let started = Instant::now();
    state.delivery.wake();
    loop {
        let left: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM notification_deliveries WHERE status = 'pending'",
        )
        .get_result(&mut conn)
        .await?;
        if left.n == 0 {
            break;
        }
        state.delivery.wake();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let worker = started.elapsed();
    let sent: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM notification_deliveries WHERE status = 'sent'",
    )
    .get_result(&mut conn)
    .await?;
    assert_eq!(sent.n as usize, messages, "every message sent");

    // Baseline: the same mails straight through the SMTP channel, same concurrency.
    let data = serde_json::json!({"status": "paid"});
    let ctx = Context {
        data: Some(&data),
        payment_window_minutes: 60,
        ..Context::default()
    };
    let mail = || state.delivery.templates.email("match_paid", &ctx);
    let started = Instant::now();
    let failures = futures_util::stream::iter(0..messages)
        .map(|i| {
            let message = mail().map(|mail| Outgoing::Email {
                to: format!("direct{i}@bench.test"),
                message_id: format!("<direct{i}@bench.test>"),
                mail,
            });
            let smtp = &smtp;
            async move {
                match message {
                    Ok(m) => smtp.send(m).await.is_err(),
                    Err(_) => true,
                }
            }
        })
        .buffer_unordered(batch)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let direct = started.elapsed();
    assert_eq!(failures, 0, "direct sends failed");
    let (w, d) = (
        messages as f64 / worker.as_secs_f64(),
        messages as f64 / direct.as_secs_f64(),
    );
    println!("{messages} emails to the local SMTP server, {batch} at a time:");
    println!("  through the outbox worker        {w:>8.0}/s");
    println!("  straight through SMTP (baseline) {d:>8.0}/s");
    println!("  ratio {:.2}", w / d);
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct UserId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
