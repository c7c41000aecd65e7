//! What every request carries and leaves behind.
//!
//! [`observe`] wraps every request. It puts the request's [`Origin`] (the client's address and
//! user agent) in the request's extensions, where handlers take it as an extractor and pass it
//! on explicitly. When the response is ready it reads what the handler left in the response's
//! extensions: a [`LimitHeaders`] adds `X-App-Usage` (and for legacy v1 `X-Ratelimit-*`) and
//! `Retry-After`, a [`Route`] or the matched route names the request in metrics, and an
//! [`ErrorCode`] counts for app insights. It charges the app with the wall-clock and CPU time
//! the request took.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};

use crate::limits::Standing;
use crate::origin::Origin;
use crate::state::AppState;

/// The error code a response carried (Graph's code, or legacy v1's `meta.code`), for insights.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub u32);

/// The metrics label of a request the router cannot name (the Graph fallback): its shape,
/// never its ids. A response extension.
#[derive(Debug, Clone)]
pub struct Route(pub Cow<'static, str>);

/// Where a request stands against its limits, for its response: the standing of a charged
/// resource call (for the usage headers), and the wait when a limit refused it (for
/// `Retry-After`). Handlers return it as a response part: `(limits, response)`.
#[derive(Debug, Clone, Default)]
pub struct LimitHeaders {
    pub standing: Option<Standing>,
    /// Seconds until the refusing limit lets the request through.
    pub retry_after: Option<i64>,
    /// The admitted call, for what happens after it.
    pub admitted: Option<Admitted>,
}

impl LimitHeaders {
    /// A refusal by a throttle, which charges nothing: only the wait.
    pub fn wait(secs: i64) -> Self {
        LimitHeaders {
            retry_after: Some(secs),
            ..Self::default()
        }
    }
}

/// A resource call of a development-mode app past authentication: its app's clock (usage
/// hours are the app's) and what its call log notes. Live apps' calls carry none.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub app: gramkey_domain::AppId,
    /// Seconds the app's clock is ahead of real time.
    pub offset: i64,
    pub token_id: Option<i64>,
    /// The fault injected into the call, if one was.
    pub fault: Option<&'static str>,
    /// An injected timeout: the connection is closed without an answer.
    pub abort: bool,
}

impl IntoResponseParts for LimitHeaders {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// Names the request in metrics by its matched route (a `route_layer`, so it runs after
/// routing), unless the handler named it.
pub async fn mark_route(req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Route(Cow::Owned(p.as_str().to_owned())));
    let mut resp = next.run(req).await;
    if let Some(route) = matched
        && resp.extensions().get::<Route>().is_none()
    {
        resp.extensions_mut().insert(route);
    }
    resp
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

/// Runs `run` on the request, and does what every answer needs (see the module's text).
pub async fn observe<F, Fut>(state: &AppState, mut req: Request, run: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let origin = Origin {
        ip: client_ip(state, &req),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        actor: None,
    };
    req.extensions_mut().insert(origin);
    let method = req.method().clone();
    // Elapsed time for the wall-time budget and metrics, not a point in time: monotonic.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let (mut resp, cpu) = CpuTimed::new(std::pin::pin!(run(req))).await;
    let wall = start.elapsed();
    let budget = resp
        .extensions_mut()
        .remove::<LimitHeaders>()
        .unwrap_or_default();
    // A wait is at least a second: `Retry-After: 0` would invite a retry that is refused.
    let retry_after = budget.retry_after.map(|s| s.max(1));
    let wall_us = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
    let cpu_us = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX);
    let offset = budget.admitted.as_ref().map_or(0, |a| a.offset);
    let headers = resp.headers_mut();
    if let Some(standing) = &budget.standing {
        let (name, value) = standing.usage_header(wall_us, cpu_us, retry_after);
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
                state.ops.clock.now() + offset,
                code,
                retry_after.is_some(),
                gramkey_domain::ratelimit::percent(standing.calls.0, standing.calls.1),
            );
        }
    }
    if let Some(secs) = retry_after {
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
    let route = resp
        .extensions()
        .get::<Route>()
        .map_or(Cow::Borrowed("unmatched"), |r| r.0.clone());
    // As tower-http's `TraceLayer` logged them: every answer at debug, a server error or an
    // injected timeout (the connection closed, no answer) as one.
    let status = resp.status().as_u16();
    let abort = budget.admitted.as_ref().is_some_and(|a| a.abort);
    if resp.status().is_server_error() || abort {
        tracing::error!(
            status,
            aborted = abort,
            latency_us = wall_us,
            "response failed"
        );
    } else {
        tracing::debug!(status, latency_us = wall_us, "finished processing request");
    }
    if let Some(admitted) = budget.admitted {
        let real = state.ops.clock.now();
        let call = crate::call_log::Call {
            seq: 0,
            time: real,
            app_time: real + admitted.offset,
            method: method.to_owned(),
            route: route.to_string(),
            status: if admitted.abort { 0 } else { status },
            error_code: resp.extensions().get::<ErrorCode>().map(|c| c.0),
            latency_ms: wall.as_secs_f64() * 1000.0,
            token_id: admitted.token_id,
            fault: admitted.fault,
            node: String::new(),
        };
        state.calls.record(&admitted.app, call);
        if admitted.abort {
            resp = aborted();
        }
    }
    state
        .metrics
        .request(route, method, resp.status().as_u16(), wall.as_secs_f64());
    resp
}

/// A response that never completes: its body fails at once, so the server drops the
/// connection (an injected timeout, after its hold).
fn aborted() -> Response {
    struct Closed;
    impl tokio::io::AsyncRead for Closed {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::Error::other(
                "connection closed by a test fault",
            )))
        }
    }
    let body = tokio_util::io::ReaderStream::new(Closed);
    let mut resp = Response::new(axum::body::Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A future that adds up the time spent polling it: the CPU time a request's own work took,
/// not its waits (the store's writer thread is not counted).
///
/// Each poll is timed with the monotonic clock, which the vDSO answers in nanoseconds. The
/// thread's own CPU clock (`CLOCK_THREAD_CPUTIME_ID`) is a system call: two per poll took
/// 5 % of a node's CPU under load (BENCHMARKS.md). The difference: a poll during which the
/// system runs another thread counts in full.
///
/// It polls a future pinned where the caller awaits it, rather than boxing it: a request's
/// future is large, and a box cost an allocation and a copy of it per request.
struct CpuTimed<'a, F> {
    inner: Pin<&'a mut F>,
    spent: Duration,
}

impl<'a, F> CpuTimed<'a, F> {
    fn new(inner: Pin<&'a mut F>) -> Self {
        Self {
            inner,
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<'_, F> {
    type Output = (F::Output, Duration);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Elapsed time, not a point in time: monotonic.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += start.elapsed();
        match polled {
            Poll::Ready(v) => Poll::Ready((v, self.spent)),
            Poll::Pending => Poll::Pending,
        }
    }
}
