//! Every route gramkey serves, in one place.

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::{OriginalUri, Path};
use axum::http::{Request, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::handler::Handler;
use axum::http::HeaderValue;
use axum::http::{HeaderName, header};
use std::convert::Infallible;
use std::future::Future;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use std::collections::HashMap;

use crate::handlers::QueryPairs;
use crate::handlers::me::is_graph_version;
use crate::handlers::{
    account, admin, authorize, console, dashboard, debug, device, graph, health, legacy, lifecycle,
    me, rfc, sandbox, token,
};
use crate::observe;
use crate::state::AppState;
use crate::wire::graph::{GraphResponse, unknown_path};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use gramkey_domain::error::GraphError;

/// The server as one service: [`routes`] inside the layers every request passes, in order:
/// the request's id ([`RequestIds::assign`]), the body limit, then [`Front`] (the request's
/// span, its origin, its checks before routing, what its answer leaves behind, and the id
/// echoed on it).
///
/// These wrap the router once rather than through `Router::layer`, which would layer each
/// route and the fallback separately: axum clones a route's boxed service per request, so each
/// router-wide layer cost every request a clone of the stack below it and a boxed future
/// (BENCHMARKS.md, "where `GET /me` time goes").
pub fn router(
    state: AppState,
) -> impl Service<
    Request<Body>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .map_request({
            let ids = RequestIds::new(&state);
            move |req| ids.assign(req)
        })
        .layer(DefaultBodyLimit::max(crate::handlers::form::BODY_LIMIT))
        .service(Front {
            routes: routes(state.clone()),
            state,
        })
}

/// The request's span. Its fields are read only when the span is enabled (`GRAMKEY_LOG`).
/// Spans carry the path only: query strings can hold tokens and codes.
fn request_span(req: &Request<Body>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
    )
}

/// Every route, with the layers that are theirs alone.
fn routes(state: AppState) -> Router {
    let cors = graph_cors();
    let graph = Router::new()
        // User, media, comments and publishing (wire protocol §4) are read by the fallback,
        // `graph::dispatch`; this one is a fixed route.
        .route("/me/permissions", delete(me::remove_app))
        // Long-lived tokens (§3).
        .route("/access_token", get(lifecycle::exchange))
        .route("/refresh_access_token", get(lifecycle::refresh))
        // Token debugging (§7).
        .route("/debug_token", get(debug::debug_token))
        .layer(cors.clone());
    // Legacy v1 (wire protocol §4). Its official clients add `.json` to every path (§11): the
    // routes ending in an id take it there (`legacy::bare`), the others have a twin.
    let legacy = Router::new()
        .route("/v1/users/{id}", get(legacy::user))
        .route("/v1/users/{id}/media/recent", get(legacy::recent_media))
        .route(
            "/v1/users/{id}/media/recent.json",
            get(legacy::recent_media),
        )
        .route("/v1/media/{id}", get(legacy::media))
        .route("/v1/media/{id}/comments", get(legacy::comments))
        .route("/v1/media/{id}/comments.json", get(legacy::comments))
        .route("/v1/{*rest}", axum::routing::any(legacy::unknown))
        .layer(cors.clone());
    Router::new()
        // Pages.
        .route("/", get(sandbox::home))
        .route("/static/gramkey.css", get(sandbox::stylesheet))
        .merge(site())
        // OAuth (wire protocol §1, §2).
        .route("/oauth/authorize", get(authorize::get))
        // The form the v1 documentation wrote, and its official clients built (§11).
        .route("/oauth/authorize/", get(authorize::get))
        .route("/oauth/authorize/login", post(authorize::login))
        .route("/oauth/authorize/consent", post(authorize::consent))
        .route("/oauth/access_token", post(token::post).get(token::get))
        // Standard OAuth endpoints (RFC 7009, 7662, 8414).
        .route("/oauth/revoke", post(rfc::revoke))
        .route("/oauth/device/code", post(rfc::device_code))
        .route("/oauth/introspect", post(rfc::introspect))
        .route(
            "/.well-known/oauth-authorization-server",
            get(rfc::metadata),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        // The Graph host's endpoints, bare and under a `/vNN.N` version prefix.
        .merge(graph.clone())
        .nest(
            "/{version}",
            graph.route_layer(middleware::from_fn(graph_version)),
        )
        // Admin API.
        .route("/admin/apps", get(admin::list_apps).post(admin::create_app))
        .route(
            "/admin/apps/{id}",
            get(admin::show_app)
                .delete(admin::delete_app)
                .patch(admin::update_app),
        )
        .route("/admin/apps/{id}/rotate-secret", post(admin::rotate_secret))
        .route("/admin/apps/{id}/roles", post(admin::set_role))
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route(
            "/admin/users/{username}/apps/{id}",
            axum::routing::delete(admin::remove_user_app),
        )
        .route("/admin/callbacks", get(admin::list_callbacks))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/users/{username}/unlock", post(admin::unlock_user))
        .route("/admin/addresses/{ip}/unlock", post(admin::unlock_address))
        .route("/metrics", get(admin::metrics))
        .route("/admin/callbacks/{id}/retry", post(admin::retry_callback))
        .route("/admin/webhooks", get(admin::list_webhooks))
        .route("/admin/webhooks/{id}/retry", post(admin::retry_webhook))
        .route("/admin/apps/{id}/webhooks/test", post(admin::test_webhook))
        .route("/admin/{*rest}", axum::routing::any(admin::not_found))
        .merge(legacy)
        // Sandbox.
        .route(
            crate::sandbox::SANDBOX_CALLBACK_PATH,
            get(sandbox::callback),
        )
        .route("/sandbox/media/{file}", get(sandbox::media_image))
        .route_layer(middleware::from_fn(observe::mark_route))
        // Layered once here: `Handler::layer` would build the CORS service on every call.
        .fallback_service(cors.layer(graph::dispatch.with_state(state.clone())))
        .method_not_allowed_fallback(unsupported_method)
        .with_state(state)
}

/// Browser widgets call the Graph host from pages on other origins, and Instagram answered
/// them with `Access-Control-Allow-Origin: *` (wire protocol §11). Only the Graph host's
/// resources and legacy v1 get this; the OAuth endpoints, the admin API and the site's pages
/// do not. No credentials: tokens travel in the query or the `Authorization` header.
fn graph_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            HeaderName::from_static("x-app-usage"),
            HeaderName::from_static("x-business-use-case-usage"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600))
        // Nothing in these answers depends on the request's origin or its preflight headers
        // (any origin, fixed lists), so no `Vary`: it would only cost every answer three
        // header values.
        .vary([])
}

/// The site's own pages: sign-in, a person's settings, the developer dashboard, the admin
/// console. Their forms post only to this site, and their CSP says so (`form-action 'self'`);
/// the authorize flow's forms cannot, since consent ends in a redirect to the app.
fn site() -> Router<AppState> {
    Router::new()
        .route(
            "/accounts/login/",
            get(account::login_form).post(account::login),
        )
        .route("/accounts/logout/", post(account::logout))
        // The device flow's page (RFC 8628 §3.3).
        .route("/device", get(device::form).post(device::post))
        .route("/accounts/manage_access/", get(account::manage_access))
        .route(
            "/accounts/manage_access/{app}/remove",
            post(account::remove),
        )
        .route(
            "/accounts/manage_access/{app}/delete_data",
            post(account::delete_data),
        )
        .route("/accounts/invitations/", get(account::invitations))
        .route("/accounts/invitations/{app}", post(account::answer))
        .route(
            "/accounts/password/change/",
            get(account::password_form).post(account::change_password),
        )
        .route(
            "/developers/apps/",
            get(dashboard::apps).post(dashboard::create),
        )
        .route("/developers/apps/{id}/", get(dashboard::show))
        .route("/developers/apps/{id}/settings", post(dashboard::save))
        .route("/developers/apps/{id}/secret", post(dashboard::rotate))
        .route("/developers/apps/{id}/invitations", post(dashboard::invite))
        .route(
            "/developers/apps/{id}/webhooks/test",
            post(dashboard::test_webhook),
        )
        .route(
            "/developers/apps/{id}/members/remove",
            post(dashboard::remove_member),
        )
        .route("/developers/apps/{id}/delete", post(dashboard::delete))
        .route(
            "/developers/apps/{id}/test_clock",
            post(dashboard::test_clock),
        )
        .route(
            "/developers/apps/{id}/test_faults",
            post(dashboard::test_faults),
        )
        .route(
            "/console/login",
            get(console::login_form).post(console::login),
        )
        .route("/console/audit", get(console::audit))
        .route("/console/apps", get(console::apps))
        .route("/console/users", get(console::users))
        // The same pages without their trailing slash, as people type them.
        .route("/accounts/login", get(sandbox::with_slash))
        .route("/accounts/manage_access", get(sandbox::with_slash))
        .route("/accounts/invitations", get(sandbox::with_slash))
        .route("/accounts/password/change", get(sandbox::with_slash))
        .route("/developers/apps", get(sandbox::with_slash))
        .route("/developers/apps/{id}", get(sandbox::with_slash))
        .route(
            "/console",
            get(|| async { crate::web::see_other("/console/audit") }),
        )
        // Anything else under the site's sections is a page that does not exist, as a page.
        .route("/accounts/{*rest}", axum::routing::any(page_not_found))
        .route("/developers/{*rest}", axum::routing::any(page_not_found))
        .route("/console/{*rest}", axum::routing::any(page_not_found))
        .layer(middleware::map_response(form_action_self))
}

async fn form_action_self(mut resp: Response) -> Response {
    let csp = axum::http::header::CONTENT_SECURITY_POLICY;
    let tightened = resp
        .headers()
        .get(&csp)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("{v}; form-action 'self'"))
        .and_then(|v| HeaderValue::from_str(&v).ok());
    if let Some(v) = tightened {
        resp.headers_mut().insert(csp, v);
    }
    resp
}

/// The request id header: set on every request before its span, echoed on its answer.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random per-process prefix and a counter (`3fa9c1d2-42`). Unique across nodes
/// without costing a random draw per request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new(state: &AppState) -> Self {
        let prefix = gramkey_domain::entropy::random_hex(&*state.ops.entropy, 8);
        Self {
            prefix: prefix.into(),
            next: Arc::default(),
        }
    }

    /// Gives the request its id. A client's own `X-Request-Id` is kept only if it is a short
    /// token of safe characters ([`gramkey_domain::text::safe_request_id`]); anything else is
    /// replaced by a new one, so a client cannot forge or flood log lines through it.
    fn assign(&self, mut req: Request<Body>) -> Request<Body> {
        let safe = req
            .headers()
            .get(&X_REQUEST_ID)
            .is_some_and(|v| v.to_str().is_ok_and(gramkey_domain::text::safe_request_id));
        if !safe {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let mut digits = itoa::Buffer::new();
            let n = digits.format(n);
            let mut id = String::with_capacity(self.prefix.len() + 1 + n.len());
            id.push_str(&self.prefix);
            id.push('-');
            id.push_str(n);
            match HeaderValue::from_str(&id) {
                Ok(id) => req.headers_mut().insert(X_REQUEST_ID, id),
                Err(_) => req.headers_mut().remove(&X_REQUEST_ID),
            };
        }
        req
    }
}

/// The longest request target and the most header bytes a request may have. hyper itself
/// refuses only far larger heads (64 KiB targets, about 400 KiB of headers) and answers those
/// with an empty body; below that, these answer in Graph's shape.
const MAX_TARGET: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What every request passes before routing, around the router, in its span: [`observe::observe`]
/// around the checks of its head's size, then its query's text; and its id echoed on the answer.
///
/// A service of its own rather than `middleware::from_fn`, which per request clones the boxed
/// service it wraps and boxes two futures: here the router (an `Arc`) is cloned and one
/// future boxed. The span is entered here, not by tower-http's `TraceLayer`, which timed each
/// request and wrapped its body a second time (`observe` already times it and logs the end).
#[derive(Clone)]
struct Front {
    state: AppState,
    routes: Router,
}

impl Service<Request<Body>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // The router is always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (state, routes) = (self.state.clone(), self.routes.clone());
        let span = request_span(&req);
        Box::pin(
            async move {
                let id = req.headers().get(&X_REQUEST_ID).cloned();
                let mut resp = observe::observe(&state, req, |req| async move {
                    match head_size(&req).or_else(|| plain_text_query(&req)) {
                        Some(refusal) => refusal,
                        None => match tower::ServiceExt::oneshot(routes, req).await {
                            Ok(resp) => resp,
                            Err(never) => match never {},
                        },
                    }
                })
                .await;
                if let Some(id) = id {
                    resp.headers_mut().insert(X_REQUEST_ID, id);
                }
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

fn head_size(req: &Request<Body>) -> Option<Response> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let (status, why) = if target > MAX_TARGET {
        (
            StatusCode::URI_TOO_LONG,
            format!("The request URI is longer than {MAX_TARGET} bytes"),
        )
    } else if headers > MAX_HEADER_BYTES {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("The request headers are larger than {MAX_HEADER_BYTES} bytes"),
        )
    } else {
        return None;
    };
    let mut resp = GraphResponse::from(GraphError::invalid_parameter(why)).into_response();
    *resp.status_mut() = status;
    Some(resp)
}

/// A query string whose names or values hold control characters ([`gramkey_domain::text`]) is
/// refused before any handler sees it: in legacy v1's envelope on `/v1`, as Graph's code 100
/// elsewhere; so is a v1 query that repeats a parameter other than `sig`. Bodies are checked where they are parsed (`FormFields`, the pages' forms, the
/// admin API's JSON).
fn plain_text_query(req: &Request<Body>) -> Option<Response> {
    let legacy = req.uri().path().starts_with("/v1/");
    // A control character can only arrive percent-encoded (a URI cannot carry one raw), so a
    // query without `%` needs no decoding unless v1's repeats are to be counted.
    let query = req.uri().query().filter(|q| legacy || q.contains('%'));
    if let Some(query) = query {
        let pairs: Vec<_> = QueryPairs::borrowed(Some(query)).collect();
        let checked = gramkey_domain::text::check_pairs(pairs.iter().map(|(k, v)| (&**k, &**v)));
        if let Err(why) = checked {
            if legacy {
                return Some(crate::handlers::legacy::refused(why));
            }
            return Some(GraphResponse::from(GraphError::invalid_parameter(why)).into_response());
        }
        // One rule for repeated parameters: Graph refuses them (in `graph::dispatch`, where
        // query and form meet), and so does legacy v1, whose handlers read only the query;
        // except v1's `sig`, which python-instagram sends twice and v1 took (any may match).
        if legacy {
            let mut names: Vec<&str> = pairs
                .iter()
                .map(|(k, _)| &**k)
                .filter(|k| *k != "sig")
                .collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Some(crate::handlers::legacy::refused(format!(
                    "Parameter {} was given more than once",
                    w[0]
                )));
            }
        }
    }
    None
}

/// Only `vNN.N` is a version; `/anything/me` is an unknown path, as on Graph.
async fn graph_version(
    Path(params): Path<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
    req: Request<Body>,
    next: Next,
) -> Response {
    match params.get("version") {
        Some(v) if is_graph_version(v) => next.run(req).await,
        _ => unknown_path(uri.path()),
    }
}

/// The site's sections, whose errors are pages, not Graph JSON.
fn is_page_path(path: &str) -> bool {
    [
        "/accounts/",
        "/developers/",
        "/console/",
        "/oauth/authorize",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

async fn page_not_found() -> Response {
    crate::pages::error(
        axum::http::StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address. Check the link, or start from the home page.",
    )
}

/// A known path with a method it does not take: a page for the site's pages, otherwise as
/// Graph answers.
async fn unsupported_method(method: Method, uri: Uri) -> Response {
    if is_page_path(uri.path()) {
        return crate::pages::error(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "This address is for a form",
            "It is used by a button on another page; open the page and use its button instead.",
        );
    }
    GraphResponse::from(GraphError::not_found(
        uri.path(),
        &method.as_str().to_ascii_lowercase(),
    ))
    .into_response()
}
