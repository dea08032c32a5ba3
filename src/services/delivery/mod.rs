//! Sending notifications by email, SMS and push through the `notification_deliveries`
//! outbox (issue 8). Rows are queued in the event's transaction; one worker per configured
//! channel and node claims due rows with `FOR UPDATE SKIP LOCKED` under a lease (several nodes
//! never send one row at once), renders the channel's template at send time, sends, and
//! records the provider's id — or retries with exponential backoff and jitter up to
//! `notifications.max_attempts`, then marks the row failed. Each channel has its own worker,
//! so one provider's outage delays nothing else. A per-address hourly limit suppresses
//! floods. Delivery is at least once: a worker that dies between the provider's answer and
//! the record leaves the row to be sent again after its lease (emails carry a stable
//! Message-ID so receivers can drop the copy).

pub mod channels;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::models::deliveries::{self as rows, DeliveryRow};
use crate::state::AppState;
use channels::{Channel, Outgoing, SendError};
use templates::{Context, Templates, RECIPIENT_CODE};

/// The channels of this node and what they need at send time.
#[derive(Debug)]
pub struct Delivery {
    pub templates: Templates,
    /// Channels that queue messages (`email`, `sms`, `push`), from configuration.
    pub channels: Vec<&'static str>,
    /// `kind:channel` pairs on by default, and those that cannot be switched off.
    pub defaults: Vec<String>,
    pub mandatory: Vec<String>,
    /// The kinds in `mandatory` (their messages have an hourly budget of their own).
    mandatory_kinds: Vec<String>,
    /// Base of links in messages.
    pub public_url: String,
    /// Domain of Message-IDs (the `From` address's).
    message_domain: String,
    /// One per channel (email, sms, push): wakes that worker. `notify_one` keeps a permit, so
    /// a wake-up that arrives mid-round is not lost.
    kicks: [tokio::sync::Notify; 3],
}

impl Delivery {
    pub fn new(settings: &crate::config::Settings, port: u16) -> Result<Self, String> {
        let templates =
            Templates::new(&settings.notifications.locale).map_err(|e| e.to_string())?;
        let mut channels = Vec::new();
        if settings.email.enabled() {
            channels.push("email");
        }
        if settings.sms.enabled {
            channels.push("sms");
        }
        if !settings.push.api_base.is_empty() {
            channels.push("push");
        }
        let public_url = if settings.notifications.public_url.is_empty() {
            format!("http://{}:{port}", settings.server.host)
        } else {
            settings
                .notifications
                .public_url
                .trim_end_matches('/')
                .to_owned()
        };
        let message_domain = settings
            .email
            .from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_owned())
            .unwrap_or_else(|| "airbar.local".to_owned());
        Ok(Self {
            templates,
            channels,
            defaults: crate::services::notifications::default_pairs(),
            mandatory_kinds: mandatory_kinds(&crate::services::notifications::mandatory_pairs()),
            mandatory: crate::services::notifications::mandatory_pairs(),
            public_url,
            message_domain,
            kicks: Default::default(),
        })
    }

    /// Wakes every channel's worker (something was queued).
    pub fn wake(&self) {
        for kick in &self.kicks {
            kick.notify_one();
        }
    }

    fn kick(&self, channel: &str) -> &tokio::sync::Notify {
        &self.kicks[match channel {
            "email" => 0,
            "sms" => 1,
            _ => 2,
        }]
    }

    /// After the commit that queued messages on `channels`: count them and wake the workers.
    pub fn queued<'a>(
        &self,
        metrics: &crate::telemetry::metrics::NotificationSeries,
        channels: impl IntoIterator<Item = &'a str>,
    ) {
        let mut any = false;
        for channel in channels {
            metrics.message(channel, "queued");
            any = true;
        }
        if any {
            self.wake();
        }
    }

    pub fn tracking_url(&self, token: &str) -> String {
        format!("{}/api/track/{token}", self.public_url)
    }
}

/// Starts one worker per configured channel on this node.
pub fn spawn_workers(state: actix_web::web::Data<AppState>) -> Result<(), String> {
    let settings = &state.settings;
    if settings.email.enabled() {
        spawn(state.clone(), channels::Smtp::new(&settings.email)?);
    }
    if settings.sms.enabled {
        spawn(state.clone(), channels::TwilioSms::new(&settings.sms));
    }
    if !settings.push.api_base.is_empty() {
        spawn(state.clone(), channels::PushGateway::new(&settings.push));
    }
    Ok(())
}

fn spawn<C: Channel>(state: actix_web::web::Data<AppState>, channel: C) {
    let channel = Arc::new(channel);
    actix_web::rt::spawn(async move {
        let period = Duration::from_millis(state.settings.notifications.poll_interval_ms);
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = state.shutting_down();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = state.delivery.kick(channel.name()).notified() => {}
                () = &mut shutdown => return,
            }
            // Keep going while rounds come back full.
            loop {
                match round(&state, channel.as_ref()).await {
                    Ok(n) if n >= state.settings.notifications.batch_size as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(channel = channel.name(), error = %e, "notification worker round failed");
                        break;
                    }
                }
            }
        }
    });
}

/// Claims a batch of due messages of the channel and sends them concurrently. Returns how
/// many were claimed.
pub async fn round<C: Channel>(state: &AppState, channel: &C) -> Result<usize, AppError> {
    let cfg = &state.settings.notifications;
    let lease = Uuid::new_v4();
    let claimed = {
        let mut conn = db::conn(&state.db).await?;
        rows::claim(
            &mut conn,
            channel.name(),
            i64::from(cfg.batch_size),
            lease,
            i64::try_from(cfg.lease_secs).unwrap_or(60),
        )
        .await?
    };
    let n = claimed.len();
    // One address's messages go one after another (so its hourly limit is counted right);
    // different addresses concurrently.
    let mut by_address: std::collections::BTreeMap<String, Vec<DeliveryRow>> =
        std::collections::BTreeMap::new();
    for row in claimed {
        by_address.entry(row.address.clone()).or_default().push(row);
    }
    futures_util::stream::iter(by_address.into_values())
        .for_each_concurrent(Some(cfg.concurrency.max(1) as usize), |rows| async move {
            for row in rows {
                let id = row.id;
                if let Err(e) = deliver(state, channel, row, lease).await {
                    // The row stays claimed; it is retried when its lease runs out.
                    tracing::warn!(delivery = id, channel = channel.name(), error = %e, "recording a delivery failed");
                }
            }
        })
        .await;
    Ok(n)
}

/// Why a message could not be rendered.
enum RenderError {
    /// Never renders (a broken template, a row without what it needs).
    Template(String),
    /// Reading what the message needs failed; it may work later.
    Database(AppError),
}

impl RenderError {
    fn template(e: templates::TemplateError) -> Self {
        Self::Template(e.to_string())
    }
}

/// Kinds whose messages cannot be switched off: they count against their own hourly budget, so
/// a flood of other messages cannot suppress a security alert.
fn mandatory_kinds(pairs: &[String]) -> Vec<String> {
    let mut kinds: Vec<String> = pairs
        .iter()
        .filter_map(|pair| pair.split_once(':').map(|(kind, _)| kind.to_owned()))
        .collect();
    kinds.dedup();
    kinds
}

async fn record_sent(
    state: &AppState,
    row: &DeliveryRow,
    lease: Uuid,
    provider_id: &str,
) -> Result<(), AppError> {
    let mut conn = db::conn(&state.db).await?;
    let name = row.channel.as_str();
    if rows::finish(&mut conn, row.id, lease, "sent", Some(provider_id), None).await? == 1 {
        state.metrics.notifications.message(name, "sent");
    } else {
        lease_lost(row.id, name);
    }
    Ok(())
}

fn lease_lost(id: i64, channel: &str) {
    tracing::warn!(
        delivery = id,
        channel,
        "lease lost before the outcome was recorded"
    );
}

/// How a claimed message ended.
enum Outcome {
    Sent(String),
    Retry(String),
    Failed(String),
    Suppressed,
    Obsolete,
}

async fn deliver<C: Channel>(
    state: &AppState,
    channel: &C,
    row: DeliveryRow,
    lease: Uuid,
) -> Result<(), AppError> {
    let cfg = &state.settings.notifications;
    let name = channel.name();
    let mandatory_kinds = &state.delivery.mandatory_kinds;
    let mandatory = mandatory_kinds.contains(&row.kind);
    let prepared = {
        let mut conn = db::conn(&state.db).await?;
        // The lease is renewed for this row right before its send (the batch's lease was taken
        // at claim time; earlier rows of the same address may have used some of it). Lost:
        // another worker has the row now; leave it alone.
        let Some(recent) = rows::renew_and_count_recent(
            &mut conn,
            &row,
            lease,
            cfg.lease_secs,
            mandatory_kinds,
            mandatory,
        )
        .await?
        else {
            tracing::warn!(
                delivery = row.id,
                channel = name,
                "lease lost before sending"
            );
            return Ok(());
        };
        if row.attempts > cfg.max_attempts as i32 {
            // Claimed again and again without reaching an answer (e.g. the database failed
            // around the send each time): give up.
            Err(Outcome::Failed(format!(
                "no outcome after {} claims",
                row.attempts
            )))
        } else if recent >= i64::from(cfg.max_per_recipient_per_hour) {
            Err(Outcome::Suppressed)
        } else {
            match render(state, &mut conn, &row).await {
                Ok(Some(message)) => Ok(message),
                Ok(None) => Err(Outcome::Obsolete),
                Err(RenderError::Template(e)) => Err(Outcome::Failed(e)),
                // The database failed: try again later.
                Err(RenderError::Database(e)) => Err(Outcome::Retry(e.to_string())),
            }
        }
    };
    // No connection is held while the provider answers, and the answer must come well within
    // the lease (else another worker could claim the row meanwhile).
    let within = Duration::from_secs(cfg.lease_secs / 2);
    let outcome = match prepared {
        Ok(message) => match tokio::time::timeout(within, channel.send(message))
            .await
            .unwrap_or_else(|_| Err(SendError::Transient("no answer in time".into())))
        {
            Ok(id) => Outcome::Sent(id),
            Err(SendError::Permanent(e)) => Outcome::Failed(e),
            Err(SendError::Transient(e)) if row.attempts >= cfg.max_attempts as i32 => {
                Outcome::Failed(format!("gave up after {} attempts: {e}", row.attempts))
            }
            Err(SendError::Transient(e)) => Outcome::Retry(e),
        },
        Err(Outcome::Retry(e)) if row.attempts >= cfg.max_attempts as i32 => {
            Outcome::Failed(format!("gave up after {} attempts: {e}", row.attempts))
        }
        Err(outcome) => outcome,
    };
    if let Outcome::Sent(id) = &outcome {
        // The message is out: recording it must not be lost to one busy moment of the pool
        // (the row would be sent again after its lease).
        for attempt in 1..=3u64 {
            match record_sent(state, &row, lease, id).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 => {
                    tracing::warn!(delivery = row.id, channel = name, error = %e, "recording a sent message failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut conn = db::conn(&state.db).await?;
    let metrics = &state.metrics.notifications;
    let (recorded, label) = match &outcome {
        // Recorded above, with retries.
        Outcome::Sent(_) => return Ok(()),
        Outcome::Failed(e) => {
            // The provider's words (kept in `last_error`) may quote the address: not logged.
            tracing::error!(delivery = row.id, channel = name, kind = %row.kind, attempts = row.attempts, "notification failed");
            (
                rows::finish(&mut conn, row.id, lease, "failed", None, Some(e)).await?,
                "failed",
            )
        }
        Outcome::Retry(e) => {
            let at = Utc::now()
                + crate::services::retry::backoff(
                    cfg.backoff_base_ms,
                    cfg.backoff_max_ms,
                    row.attempts - 1,
                );
            tracing::info!(
                delivery = row.id,
                channel = name,
                attempt = row.attempts,
                "notification will be retried"
            );
            (
                rows::retry(&mut conn, row.id, lease, at, e).await?,
                "retried",
            )
        }
        Outcome::Suppressed => {
            tracing::warn!(delivery = row.id, channel = name, kind = %row.kind, "notification suppressed: recipient's hourly limit reached");
            (
                rows::finish(
                    &mut conn,
                    row.id,
                    lease,
                    "suppressed",
                    None,
                    Some("hourly limit per recipient"),
                )
                .await?,
                "suppressed",
            )
        }
        Outcome::Obsolete => (
            rows::finish(&mut conn, row.id, lease, "obsolete", None, None).await?,
            "obsolete",
        ),
    };
    if recorded == 1 {
        metrics.message(name, label);
    } else {
        lease_lost(row.id, name);
    }
    Ok(())
}

/// The message for a row, rendered now (the recipient's code is derived here, never stored
/// with the message); `None` when there is nothing left to say (the code was used).
async fn render(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    row: &DeliveryRow,
) -> Result<Option<Outgoing>, RenderError> {
    let templates = &state.delivery.templates;
    let mut code = None;
    let mut tracking_url = None;
    if row.kind == RECIPIENT_CODE {
        let Some(match_id) = row
            .data
            .get("match_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return Err(RenderError::Template(
                "a recipient message without its match".into(),
            ));
        };
        match crate::services::payments::custody::recipient_view(conn, state, match_id)
            .await
            .map_err(RenderError::Database)?
        {
            Some((c, token)) => {
                code = Some(c);
                tracking_url = Some(state.delivery.tracking_url(&token));
            }
            None => return Ok(None),
        }
    }
    let ctx = Context {
        data: Some(&row.data),
        payment_window_minutes: state.settings.matching.payment_window_secs / 60,
        code: code.as_deref(),
        tracking_url: tracking_url.as_deref(),
    };
    let kind = row.kind.as_str();
    Ok(Some(match row.channel.as_str() {
        "email" => Outgoing::Email {
            to: row.address.clone(),
            message_id: format!(
                "<n{}.{}@{}>",
                row.id,
                row.created_at.timestamp(),
                state.delivery.message_domain
            ),
            mail: templates.email(kind, &ctx).map_err(RenderError::template)?,
        },
        "sms" => Outgoing::Text {
            to: row.address.clone(),
            body: templates.sms(kind, &ctx).map_err(RenderError::template)?,
        },
        _ => {
            let (title, body) = templates
                .in_app(kind, &ctx)
                .map_err(RenderError::template)?;
            Outgoing::Push {
                user: row.address.clone(),
                title,
                body,
            }
        }
    }))
}

/// Refreshes the backlog gauges (pending per channel, age of the oldest).
pub async fn observe_backlog(state: &AppState) -> Result<(), AppError> {
    let mut conn = db::conn(&state.db).await?;
    let backlog = rows::backlog(&mut conn).await?;
    let metrics = &state.metrics.notifications;
    for channel in ["email", "sms", "push"] {
        let found = backlog.iter().find(|b| b.channel == channel);
        metrics.backlog(
            channel,
            found.map_or(0, |b| b.pending),
            found.map_or(0, |b| b.oldest_secs),
        );
    }
    Ok(())
}

/// Deletes finished messages past `notifications.retention_days`.
pub async fn purge(state: &AppState) -> Result<usize, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let days = i32::try_from(state.settings.notifications.retention_days).unwrap_or(i32::MAX);
    Ok(rows::purge(&mut conn, days).await?)
}
