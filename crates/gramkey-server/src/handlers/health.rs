//! Probes for load balancers and orchestrators.
//!
//! - `GET /healthz` (liveness): the process answers HTTP. It asks nothing else, so a database
//!   outage does not get every node restarted.
//! - `GET /readyz` (readiness): the store can be read and written, and the rate limiter's
//!   backend (Redis, when configured) answers; each within [`PROBE_TIMEOUT`]. 200 when both
//!   do, else 503 naming what failed (the cause is logged, not shown), so a balancer sends
//!   traffic elsewhere meanwhile.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;
use crate::wire::no_store;

/// How long each dependency may take to answer a readiness probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Response {
    no_store(Json(json!({"status": "ok"})).into_response())
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (store, limiter) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.ops.store.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.limiter.ping()),
    );
    let store = match store {
        Ok(Ok(())) => Ok("database"),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("did not answer in time".to_owned()),
    };
    let limiter = match limiter {
        Ok(Ok(kind)) => Ok(kind),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("did not answer in time".to_owned()),
    };
    let ready = store.is_ok() && limiter.is_ok();
    if !ready {
        tracing::warn!(store = ?store, limiter = ?limiter, "not ready");
    }
    let show = |r: Result<&str, String>| match r {
        Ok(kind) => json!({"ok": true, "kind": kind}),
        Err(_) => json!({"ok": false}),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "store": show(store),
        "limiter": show(limiter),
    });
    no_store((status, Json(body)).into_response())
}
