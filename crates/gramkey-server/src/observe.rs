//! What every request carries and leaves behind.
//!
//! [`observe`] wraps every request. It gives the handlers a [`RequestCtx`] (the client's
//! address and user agent, for the audit log and alerts; a place for the rate limiter to leave
//! the request's standing) through a task-local, so no handler threads it through. When the
//! response is ready it adds `X-App-Usage` (and for legacy v1 `X-Ratelimit-*`, and
//! `Retry-After` on a refusal), charges the app with the wall-clock and CPU time the request
//! took, and counts the request for metrics and app insights.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::limits::Standing;
use crate::state::AppState;

tokio::task_local! {
    static CTX: Arc<RequestCtx>;
}

/// The error code a response carried (Graph's code, or legacy v1's `meta.code`), for insights.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub u32);

/// The current request's context, outside of a request (the CLI, background tasks) `None`.
pub fn current() -> Option<Arc<RequestCtx>> {
    CTX.try_with(Arc::clone).ok()
}

#[derive(Debug, Default)]
pub struct RequestCtx {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    marks: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    standing: Option<Standing>,
    retry_after: Option<i64>,
    route: Option<String>,
    throttled: bool,
    actor: Option<(gramkey_domain::UserId, String)>,
}

impl RequestCtx {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// The signed-in person acting through a page, for the audit log.
    pub fn set_actor(&self, user: gramkey_domain::UserId, username: &str) {
        self.marks().actor = Some((user, username.to_owned()));
    }
    pub fn actor(&self) -> Option<(gramkey_domain::UserId, String)> {
        self.marks().actor.clone()
    }
    pub fn set_standing(&self, standing: Standing) {
        self.marks().standing = Some(standing);
    }
    /// A rate limit refused the request: answer with `Retry-After`.
    pub fn throttled(&self, retry_after: i64) {
        let mut m = self.marks();
        m.retry_after = Some(retry_after.max(1));
        m.throttled = true;
    }
    /// The route template for metrics, where the router cannot tell (the Graph fallback).
    pub fn set_route(&self, route: String) {
        self.marks().route = Some(route);
    }
}

/// Sets the route label from the matched route (a `route_layer`, so it runs after routing).
pub async fn mark_route(req: Request, next: Next) -> Response {
    if let (Some(ctx), Some(path)) = (current(), req.extensions().get::<MatchedPath>()) {
        ctx.set_route(path.as_str().to_owned());
    }
    next.run(req).await
}

/// The client's address: the connection's peer, or with `--trust-forwarded-for` the last
/// address of `X-Forwarded-For`: the one the proxy in front of us appended. Earlier ones were
/// sent by the client and prove nothing.
fn client_ip(state: &AppState, req: &Request) -> Option<IpAddr> {
    if state.config.trust_forwarded_for {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    let ctx = Arc::new(RequestCtx {
        ip: client_ip(&state, &req),
        user_agent,
        marks: Mutex::default(),
    });
    let method = req.method().clone();
    // Elapsed time for the wall-time budget and metrics, not a point in time: monotonic.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let (mut resp, cpu) = CTX.scope(ctx.clone(), CpuTimed::new(next.run(req))).await;
    let wall = start.elapsed();
    let marks = std::mem::take(&mut *ctx.marks());
    let wall_us = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
    let cpu_us = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX);
    let headers = resp.headers_mut();
    if let Some(standing) = &marks.standing {
        let (name, value) = standing.usage_header(wall_us, cpu_us, marks.retry_after);
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
        if let Some((limit, left)) = standing.legacy {
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(left));
        }
        if let Some(app) = standing.app_id.clone() {
            state.limiter.spent(&app, wall_us, cpu_us);
            let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
            state.usage.record(
                &standing.app_id,
                standing.user_id,
                state.ops.clock.now(),
                code,
                marks.throttled,
                gramkey_domain::ratelimit::percent(standing.calls.0, standing.calls.1),
            );
        }
    }
    if let Some(secs) = marks.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    // Methods are a fixed set in the labels: anything else is "other".
    let method = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    state.metrics.request(
        marks.route.unwrap_or_else(|| "unmatched".to_owned()),
        method,
        resp.status().as_u16(),
        wall.as_secs_f64(),
    );
    resp
}

/// A future that adds up the CPU time of the thread polling it, poll by poll: the CPU time a
/// request's own work took, not its waits (the store's writer thread is not counted).
struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

impl<F> CpuTimed<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = cpu_time::ThreadTime::try_now().ok();
        let polled = self.inner.as_mut().poll(cx);
        if let Some(start) = start {
            self.spent += start.elapsed();
        }
        match polled {
            Poll::Ready(v) => Poll::Ready((v, self.spent)),
            Poll::Pending => Poll::Pending,
        }
    }
}
