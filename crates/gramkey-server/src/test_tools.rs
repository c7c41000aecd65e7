//! The sandbox's test tools, for development-mode apps (docs/test-tools.md): the test clock,
//! fault injection and the call log. The rules are the domain's
//! ([`gramkey_domain::sandbox`]); this module applies them to the store and the node.
//!
//! - The clock is the app's `clock_offset`: every part of the node that acts for the app reads
//!   `Ops::now_for`. Advancing it makes the app's pending deliveries due that much earlier;
//!   resetting it forgets the app's rate windows, which ran ahead of real time.
//! - Fault rules are rows, shared by every node; a counted rule is taken once per call across
//!   the cluster. A call looks for rules only while its app has some (`App::fault_rules`).
//! - The call log is this node's: a bounded ring per app, in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::error::GraphError;
use gramkey_domain::sandbox::{self, Effect, FaultRule, FaultSpec, MAX_RULES, normalize_path};
use gramkey_domain::time::graph_timestamp;
use gramkey_domain::{AppId, UnixTime};
use gramkey_store::App;
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::Entry;
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::Bearer;
use crate::wire::graph::GraphResponse;

/// Calls kept per app on each node.
pub const CALLS_PER_APP: usize = 500;
/// Apps whose calls a node keeps; the one heard from least recently makes room.
pub const APPS_LOGGED: usize = 200;

/// The app's test clock, as the API shows it.
pub fn clock_view(state: &AppState, app: &App) -> Value {
    let now = state.ops.now_for(app);
    json!({
        "app_id": app.id.as_str(),
        "offset_seconds": app.clock_offset,
        "now": now,
        "now_iso": graph_timestamp(now),
        "real_now": state.ops.clock.now(),
    })
}

/// Moves the app's clock `by` seconds forward: its deliveries due within them come due.
pub async fn advance_clock(
    state: &AppState,
    origin: &Origin,
    app: &App,
    by: i64,
) -> Result<App, GraphResponse> {
    sandbox::tools_allowed(app.mode)?;
    let offset = sandbox::advance(app.clock_offset, by).map_err(GraphError::invalid_parameter)?;
    set_clock(state, origin, app, offset, by).await
}

/// Puts the app's clock back to real time, and forgets its rate windows (they ran ahead).
pub async fn reset_clock(
    state: &AppState,
    origin: &Origin,
    app: &App,
) -> Result<App, GraphResponse> {
    sandbox::tools_allowed(app.mode)?;
    let app = set_clock(state, origin, app, 0, 0).await?;
    state.limiter.forget_app(&app.id).await;
    Ok(app)
}

async fn set_clock(
    state: &AppState,
    origin: &Origin,
    app: &App,
    offset: i64,
    shift: i64,
) -> Result<App, GraphResponse> {
    let store = &state.ops.store;
    if !store.set_clock(&app.id, offset, shift).await? {
        return Err(GraphError::not_found(app.id.as_str(), "post").into());
    }
    tracing::info!(app_id = %app.id, offset, "test clock set");
    let detail = if offset == 0 {
        "test clock reset to real time".to_owned()
    } else {
        format!("test clock advanced {shift} s, to {offset} s ahead of real time")
    };
    state
        .ops
        .audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default().app(&app.id).detail(detail),
        )
        .await;
    Ok(App {
        clock_offset: offset,
        ..app.clone()
    })
}

/// A rule as the API shows it.
pub fn rule_view(rule: &FaultRule, now: UnixTime) -> Value {
    json!({
        "id": rule.id.to_string(),
        "path": rule.path,
        "method": rule.method,
        "fault": rule.fault.as_str(),
        "ms": rule.fault.timed().then_some(rule.ms),
        "retry_after": rule.fault.limits().then(|| rule.ms / 1000),
        "remaining": rule.remaining,
        "probability": rule.probability,
        "expires_at": rule.expires_at,
        "created_at": rule.created_at,
        "active": rule.active(now),
    })
}

/// Adds a fault rule for the app.
pub async fn add_fault(
    state: &AppState,
    origin: &Origin,
    app: &App,
    params: &[(String, String)],
) -> Result<FaultRule, GraphResponse> {
    sandbox::tools_allowed(app.mode)?;
    let spec = FaultSpec::from_params(params).map_err(GraphError::invalid_parameter)?;
    let now = state.ops.now_for(app);
    let store = &state.ops.store;
    if store
        .faults(&app.id)
        .await?
        .iter()
        .filter(|r| r.active(now))
        .count()
        >= MAX_RULES
    {
        return Err(GraphError::invalid_parameter(format!(
            "An app may have at most {MAX_RULES} active fault rules; clear them first"
        ))
        .into());
    }
    let rule = store.add_fault(&app.id, &spec, now).await?;
    tracing::info!(app_id = %app.id, rule = rule.id, fault = rule.fault.as_str(), "fault rule added");
    state
        .ops
        .audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default().app(&app.id).detail(format!(
                "fault rule {} added: {} on {}",
                rule.id,
                rule.fault.as_str(),
                rule.path
            )),
        )
        .await;
    Ok(rule)
}

/// Clears the app's fault rules; how many there were.
pub async fn clear_faults(
    state: &AppState,
    origin: &Origin,
    app: &App,
) -> Result<u64, GraphResponse> {
    sandbox::tools_allowed(app.mode)?;
    let n = state.ops.store.clear_faults(&app.id).await?;
    state
        .ops
        .audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .detail(format!("{n} fault rules cleared")),
        )
        .await;
    Ok(n)
}

/// What an injected fault does to a call, once the node applied its waits.
#[derive(Debug)]
pub enum Injected {
    /// Refused as the real condition is, reporting `spent`'s budget and wait.
    Refuse {
        error: GraphError,
        spent: Option<(gramkey_domain::ratelimit::Budget, i64)>,
        fault: &'static str,
    },
    /// Answered as usual, late.
    Delayed(&'static str),
    /// Held, then closed without an answer.
    Abort(&'static str),
}

/// The fault to inject into a call of `method` to `path` by `bearer`, if a rule of its app
/// fires. Waits (latency, hold) are spent here.
pub async fn inject(
    state: &AppState,
    bearer: &Bearer,
    method: &str,
    path: &str,
) -> Result<Option<Injected>, GraphResponse> {
    let app = &bearer.app;
    if app.fault_rules == 0 || sandbox::tools_allowed(app.mode).is_err() {
        return Ok(None);
    }
    let Some(path) = normalize_path(path) else {
        return Ok(None);
    };
    let store = &state.ops.store;
    for rule in store.faults(&app.id).await? {
        if !rule.active(bearer.now) || !rule.matches(method, &path) {
            continue;
        }
        if rule.probability.is_some() && !rule.fires(roll(&*state.ops.entropy)) {
            continue;
        }
        if rule.remaining.is_some() && !store.take_fault(rule.id).await? {
            continue;
        }
        tracing::info!(app_id = %app.id, rule = rule.id, fault = rule.fault.as_str(), "fault injected");
        let fault = rule.fault.as_str();
        return Ok(Some(
            match rule.fault.effect(rule.ms, bearer.now, bearer.flavour()) {
                Effect::Refuse { error, spent } => Injected::Refuse {
                    error,
                    spent,
                    fault,
                },
                Effect::Delay(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Injected::Delayed(fault)
                }
                Effect::Hold(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Injected::Abort(fault)
                }
            },
        ));
    }
    Ok(None)
}

/// A uniform draw in [0, 1).
fn roll(entropy: &dyn gramkey_domain::Entropy) -> f64 {
    let mut b = [0u8; 8];
    entropy.fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// One call in an app's log. Never a token, secret or query value: the route template, the
/// token's row id.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// Increasing on this node: `since` asks for what came after.
    pub seq: u64,
    /// Real time, and the app's time (they differ while its test clock is ahead).
    pub time: UnixTime,
    pub app_time: UnixTime,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub error_code: Option<u32>,
    pub latency_ms: f64,
    pub token_id: Option<i64>,
    /// The fault injected into it, if one was.
    pub fault: Option<&'static str>,
    pub node: String,
}

/// This node's call log: the latest [`CALLS_PER_APP`] calls of at most [`APPS_LOGGED`]
/// development-mode apps.
pub struct CallLog {
    node: String,
    next: AtomicU64,
    apps: Mutex<HashMap<AppId, VecDeque<Call>>>,
}

impl CallLog {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            next: AtomicU64::new(1),
            apps: Mutex::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Notes a call of `app` (`seq` and `node` are filled in here).
    pub fn record(&self, app: &AppId, mut call: Call) {
        call.seq = self.next.fetch_add(1, Ordering::Relaxed);
        call.node.clone_from(&self.node);
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if !apps.contains_key(app) && apps.len() >= APPS_LOGGED {
            let quietest = apps
                .iter()
                .min_by_key(|(_, calls)| calls.back().map_or(0, |c| c.seq))
                .map(|(id, _)| id.clone());
            if let Some(id) = quietest {
                apps.remove(&id);
            }
        }
        let calls = apps.entry(app.clone()).or_default();
        if calls.len() >= CALLS_PER_APP {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The app's calls after `since`, oldest first, at most `limit`: the newest ones when
    /// more came.
    pub fn since(&self, app: &AppId, since: u64, limit: usize) -> Vec<Call> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(calls) = apps.get(app) else {
            return Vec::new();
        };
        let newer: Vec<&Call> = calls.iter().filter(|c| c.seq > since).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(route: &str) -> Call {
        Call {
            seq: 0,
            time: 1,
            app_time: 1,
            method: "GET".into(),
            route: route.into(),
            status: 200,
            error_code: None,
            latency_ms: 0.5,
            token_id: Some(3),
            fault: None,
            node: String::new(),
        }
    }

    #[test]
    fn the_log_is_bounded_per_app_and_in_apps() {
        let log = CallLog::new("n1");
        let a = AppId::parse("1000000000000001").unwrap();
        for _ in 0..CALLS_PER_APP + 10 {
            log.record(&a, call("/me"));
        }
        let all = log.since(&a, 0, usize::MAX);
        assert_eq!(all.len(), CALLS_PER_APP);
        assert_eq!(all[0].seq, 11, "the oldest made room");
        assert_eq!(all[0].node, "n1");
        let last = all.last().unwrap().seq;
        assert!(log.since(&a, last, 10).is_empty());
        assert_eq!(log.since(&a, 0, 2).len(), 2);
        assert_eq!(
            log.since(&a, 0, 2)[1].seq,
            last,
            "the newest when more came"
        );
        for n in 0..APPS_LOGGED as u64 + 5 {
            let id = AppId::parse(&format!("{}", 2_000_000_000_000_000 + n)).unwrap();
            log.record(&id, call("/me"));
        }
        assert_eq!(log.apps.lock().unwrap().len(), APPS_LOGGED);
        assert!(
            log.since(&a, 0, 10).is_empty(),
            "the quietest app made room"
        );
    }

    #[test]
    fn rolls_are_uniform_in_the_unit_interval() {
        let e = gramkey_domain::OsEntropy;
        let rolls: Vec<f64> = (0..1000).map(|_| roll(&e)).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let low = rolls.iter().filter(|r| **r < 0.5).count();
        assert!((350..650).contains(&low), "{low}");
    }
}
