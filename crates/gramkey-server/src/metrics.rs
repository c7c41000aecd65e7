//! Prometheus metrics, served at `/metrics` (behind the admin key, or on `--metrics-listen`).
//!
//! Labels are bounded sets: route templates (never a raw path, which holds ids), methods,
//! statuses, token kinds, revocation reasons, budgets, alert kinds. No label
//! ever holds a token, code or secret.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gramkey_domain::ratelimit::Budget;
use gramkey_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// See [`Metrics::per_request`].
type PerRequest = HashMap<RequestLabels, (Counter, Histogram), foldhash::fast::RandomState>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

/// The server's metrics. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    tokens_issued: Family<KindLabels, Counter>,
    tokens_revoked: Family<ReasonLabels, Counter>,
    rate_limited: Family<KindLabels, Counter>,
    limiter_errors: Counter,
    alerts: Family<KindLabels, Counter>,
    active_tokens: Family<KindLabels, Gauge>,
    outbox: Gauge,
    /// Each request label set's counter and histogram, shared with the families above: one
    /// lookup per request, hashed with foldhash, where the two families cost two with SipHash.
    per_request: Arc<RwLock<PerRequest>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("gramkey");
        let requests = Family::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let tokens_issued = Family::default();
        let tokens_revoked = Family::default();
        let rate_limited = Family::default();
        let limiter_errors = Counter::default();
        let alerts = Family::default();
        let active_tokens = Family::default();
        let outbox = Gauge::default();
        r.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer, by route template",
            latency.clone(),
        );
        r.register(
            "tokens_issued",
            "Tokens issued, by kind",
            tokens_issued.clone(),
        );
        r.register(
            "tokens_revoked",
            "Tokens revoked, by reason",
            tokens_revoked.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit, by budget",
            rate_limited.clone(),
        );
        r.register(
            "rate_limiter_errors",
            "Rate-limiter backend failures",
            limiter_errors.clone(),
        );
        r.register("alerts", "Anomaly alerts raised, by kind", alerts.clone());
        r.register(
            "active_tokens",
            "Tokens neither revoked nor expired, by kind",
            active_tokens.clone(),
        );
        r.register(
            "callback_outbox_depth",
            "Callbacks waiting for delivery",
            outbox.clone(),
        );
        Self {
            registry: Arc::new(r),
            requests,
            latency,
            tokens_issued,
            tokens_revoked,
            rate_limited,
            limiter_errors,
            alerts,
            active_tokens,
            outbox,
            per_request: Arc::default(),
        }
    }
}

impl Metrics {
    /// `method` is one of a fixed set (the caller maps the rest to "other").
    pub fn request(
        &self,
        route: Cow<'static, str>,
        method: &'static str,
        status: u16,
        seconds: f64,
    ) {
        let labels = RequestLabels {
            route,
            method,
            status,
        };
        let known = self
            .per_request
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&labels)
            .map(|(count, latency)| {
                count.inc();
                latency.observe(seconds);
            });
        if known.is_none() {
            let count = self.requests.get_or_create(&labels).clone();
            let latency = self
                .latency
                .get_or_create(&RouteLabels {
                    route: labels.route.clone(),
                })
                .clone();
            count.inc();
            latency.observe(seconds);
            self.per_request
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(labels, (count, latency));
        }
    }
    pub fn token_issued(&self, kind: gramkey_domain::TokenKind) {
        self.tokens_issued
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }
    pub fn tokens_revoked(&self, reason: gramkey_domain::error::RevokeReason, n: u64) {
        self.tokens_revoked
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }
    pub fn rate_limited(&self, budget: Budget) {
        let kind = match budget {
            Budget::App => "app",
            Budget::User => "user",
            Budget::LegacyToken => "legacy_token",
        };
        self.rate_limited.get_or_create(&KindLabels { kind }).inc();
    }
    pub fn throttled_attempt(&self, what: &'static str) {
        self.rate_limited
            .get_or_create(&KindLabels { kind: what })
            .inc();
    }
    pub fn limiter_error(&self) {
        self.limiter_errors.inc();
    }
    pub fn alert(&self, kind: &'static str) {
        self.alerts.get_or_create(&KindLabels { kind }).inc();
    }

    /// The text exposition, with the gauges read from the store first.
    pub async fn render(&self, store: &dyn Store, now: gramkey_domain::UnixTime) -> String {
        match store.active_tokens(now).await {
            Ok(counts) => {
                self.active_tokens.clear();
                for (kind, n) in counts {
                    self.active_tokens
                        .get_or_create(&KindLabels {
                            kind: kind.as_str(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting active tokens failed"),
        }
        match store.pending_callbacks().await {
            Ok(n) => {
                self.outbox.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting pending callbacks failed"),
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}
