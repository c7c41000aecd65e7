//! Anomaly alerts (the rules are [`gramkey_domain::alert`]): each is logged at `warn` and, with
//! `--alert-webhook`, POSTed as JSON to the webhook by a background task (three tries). The same
//! kind and subject alert at most once per cooldown, so a storm sends one alert.
//!
//! What is watched is this node's view: a rate jump is judged from the calls this node saw,
//! and deduplication is per node. New networks are recorded in the store, so every node knows
//! them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gramkey_domain::alert::{AlertKind, Dedup, Network, RateWatch, Thresholds, network_of};
use gramkey_domain::{AppId, Clock, UnixTime};
use gramkey_store::Store;
use moka::sync::Cache;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::outbound::{Outbound, Purpose};

/// Alerts waiting for the webhook; past this, new ones are logged but not sent.
const QUEUE: usize = 1024;

/// Token uses being written to the store (`token_used`) at once at most. A use that finds them
/// all taken is not noted this time, and is on a later call: memory stays bounded when tokens
/// arrive faster than the store takes the notes (a million new tokens in minutes held 240 MB of
/// waiting tasks; BENCHMARKS.md, memory).
const NOTES_IN_FLIGHT: usize = 256;

pub struct Alerter {
    thresholds: Thresholds,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    dedup: Mutex<Dedup>,
    rates: Mutex<HashMap<AppId, RateWatch, foldhash::fast::RandomState>>,
    /// (token row, network) pairs already recorded by this node.
    seen: Cache<(i64, Network), (), foldhash::fast::RandomState>,
    notes: Arc<tokio::sync::Semaphore>,
    webhook: Option<mpsc::Sender<Value>>,
}

impl Alerter {
    /// Must be called inside a Tokio runtime when there is a webhook.
    pub fn new(
        thresholds: Thresholds,
        webhook: Option<String>,
        allow_private: bool,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Self {
        let webhook = webhook.and_then(|url| {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let http = match Outbound::new(allow_private, PURPOSE) {
                Ok(http) => http,
                Err(e) => {
                    tracing::error!(error = %e, "alert webhook client could not be built");
                    return None;
                }
            };
            handle.spawn(deliver(http, url, rx));
            Some(tx)
        });
        Self {
            thresholds,
            clock,
            store,
            metrics,
            dedup: Mutex::default(),
            rates: Mutex::default(),
            seen: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build_with_hasher(foldhash::fast::RandomState::default()),
            notes: Arc::new(tokio::sync::Semaphore::new(NOTES_IN_FLIGHT)),
            webhook,
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Raises an alert unless the same one was raised within the cooldown.
    pub fn raise(&self, kind: AlertKind, subject: &str, message: String, details: Value) {
        let now = self.clock.now();
        let fresh = self.dedup.lock().unwrap_or_else(|p| p.into_inner()).admit(
            kind,
            subject,
            now,
            self.thresholds.cooldown_secs,
        );
        if !fresh {
            return;
        }
        self.metrics.alert(kind.as_str());
        tracing::warn!(alert = kind.as_str(), subject, %details, "ALERT: {message}");
        if let Some(tx) = &self.webhook {
            let body = json!({
                "kind": kind.as_str(),
                "subject": subject,
                "message": message,
                "at": now,
                "details": details,
            });
            if tx.try_send(body).is_err() {
                tracing::error!(
                    alert = kind.as_str(),
                    "alert queue full: not sent to the webhook"
                );
            }
        }
    }

    /// Counts a call of `app`, and raises a rate jump if its rate left its baseline far behind.
    pub fn call(&self, app: &AppId) {
        let now = self.clock.now();
        let jump = {
            let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
            if rates.len() > 100_000 {
                rates.clear();
            }
            // Every resource call counts here: no key is copied once the app is watched.
            match rates.get_mut(app) {
                Some(watch) => watch.call(now, &self.thresholds),
                None => rates
                    .entry(app.clone())
                    .or_insert_with(|| RateWatch::new(now))
                    .call(now, &self.thresholds),
            }
        };
        if let Some((recent, baseline)) = jump {
            self.raise(
                AlertKind::RateJump,
                &format!("app {app}"),
                format!(
                    "app {app} made {recent} calls in 5 minutes against a baseline of {baseline:.1}"
                ),
                json!({"app_id": app.as_str(), "recent_calls": recent, "baseline_calls": baseline}),
            );
        }
    }

    /// Notes that token row `token_id` was used from `ip`; raises an alert the first time a
    /// token that has been used elsewhere is used from a new network.
    pub fn token_used(self: &Arc<Self>, token_id: i64, app: &AppId, user: Option<i64>, ip: IpAddr) {
        let network = network_of(ip);
        let key = (token_id, network);
        if self.seen.contains_key(&key) {
            return;
        }
        let Ok(permit) = self.notes.clone().try_acquire_owned() else {
            return;
        };
        self.seen.insert(key, ());
        let this = Arc::clone(self);
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let now: UnixTime = this.clock.now();
            let network = network.to_string();
            match this.store.note_network(token_id, &network, now).await {
                Ok(seen) if seen.new && seen.known_before > 0 && this.thresholds.new_network => {
                    this.raise(
                        AlertKind::NewNetwork,
                        &format!("token {token_id} from {network}"),
                        format!(
                            "token {token_id} of app {app} was used from {network}, a network it had never been used from"
                        ),
                        json!({"app_id": app.as_str(), "user_id": user, "token_id": token_id,
                               "network": network, "known_networks": seen.known_before}),
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recording a token's network failed"),
            }
        });
    }

    /// After a failure was counted: `count` failures in 15 minutes for `subject`, which is
    /// locked at `limit`. A lockout below the burst threshold alerts too: a locked subject
    /// stops counting.
    pub fn failures(&self, kind: AlertKind, subject: &str, count: u64, limit: u64, details: Value) {
        if count >= self.thresholds.failure_burst.min(limit) {
            self.raise(
                kind,
                subject,
                format!("{count} failures in 15 minutes for {subject}"),
                details,
            );
        }
    }
}

/// How alerts are sent: to the operator's URL only, through the outbound guard.
const PURPOSE: Purpose = Purpose {
    name: "alerts",
    timeout: Duration::from_secs(10),
    redirects: 0,
};

async fn deliver(http: Outbound, url: String, mut rx: mpsc::Receiver<Value>) {
    while let Some(body) = rx.recv().await {
        for attempt in 1..=3u32 {
            let outcome = match http.post(&url) {
                Ok(request) => request
                    .json(&body)
                    .send()
                    .await
                    .map_err(crate::outbound::describe),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(r) if r.status().is_success() => break,
                outcome => {
                    let why = match outcome {
                        Ok(r) => format!("HTTP {}", r.status()),
                        Err(e) => e,
                    };
                    tracing::warn!(attempt, error = %why, "alert webhook delivery failed");
                    if attempt < 3 {
                        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    }
                }
            }
        }
    }
}
