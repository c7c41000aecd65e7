//! The Graph API's nodes and edges (wire protocol §4): `/me`, `/{id}` and `/{id}/{edge}`, with
//! an optional `/vNN.N` prefix, for GET, POST and DELETE.
//!
//! Graph paths are a grammar (node, then edge) rather than a fixed list, so they are read here:
//! every path the router does not know comes to [`dispatch`]. An id resolves only to what the
//! token's user owns: their app-scoped user id, their media and its comments, and the containers
//! this app made for them. Anything else (another app's id for the same person, another user's
//! media, a made-up number) gets Graph's one "does not exist, cannot be loaded due to missing
//! permissions, or does not support this operation" answer, so ids leak nothing.

mod comments;
mod expand;
mod ids;
mod insights;
mod paging;
mod publish;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gramkey_domain::error::GraphError;
use gramkey_domain::graph::access::{Need, Node};
use gramkey_domain::graph::comment::check_reply_target;
use gramkey_domain::graph::fields::Field;
use gramkey_domain::graph::paging::{PageRequest, valid_id};
use gramkey_domain::{CommentId, Flavour, ScopedUserId};
use gramkey_store::{Comment, CommentsOf, Container, Media, TokenRecord, User};
use serde_json::Value;

use comments::{add_comment, delete_comment};
use expand::{children_edge, comment_node, media_node, requested, user_node};
use ids::resolve;
use paging::{Listing, comments_edge, media_edge, page_request};
use publish::{create_container, publish, publishing_limit};

use super::form::FormFields;
use super::me::{admit, authenticate, bearer, is_graph_version};
use crate::handlers::QueryPairs;
use crate::observe::{LimitHeaders, Route};
use crate::origin::Origin;
use crate::state::AppState;
use crate::wire::graph::{GraphResponse, unknown_path};
use crate::wire::nodes;
use gramkey_domain::ratelimit::CallClass;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, GraphResponse>> + Send + 'a>>;

/// The request's parameters: the query string, and for POST the form body too. A name given
/// twice, in either or across both, is refused. The query's are borrowed from the request's
/// target unless they had to be decoded.
struct Params<'q>(Vec<(Cow<'q, str>, Cow<'q, str>)>);

impl Params<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| &**v)
    }

    /// The parameters as owned pairs, for what takes them so.
    fn owned(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Everything an operation needs: who is calling, and how to build links back to this server.
struct Ctx<'a> {
    state: &'a AppState,
    token: std::sync::Arc<TokenRecord>,
    user: std::sync::Arc<User>,
    scoped: ScopedUserId,
    /// The version prefix the request used (`v21.0`), which links back keep.
    prefix: Option<&'a str>,
    /// The major API version of the path (`/v21.0/…` → 21), the newest without one.
    version: u32,
    /// The access token, when the client sent it in the query: links carry it on, as Graph's do.
    query_token: Option<String>,
    params: &'a Params<'a>,
    /// The app's time when the call was authenticated.
    now: i64,
}

impl Ctx<'_> {
    fn flavour(&self) -> Flavour {
        self.token.flavour
    }
    fn need(&self, need: Need) -> Result<(), GraphError> {
        need.check(&self.token.scopes, self.flavour())
    }
    /// The app's time (its test clock, in development mode).
    fn now(&self) -> i64 {
        self.now
    }
    /// `public_url` plus the version prefix the request used, for `next` / `previous`.
    fn base(&self) -> String {
        let public = &self.state.config.public_url;
        match self.prefix {
            Some(v) => format!("{public}/{v}"),
            None => public.clone(),
        }
    }
    fn store(&self) -> &dyn gramkey_store::Store {
        &*self.state.ops.store
    }
    fn publisher(&self) -> crate::publishing::Publisher<'_> {
        crate::publishing::Publisher {
            app: &self.token.app_id,
            user: self.user.id,
            now: self.now,
        }
    }
}

/// The request's own listing of an edge.
fn top_listing<'a>(path: &'a str, req: &'a PageRequest, sub: &'a [Field]) -> Listing<'a> {
    Listing {
        path,
        req,
        sub,
        top_level: true,
    }
}

/// What a path's first segment names.
enum Target {
    User,
    Media(Media),
    Comment(Comment),
    Container(Container),
}

/// The fallback of the router: every Graph path that is not a fixed route.
pub async fn dispatch(State(state): State<AppState>, origin: Origin, req: Request) -> Response {
    // The target, kept apart from the request (the form reads its body): a reference count.
    let uri = req.uri().clone();
    let path = uri.path();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let version = match segments.first() {
        Some(v) if is_graph_version(v) => Some(segments.remove(0)),
        // `v21/me`, `x1.0/me`: a version that is not `vNN.N` is an unknown path, as on Graph.
        Some(v)
            if v.contains('.')
                || (v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit())) =>
        {
            return unknown_path(path);
        }
        _ => None,
    };
    if segments.is_empty() || segments.len() > 2 {
        return unknown_path(path);
    }
    if segments[0] != "me" && !valid_id(segments[0]) {
        return GraphResponse::from(GraphError::unknown_alias(segments[0])).into_response();
    }
    let label = Route(route_label(&segments));
    let method = req.method().clone();
    let mut pairs: Vec<(Cow<str>, Cow<str>)> = QueryPairs::borrowed(uri.query()).collect();
    // The access token, when the client sent it in the query: links carry it on, as Graph's do.
    let query_token = pairs
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.to_string());
    let headers = if method == Method::POST {
        let headers = req.headers().clone();
        match FormFields::read(req, &state).await {
            Ok(form) => {
                pairs.extend(form.0.into_iter().map(|(k, v)| (k.into(), v.into())));
                headers
            }
            Err(e) => {
                let mut answer = GraphResponse::from(GraphError::invalid_parameter(e.to_string()))
                    .into_response();
                *answer.status_mut() = e.status();
                return (Extension(label), answer).into_response();
            }
        }
    } else {
        req.into_parts().0.headers
    };
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| &**k).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        let refusal = GraphResponse::from(GraphError::invalid_parameter(format!(
            "Parameter {} was given more than once",
            w[0]
        )));
        return (Extension(label), refusal).into_response();
    }
    let params = Params(pairs);
    let mut flavour = None;
    let mut limits = LimitHeaders::default();
    let result = async {
        let caller =
            authenticate(&state, &origin, bearer(&headers, &params.0)?, &mut limits).await?;
        flavour = Some(caller.flavour());
        let class = if method == Method::GET {
            CallClass::Read
        } else {
            CallClass::Write
        };
        if caller.is_app() {
            // Insights are not charged, so an app can read them while it is throttled.
            return match (segments.get(1).copied(), &method) {
                (Some("insights"), &Method::GET) => {
                    let app = (caller.app_id(), caller.now);
                    let params = params.owned();
                    super::insights::app_insights(&state, app, segments[0], &params).await
                }
                // The sandbox's tools are not charged either: a fault can always be cleared.
                (Some(edge), m) if super::test_tools::is_tool(edge) => {
                    super::test_tools::app_tool(
                        &state,
                        &origin,
                        &caller,
                        (segments[0], edge, m.as_str()),
                        &params.owned(),
                    )
                    .await
                }
                (Some("subscriptions"), m) => {
                    let app = caller.app_id();
                    super::webhooks::app_subscriptions(
                        &state,
                        &origin,
                        app,
                        segments[0],
                        m.as_str(),
                        &params.owned(),
                    )
                    .await
                }
                _ => Err(GraphError::missing_token().into()),
            };
        }
        let verdict;
        (limits, verdict) = admit(&state, &origin, &caller, class, (method.as_str(), path)).await;
        verdict?;
        let now = caller.now;
        let user = caller.user().cloned();
        let token = caller
            .into_user_token()
            .ok_or_else(GraphError::invalid_token)?;
        let (Some(user), Some(scoped)) = (user, token.scoped_id.clone()) else {
            return Err(GraphError::invalid_token().into());
        };
        let ctx = Ctx {
            state: &state,
            token,
            user,
            scoped,
            prefix: version,
            version: gramkey_domain::graph::metrics::major(version),
            query_token,
            params: &params,
            now,
        };
        route(&ctx, &method, segments[0], segments.get(1).copied()).await
    }
    .await;
    let response = match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => match flavour {
            Some(f) => e.in_flavour(f),
            None => e,
        }
        .into_response(),
    };
    (limits, Extension(label), response).into_response()
}

/// The metrics label of a Graph path: its shape, never its ids.
fn route_label(segments: &[&str]) -> Cow<'static, str> {
    const EDGES: [&str; 12] = [
        "test_clock",
        "test_faults",
        "test_log",
        "subscriptions",
        "subscribed_apps",
        "media",
        "children",
        "comments",
        "replies",
        "media_publish",
        "content_publishing_limit",
        "insights",
    ];
    let node = if segments[0] == "me" { "/me" } else { "/{id}" };
    match segments.get(1) {
        None => Cow::Borrowed(node),
        Some(e) if EDGES.contains(e) => Cow::Owned(format!("{node}/{e}")),
        Some(_) => Cow::Owned(format!("{node}/{{edge}}")),
    }
}

async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    node: &str,
    edge: Option<&str>,
) -> Result<Value, GraphResponse> {
    let target = resolve(ctx, node, method).await?;
    let unsupported = || GraphError::not_found(node, &method.as_str().to_ascii_lowercase());
    match (method.as_str(), &target, edge) {
        ("GET", Target::User, None) => user_node(ctx, &requested(ctx, Node::User)?).await,
        ("GET", Target::User, Some("media")) => {
            ctx.need(Need::Media)?;
            let sub = requested(ctx, Node::Media)?;
            let page = page_request(ctx)?;
            let path = format!("/{node}/media");
            media_edge(ctx, &top_listing(&path, &page, &sub)).await
        }
        ("POST", Target::User, Some("media")) => create_container(ctx).await,
        ("POST", Target::User, Some("media_publish")) => publish(ctx).await,
        ("GET", Target::User, Some("content_publishing_limit")) => publishing_limit(ctx).await,
        ("GET", Target::User, Some("insights")) => insights::account_insights(ctx).await,
        ("GET", Target::Media(m), Some("insights")) => insights::media_insights(ctx, m).await,
        ("GET" | "POST" | "DELETE", Target::User, Some("subscribed_apps")) => {
            let who = super::webhooks::Subscriber {
                state: ctx.state,
                app: &ctx.token.app_id,
                user: ctx.user.id,
                flavour: ctx.flavour(),
                scopes: &ctx.token.scopes,
            };
            let params = ctx.params.owned();
            super::webhooks::subscribed_apps(who, node, method.as_str(), &params).await
        }
        ("GET", Target::Media(m), None) => media_node(ctx, m, &requested(ctx, Node::Media)?).await,
        ("GET", Target::Media(m), Some("children")) => {
            ctx.need(Need::Media)?;
            let sub = requested(ctx, Node::Media)?;
            children_edge(ctx, m, &sub).await
        }
        ("GET", Target::Media(m), Some("comments")) => {
            ctx.need(Need::Comments)?;
            let sub = requested(ctx, Node::Comment)?;
            let page = page_request(ctx)?;
            let path = format!("/{}/comments", m.id);
            comments_edge(
                ctx,
                CommentsOf::Media(&m.id),
                &top_listing(&path, &page, &sub),
            )
            .await
        }
        ("POST", Target::Media(m), Some("comments")) => add_comment(ctx, &m.id, None).await,
        ("GET", Target::Comment(c), None) => {
            comment_node(ctx, c, &requested(ctx, Node::Comment)?).await
        }
        ("DELETE", Target::Comment(c), None) => delete_comment(ctx, c).await,
        ("GET", Target::Comment(c), Some("replies")) => {
            ctx.need(Need::Comments)?;
            let sub = requested(ctx, Node::Comment)?;
            let page = page_request(ctx)?;
            let path = format!("/{}/replies", c.id);
            comments_edge(
                ctx,
                CommentsOf::Replies(&c.id),
                &top_listing(&path, &page, &sub),
            )
            .await
        }
        ("POST", Target::Comment(c), Some("replies")) => {
            check_reply_target(c.parent_id.as_ref().map(CommentId::as_str))?;
            add_comment(ctx, &c.media_id, Some(&c.id)).await
        }
        ("GET", Target::Container(k), None) => {
            let fields = requested(ctx, Node::Container)?;
            Ok(Value::Object(
                fields
                    .iter()
                    .filter_map(|f| {
                        Some((
                            f.name.clone(),
                            nodes::container_field(&f.name, k, ctx.now())?,
                        ))
                    })
                    .collect(),
            ))
        }
        (_, _, Some(e))
            if matches!(method.as_str(), "GET" | "POST" | "DELETE") && !known_edge(&target, e) =>
        {
            Err(GraphError::unknown_path(&format!("/{e}")).into())
        }
        _ => Err(unsupported().into()),
    }
}

fn known_edge(target: &Target, edge: &str) -> bool {
    matches!(
        (target, edge),
        (
            Target::User,
            "media" | "media_publish" | "content_publishing_limit" | "subscribed_apps" | "insights"
        ) | (Target::Media(_), "children" | "comments" | "insights")
            | (Target::Comment(_), "replies")
    )
}
