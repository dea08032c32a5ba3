//! The Prometheus registry: HTTP, pool and actor series, encoded as OpenMetrics text.
//!
//! One `Metrics` per application instance (no global recorder), shared through `Arc`. Pool
//! gauges are sampled at scrape time; counters are updated where things happen.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Actor series, one label value per actor kind.
#[derive(Debug, Default, Clone)]
pub struct ActorSeries {
    pub live: Family<KindLabels, Gauge>,
    pub started: Family<KindLabels, Counter>,
    pub handled: Family<KindLabels, Counter>,
    pub backlog: Family<KindLabels, Gauge>,
    pub dropped: Family<KindLabels, Counter>,
    pub sent: Family<KindLabels, Counter>,
}

/// Real-time delivery series: publish → write latency and slow consumers.
#[derive(Debug, Clone)]
pub struct RealtimeSeries {
    pub fanout_latency: Histogram,
    pub slow_consumers: Family<KindLabels, Counter>,
    pub presence_changes: Counter,
    /// Positions by outcome: `accepted`, dropped by the filter (its reason), `refused`, `stored`.
    pub positions: Family<PositionLabels, Counter>,
    /// Position frames replaced by a newer one before a slow watcher took them.
    pub coalesced: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PositionLabels {
    pub outcome: &'static str,
}

impl RealtimeSeries {
    pub fn position(&self, outcome: &'static str) {
        self.positions
            .get_or_create(&PositionLabels { outcome })
            .inc();
    }
}

impl Default for RealtimeSeries {
    fn default() -> Self {
        Self {
            // 0.1 ms .. ~3.3 s
            fanout_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            slow_consumers: Family::default(),
            presence_changes: Counter::default(),
            positions: Family::default(),
            coalesced: Counter::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub kind: String,
    pub outcome: &'static str,
}

/// Money series: provider calls and webhooks by outcome.
#[derive(Debug, Default, Clone)]
pub struct PaymentSeries {
    pub ops: Family<OutcomeLabels, Counter>,
    pub webhooks: Family<OutcomeLabels, Counter>,
}

impl PaymentSeries {
    /// A provider call (`refund`, `transfer`) ended `done`, `retried` or `failed`.
    pub fn op(&self, kind: &str, outcome: &'static str) {
        self.ops
            .get_or_create(&OutcomeLabels {
                kind: kind.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A webhook event was `applied`, `duplicate`, `ignored` or `rejected`.
    pub fn webhook(&self, kind: &str, outcome: &'static str) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                kind: kind.to_owned(),
                outcome,
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelOutcomeLabels {
    pub channel: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: &'static str,
}

/// Notification delivery: messages by channel and outcome, and the outbox's backlog.
#[derive(Debug, Default)]
pub struct NotificationSeries {
    pub messages: Family<ChannelOutcomeLabels, Counter>,
    pub pending: Family<ChannelLabels, Gauge>,
    pub oldest_pending: Family<ChannelLabels, Gauge>,
}

impl NotificationSeries {
    /// A message was `queued`, `sent`, `retried`, `failed`, `suppressed` or `obsolete`.
    pub fn message(&self, channel: &str, outcome: &'static str) {
        self.messages
            .get_or_create(&ChannelOutcomeLabels {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn backlog(&self, channel: &'static str, pending: i64, oldest_secs: i64) {
        let labels = ChannelLabels { channel };
        self.pending.get_or_create(&labels).set(pending);
        self.oldest_pending.get_or_create(&labels).set(oldest_secs);
    }
}

/// A snapshot of a connection pool, taken at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSample {
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
    pub max_size: usize,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    pools: Family<PoolLabels, Gauge>,
    pub actors: ActorSeries,
    pub realtime: RealtimeSeries,
    pub payments: PaymentSeries,
    pub notifications: NotificationSeries,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("airbar");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        let pools = Family::<PoolLabels, Gauge>::default();
        let actors = ActorSeries::default();
        let realtime = RealtimeSeries::default();
        let payments = PaymentSeries::default();
        let notifications = NotificationSeries::default();
        registry.register(
            "notification_messages",
            "Email, SMS and push messages by channel and outcome (queued, sent, retried, failed, suppressed, obsolete)",
            notifications.messages.clone(),
        );
        registry.register(
            "notification_outbox_pending",
            "Messages waiting in the notification outbox, by channel",
            notifications.pending.clone(),
        );
        registry.register(
            "notification_outbox_oldest_pending_seconds",
            "Age of the oldest message waiting in the notification outbox, by channel",
            notifications.oldest_pending.clone(),
        );
        registry.register(
            "payment_provider_calls",
            "Refund and payout calls to the payment provider by outcome (done, retried, failed)",
            payments.ops.clone(),
        );
        registry.register(
            "payment_webhooks",
            "Payment provider webhook events by type and outcome",
            payments.webhooks.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            http_duration.clone(),
        );
        registry.register(
            "pool_connections",
            "Connection pool state (size, available, waiting, max) per pool",
            pools.clone(),
        );
        registry.register("actors_live", "Live actors per kind", actors.live.clone());
        registry.register(
            "actors_started",
            "Actors started per kind",
            actors.started.clone(),
        );
        registry.register(
            "actor_messages_handled",
            "Messages handled per actor kind",
            actors.handled.clone(),
        );
        registry.register(
            "actor_mailbox_backlog",
            "Messages sent but not yet handled, per actor kind",
            actors.backlog.clone(),
        );
        registry.register(
            "actor_messages_dropped",
            "Messages dropped because a mailbox was full or closed (slow consumers), per kind",
            actors.dropped.clone(),
        );
        registry.register(
            "actor_messages_sent",
            "Messages an actor of this kind sent on (frames written, deliveries fanned out)",
            actors.sent.clone(),
        );
        registry.register(
            "fanout_latency_seconds",
            "Time from an event's publication to its frame being written to a client",
            realtime.fanout_latency.clone(),
        );
        registry.register(
            "slow_consumers",
            "Clients whose outbound queue filled up and were disconnected, per kind",
            realtime.slow_consumers.clone(),
        );
        registry.register(
            "presence_changes",
            "Users who came online or went offline (as seen by this node)",
            realtime.presence_changes.clone(),
        );
        registry.register(
            "tracking_positions",
            "Parcel positions by outcome (accepted, stored, refused, or the filter's reason for dropping)",
            realtime.positions.clone(),
        );
        registry.register(
            "tracking_coalesced_frames",
            "Position frames a slow watcher never got because a newer one replaced them",
            realtime.coalesced.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            pools,
            actors,
            realtime,
            payments,
            notifications,
        }
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn observe_pool(&self, pool: &'static str, sample: PoolSample) {
        for (state, value) in [
            ("size", sample.size),
            ("available", sample.available),
            ("waiting", sample.waiting),
            ("max", sample.max_size),
        ] {
            self.pools
                .get_or_create(&PoolLabels { pool, state })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_includes_http_pool_and_actor_series() {
        let m = Metrics::new();
        m.observe_http("GET", "/api/live", 200, 0.001);
        m.observe_pool(
            "postgres",
            PoolSample {
                size: 2,
                available: 1,
                waiting: 0,
                max_size: 4,
            },
        );
        m.actors
            .live
            .get_or_create(&KindLabels { kind: "registry" })
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"airbar_http_requests_total{method="GET",route="/api/live",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("airbar_http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"airbar_pool_connections{pool="postgres",state="max"} 4"#));
        assert!(text.contains(r#"airbar_actors_live{kind="registry"} 1"#));
    }
}
