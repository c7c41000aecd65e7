//! `GET /{app-id}/insights` for the app's own app token: calls, distinct users, errors by code,
//! throttled calls and the peak `call_count` percentage, per hour or day, with totals for the
//! last 24 hours and 7 days. Shaped like Graph's insights edges (`data[].values[]`).

use gramkey_domain::error::GraphError;
use gramkey_domain::graph::insights::InsightsRequest;
use gramkey_domain::time::graph_timestamp;
use gramkey_domain::{AppId, UnixTime};
use gramkey_store::UsageHour;
use serde_json::{Map, Value, json};

use crate::state::AppState;
use crate::wire::graph::GraphResponse;

/// One period's totals.
#[derive(Default)]
struct Totals {
    calls: u64,
    users: u64,
    errors: std::collections::BTreeMap<u32, u64>,
    throttled: u64,
    peak: u64,
}

impl Totals {
    fn add(&mut self, h: &UsageHour) {
        self.calls += h.calls;
        self.throttled += h.throttled;
        self.peak = self.peak.max(h.peak_call_pct);
        for (c, n) in &h.errors {
            *self.errors.entry(*c).or_default() += n;
        }
    }
    fn value(&self, metric: &str) -> Value {
        match metric {
            "calls" => json!(self.calls),
            "distinct_users" => json!(self.users),
            "errors" => Value::Object(
                self.errors
                    .iter()
                    .map(|(c, n)| (c.to_string(), json!(n)))
                    .collect::<Map<_, _>>(),
            ),
            "throttled_calls" => json!(self.throttled),
            _ => json!(self.peak),
        }
    }
    fn summary(&self) -> Value {
        let mut o = Map::new();
        for m in gramkey_domain::graph::insights::METRICS {
            o.insert(m.to_owned(), self.value(m));
        }
        Value::Object(o)
    }
}

async fn totals(
    state: &AppState,
    app: &AppId,
    hours: &[UsageHour],
    since: UnixTime,
    until: UnixTime,
) -> Result<Totals, GraphResponse> {
    let mut t = Totals::default();
    for h in hours.iter().filter(|h| h.hour >= since && h.hour < until) {
        t.add(h);
    }
    t.users = state.ops.store.distinct_users(app, since, until).await?;
    Ok(t)
}

/// The app's insights at `now`, its time.
pub async fn app_insights(
    state: &AppState,
    (app, now): (&AppId, UnixTime),
    node: &str,
    params: &[(String, String)],
) -> Result<Value, GraphResponse> {
    if node != app.as_str() {
        return Err(GraphError::not_found(node, "get").into());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let req = InsightsRequest::parse(
        get("metric"),
        get("period"),
        get("since"),
        get("until"),
        now,
    )?;
    // This node's counts since its last flush, so a caller reads its own calls.
    state.usage.flush(&*state.ops.store).await;
    let week_start = now - 7 * 86_400;
    let read_from = req.since.min(week_start - week_start.rem_euclid(3600));
    let hours = state
        .ops
        .store
        .usage(app, read_from, req.until.max(now + 1))
        .await?;
    let mut per_period = Vec::new();
    for start in req.periods() {
        let end = start + req.period.secs();
        let t = if req.metrics.contains(&"distinct_users") {
            totals(state, app, &hours, start, end).await?
        } else {
            let mut t = Totals::default();
            for h in hours.iter().filter(|h| h.hour >= start && h.hour < end) {
                t.add(h);
            }
            t
        };
        per_period.push((end, t));
    }
    let data: Vec<Value> = req
        .metrics
        .iter()
        .map(|m| {
            json!({
                "name": m,
                "period": req.period.as_str(),
                "values": per_period.iter().map(|(end, t)| json!({
                    "value": t.value(m),
                    "end_time": graph_timestamp(*end),
                })).collect::<Vec<_>>(),
                "id": format!("{app}/insights/{m}/{}", req.period.as_str()),
            })
        })
        .collect();
    let day = totals(state, app, &hours, now - 86_400, now + 1).await?;
    let week = totals(state, app, &hours, now - 7 * 86_400, now + 1).await?;
    Ok(json!({
        "data": data,
        "summary": {"last_24_hours": day.summary(), "last_7_days": week.summary()},
    }))
}
