//! Hourly usage per app, for app insights: counted in memory per request and added to the
//! store every few seconds (and before insights are read), so a request costs no write.

use std::sync::{Arc, Mutex};

/// foldhash: these are touched on every resource call, and their keys are the server's own ids.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

use gramkey_domain::{AppId, UnixTime, UserId};
use gramkey_store::{Store, UsageDelta};

#[derive(Default)]
struct Hour {
    calls: u64,
    throttled: u64,
    peak: u64,
    errors: HashMap<u32, u64>,
    users: HashSet<i64>,
}

/// Each app's hours, by the hour's start. By app first, so counting a call copies no app id
/// once the app has been seen.
type Hours = HashMap<AppId, HashMap<UnixTime, Hour>>;

#[derive(Clone, Default)]
pub struct UsageBook {
    hours: Arc<Mutex<Hours>>,
}

impl UsageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Hours> {
        self.hours.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one call of `app` by `user` at `now`.
    pub fn record(
        &self,
        app: &Option<AppId>,
        user: Option<i64>,
        now: UnixTime,
        error: Option<u32>,
        throttled: bool,
        call_pct: u64,
    ) {
        let Some(app) = app else { return };
        let hour = now - now.rem_euclid(3600);
        let mut hours = self.lock();
        let app_hours = match hours.get_mut(app) {
            Some(app_hours) => app_hours,
            None => hours.entry(app.clone()).or_default(),
        };
        let h = app_hours.entry(hour).or_default();
        h.calls += 1;
        h.throttled += u64::from(throttled);
        h.peak = h.peak.max(call_pct);
        if let Some(code) = error {
            *h.errors.entry(code).or_default() += 1;
        }
        if let Some(u) = user {
            h.users.insert(u);
        }
    }

    /// Adds what was counted to the store. What could not be written is kept for the next try.
    pub async fn flush(&self, store: &dyn Store) {
        let taken = std::mem::take(&mut *self.lock());
        if taken.is_empty() {
            return;
        }
        let deltas: Vec<UsageDelta> = taken
            .iter()
            .flat_map(|(app, app_hours)| app_hours.iter().map(move |(hour, h)| (app, hour, h)))
            .map(|(app, hour, h)| UsageDelta {
                app_id: Some(app.clone()),
                hour: *hour,
                calls: h.calls,
                throttled: h.throttled,
                peak_call_pct: h.peak,
                errors: h.errors.iter().map(|(c, n)| (*c, *n)).collect(),
                users: h.users.iter().map(|u| UserId(*u)).collect(),
            })
            .collect();
        if let Err(e) = store.record_usage(&deltas).await {
            tracing::warn!(error = %e, "recording app usage failed; kept for the next flush");
            let mut hours = self.lock();
            for (app, hour, h) in taken.into_iter().flat_map(|(app, app_hours)| {
                app_hours
                    .into_iter()
                    .map(move |(hour, h)| (app.clone(), hour, h))
            }) {
                let into = hours.entry(app).or_default().entry(hour).or_default();
                into.calls += h.calls;
                into.throttled += h.throttled;
                into.peak = into.peak.max(h.peak);
                for (c, n) in h.errors {
                    *into.errors.entry(c).or_default() += n;
                }
                into.users.extend(h.users);
            }
        }
    }
}
