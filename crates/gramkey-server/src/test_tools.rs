//! The sandbox's test tools, for development-mode apps (docs/test-tools.md): the test clock,
//! fault injection and the call log. The rules are the domain's
//! ([`gramkey_domain::sandbox`]); this module applies them to the store and the node.
//!
//! - The clock is the app's `clock_offset`: every part of the node that acts for the app reads
//!   `Ops::now_for`. Advancing it makes the app's pending deliveries due that much earlier;
//!   resetting it forgets the app's rate windows, which ran ahead of real time.
//! - Fault rules are rows, shared by every node; a counted rule is taken once per call across
//!   the cluster. A call looks for rules only while its app has some (`App::fault_rules`).
//! - The call log is this node's ([`crate::call_log`]).

use std::time::Duration;

use gramkey_domain::UnixTime;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::error::GraphError;
use gramkey_domain::sandbox::{self, Effect, FaultRule, FaultSpec, MAX_RULES, normalize_path};
use gramkey_domain::time::graph_timestamp;
use gramkey_store::App;
use serde_json::{Value, json};

use crate::audit::Entry;
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::Bearer;
use crate::wire::graph::GraphResponse;

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

/// Notes in the audit log that a tool changed the app.
async fn audited(state: &AppState, origin: &Origin, app: &App, detail: String) {
    let entry = Entry::default().app(&app.id).detail(detail);
    state
        .ops
        .audit(origin, AuditKind::AppChanged, Outcome::Success, entry)
        .await;
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
    audited(state, origin, app, detail).await;
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
        "retry_after": rule.fault.limits().then_some(rule.ms / 1000),
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
    let detail = format!(
        "fault rule {} added: {} on {}",
        rule.id,
        rule.fault.as_str(),
        rule.path
    );
    audited(state, origin, app, detail).await;
    Ok(rule)
}

/// Clears the app's fault rules; how many were still in force.
pub async fn clear_faults(
    state: &AppState,
    origin: &Origin,
    app: &App,
) -> Result<u64, GraphResponse> {
    sandbox::tools_allowed(app.mode)?;
    let store = &state.ops.store;
    let now = state.ops.now_for(app);
    let active = store.faults(&app.id).await?;
    let n = active.iter().filter(|r| r.active(now)).count() as u64;
    store.clear_faults(&app.id).await?;
    audited(state, origin, app, format!("{n} fault rules cleared")).await;
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
    if bearer.app.fault_rules == 0 || sandbox::tools_allowed(bearer.app.mode).is_err() {
        return Ok(None);
    }
    let app = bearer.app_id();
    let Some(path) = normalize_path(path) else {
        return Ok(None);
    };
    let store = &state.ops.store;
    for rule in store.faults(app).await? {
        if !rule.active(bearer.now) || !rule.matches(method, &path) {
            continue;
        }
        if rule.probability.is_some() && !rule.fires(roll(&*state.ops.entropy)) {
            continue;
        }
        if rule.remaining.is_some() && !store.take_fault(rule.id).await? {
            continue;
        }
        tracing::info!(app_id = %app, rule = rule.id, fault = rule.fault.as_str(), "fault injected");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_uniform_in_the_unit_interval() {
        let e = gramkey_domain::OsEntropy;
        let rolls: Vec<f64> = (0..1000).map(|_| roll(&e)).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let low = rolls.iter().filter(|r| **r < 0.5).count();
        assert!((350..650).contains(&low), "{low}");
    }
}
