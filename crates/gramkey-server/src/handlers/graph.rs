//! The Graph API's nodes and edges (wire protocol §4): `/me`, `/{id}` and `/{id}/{edge}`, with
//! an optional `/vNN.N` prefix, for GET, POST and DELETE.
//!
//! Graph paths are a grammar (node, then edge) rather than a fixed list, so they are read here:
//! every path the router does not know comes to [`dispatch`]. An id resolves only to what the
//! token's user owns: their app-scoped user id, their media and its comments, and the containers
//! this app made for them. Anything else (another app's id for the same person, another user's
//! media, a made-up number) gets Graph's one "does not exist, cannot be loaded due to missing
//! permissions, or does not support this operation" answer, so ids leak nothing.

use std::future::Future;
use std::pin::Pin;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::graph::access::{Need, Node};
use gramkey_domain::graph::comment::{check_message, check_reply_target};
use gramkey_domain::graph::fields::{self, Field, plain};
use gramkey_domain::graph::paging::{
    DEFAULT_LIMIT, MAX_LIMIT, Page, PageParams, PageRequest, Position, valid_id,
};
use gramkey_domain::graph::publish::{
    self, ContainerKind, ContainerParams, ContainerSpec, ContainerStatus, QUOTA_DURATION,
    QUOTA_TOTAL,
};
use gramkey_domain::ids::{generate_comment_id, generate_container_id, generate_media_id};
use gramkey_domain::{Flavour, ScopedUserId, TokenKind};
use gramkey_store::{
    Comment, CommentsOf, Container, Media, NewComment, Publication, PublishOutcome, StoreError,
    TokenRecord, User,
};
use serde_json::{Map, Value, json};

use super::form::FormFields;
use super::me::{admit, authenticate, bearer, is_graph_version};
use crate::state::AppState;
use crate::wire::graph::{GraphResponse, unknown_path};
use crate::wire::nodes;
use gramkey_domain::ratelimit::CallClass;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, GraphError>> + Send + 'a>>;

fn internal(e: StoreError) -> GraphError {
    tracing::error!(error = %e, "graph request failed in the store");
    GraphError::internal()
}

/// The request's parameters: the query string, and for POST the form body too. A name given
/// twice, in either or across both, is refused.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Everything an operation needs: who is calling, and how to build links back to this server.
struct Ctx<'a> {
    state: &'a AppState,
    token: TokenRecord,
    user: User,
    scoped: ScopedUserId,
    /// `public_url` plus the version prefix the request used, for `next` / `previous`.
    base: String,
    /// The access token, when the client sent it in the query: links carry it on, as Graph's do.
    query_token: Option<String>,
    params: &'a Params,
}

impl Ctx<'_> {
    fn flavour(&self) -> Flavour {
        self.token.flavour
    }
    fn need(&self, need: Need) -> Result<(), GraphError> {
        need.check(&self.token.scopes, self.flavour())
    }
    fn now(&self) -> i64 {
        self.state.ops.clock.now()
    }
    fn store(&self) -> &dyn gramkey_store::Store {
        &*self.state.ops.store
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
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let version = match segments.first() {
        Some(v) if is_graph_version(v) => Some(segments.remove(0)),
        // `v21/me`, `x1.0/me`: a version that is not `vNN.N` is an unknown path, as on Graph.
        Some(v)
            if v.contains('.')
                || (v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit())) =>
        {
            return unknown_path(&path);
        }
        _ => None,
    };
    if segments.is_empty() || segments.len() > 2 {
        return unknown_path(&path);
    }
    if segments[0] != "me" && !valid_id(&segments[0]) {
        return GraphResponse(GraphError::unknown_alias(&segments[0])).into_response();
    }
    if let Some(ctx) = crate::observe::current() {
        ctx.set_route(route_label(&segments));
    }
    let method = req.method().clone();
    let headers = req.headers().clone();
    let query = super::query_pairs(req.uri().query().map(str::to_owned));
    let mut pairs = query.clone();
    if method == Method::POST {
        match FormFields::read(req, &state).await {
            Ok(form) => pairs.extend(form.0),
            Err(e) => {
                return GraphResponse(GraphError::invalid_parameter(e.to_string())).into_response();
            }
        }
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return GraphResponse(GraphError::invalid_parameter(format!(
            "Parameter {} was given more than once",
            w[0]
        )))
        .into_response();
    }
    let params = Params(pairs);
    let mut flavour = None;
    let result = async {
        let token = authenticate(&state, bearer(&headers, &params.0)?).await?;
        flavour = Some(token.flavour);
        let class = if method == Method::GET {
            CallClass::Read
        } else {
            CallClass::Write
        };
        if token.kind == TokenKind::App {
            // Insights are not charged, so an app can read them while it is throttled.
            return match (segments.get(1).map(String::as_str), &method) {
                (Some("insights"), &Method::GET) => {
                    super::insights::app_insights(&state, &token, &segments[0], &params.0).await
                }
                _ => Err(GraphError::missing_token()),
            };
        }
        admit(&state, &token, class).await?;
        let (Some(uid), Some(scoped)) = (token.user_id, token.scoped_id.clone()) else {
            return Err(GraphError::invalid_token());
        };
        let user = state
            .ops
            .store
            .user(uid)
            .await
            .map_err(internal)?
            .ok_or_else(GraphError::invalid_token)?;
        let base = match &version {
            Some(v) => format!("{}/{v}", state.config.public_url),
            None => state.config.public_url.clone(),
        };
        let query_token = query
            .iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.clone());
        let ctx = Ctx {
            state: &state,
            token,
            user,
            scoped,
            base,
            query_token,
            params: &params,
        };
        route(
            &ctx,
            &method,
            &segments[0],
            segments.get(1).map(String::as_str),
        )
        .await
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => GraphResponse(match flavour {
            Some(f) => e.in_flavour(f),
            None => e,
        })
        .into_response(),
    }
}

/// The metrics label of a Graph path: its shape, never its ids.
fn route_label(segments: &[String]) -> String {
    const EDGES: [&str; 7] = [
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
        None => node.to_owned(),
        Some(e) if EDGES.contains(&e.as_str()) => format!("{node}/{e}"),
        Some(_) => format!("{node}/{{edge}}"),
    }
}

async fn resolve(ctx: &Ctx<'_>, segment: &str, method: &Method) -> Result<Target, GraphError> {
    if segment == "me" || segment == ctx.scoped.as_str() {
        return Ok(Target::User);
    }
    let missing = || GraphError::not_found(segment, &method.as_str().to_ascii_lowercase());
    let store = ctx.store();
    if let Some(m) = store.media(segment).await.map_err(internal)? {
        return if m.user_id == ctx.user.id {
            Ok(Target::Media(m))
        } else {
            Err(missing())
        };
    }
    if let Some(c) = store.comment(segment).await.map_err(internal)? {
        let owner = store
            .media(&c.media_id)
            .await
            .map_err(internal)?
            .map(|m| m.user_id);
        return if owner == Some(ctx.user.id) {
            Ok(Target::Comment(c))
        } else {
            Err(missing())
        };
    }
    if let Some(k) = store.container(segment).await.map_err(internal)? {
        return if k.user_id == ctx.user.id && k.app_id == ctx.token.app_id {
            Ok(Target::Container(k))
        } else {
            Err(missing())
        };
    }
    Err(missing())
}

async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    node: &str,
    edge: Option<&str>,
) -> Result<Value, GraphError> {
    let target = resolve(ctx, node, method).await?;
    let unsupported = || GraphError::not_found(node, &method.as_str().to_ascii_lowercase());
    match (method.as_str(), &target, edge) {
        ("GET", Target::User, None) => user_node(ctx, &requested(ctx, Node::User)?).await,
        ("GET", Target::User, Some("media")) => {
            ctx.need(Need::Media)?;
            let sub = requested(ctx, Node::Media)?;
            let page = page_request(ctx)?;
            media_edge(ctx, &format!("/{}/media", node), &page, &sub, true).await
        }
        ("POST", Target::User, Some("media")) => create_container(ctx).await,
        ("POST", Target::User, Some("media_publish")) => publish(ctx).await,
        ("GET", Target::User, Some("content_publishing_limit")) => publishing_limit(ctx).await,
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
            comments_edge(
                ctx,
                CommentsOf::Media(&m.id),
                &format!("/{}/comments", m.id),
                &page,
                &sub,
                true,
            )
            .await
        }
        ("POST", Target::Media(m), Some("comments")) => add_comment(ctx, &m.id, None).await,
        ("GET", Target::Comment(c), None) => {
            comment_node(ctx, c, &requested(ctx, Node::Comment)?).await
        }
        ("DELETE", Target::Comment(c), None) => {
            ctx.need(Need::Comments)?;
            let n = ctx.store().delete_comment(&c.id).await.map_err(internal)?;
            tracing::info!(comment_id = %c.id, removed = n, "comment deleted");
            Ok(json!({"success": true}))
        }
        ("GET", Target::Comment(c), Some("replies")) => {
            ctx.need(Need::Comments)?;
            let sub = requested(ctx, Node::Comment)?;
            let page = page_request(ctx)?;
            comments_edge(
                ctx,
                CommentsOf::Replies(&c.id),
                &format!("/{}/replies", c.id),
                &page,
                &sub,
                true,
            )
            .await
        }
        ("POST", Target::Comment(c), Some("replies")) => {
            check_reply_target(c.parent_id.as_deref())?;
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
            Err(GraphError::unknown_path(&format!("/{e}")))
        }
        _ => Err(unsupported()),
    }
}

fn known_edge(target: &Target, edge: &str) -> bool {
    matches!(
        (target, edge),
        (
            Target::User,
            "media" | "media_publish" | "content_publishing_limit"
        ) | (Target::Media(_), "children" | "comments")
            | (Target::Comment(_), "replies")
    )
}

/// The `fields` of the request, checked against the node type: only `id` when absent (the
/// default of the node's edge listing for edges).
fn requested(ctx: &Ctx<'_>, node: Node) -> Result<Vec<Field>, GraphError> {
    let f = match ctx.params.get("fields") {
        Some(raw) => fields::parse(raw)?,
        None => plain(node.default_fields()),
    };
    node.check(&f, &ctx.token.scopes, ctx.flavour())?;
    Ok(f)
}

fn page_request(ctx: &Ctx<'_>) -> Result<PageRequest, GraphError> {
    let p = ctx.params;
    PageRequest::parse(
        PageParams {
            limit: p.get("limit"),
            after: p.get("after"),
            before: p.get("before"),
            since: p.get("since"),
            until: p.get("until"),
        },
        DEFAULT_LIMIT,
    )
}

async fn user_node(ctx: &Ctx<'_>, fields: &[Field]) -> Result<Value, GraphError> {
    let media_count = if fields.iter().any(|f| f.name == "media_count") {
        Some(
            ctx.store()
                .media_count(ctx.user.id)
                .await
                .map_err(internal)?,
        )
    } else {
        None
    };
    let mut out = Map::new();
    for f in fields {
        if f.name == "media" {
            let (sub, page) = nested(f, Node::Media);
            let path = format!("/{}/media", ctx.scoped);
            out.insert(
                f.name.clone(),
                media_edge(ctx, &path, &page, &sub, false).await?,
            );
        } else if let Some(v) = nodes::user_field(&f.name, &ctx.user, &ctx.scoped, media_count) {
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// A nested edge's selection (its node type's defaults when none is given) and first page.
fn nested(f: &Field, node: Node) -> (Vec<Field>, PageRequest) {
    let sub = f
        .sub
        .clone()
        .unwrap_or_else(|| plain(node.default_fields()));
    let limit = f.limit.map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
    (sub, PageRequest::first(limit))
}

fn media_node<'a>(ctx: &'a Ctx<'a>, m: &'a Media, fields: &'a [Field]) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut out = Map::new();
        for f in fields {
            match f.name.as_str() {
                "children" => {
                    if m.media_type == "CAROUSEL_ALBUM" {
                        let (sub, _) = nested(f, Node::Media);
                        out.insert(f.name.clone(), children_edge(ctx, m, &sub).await?);
                    }
                }
                "comments" => {
                    let (sub, page) = nested(f, Node::Comment);
                    let path = format!("/{}/comments", m.id);
                    out.insert(
                        f.name.clone(),
                        comments_edge(ctx, CommentsOf::Media(&m.id), &path, &page, &sub, false)
                            .await?,
                    );
                }
                name => {
                    if let Some(v) = nodes::media_field(name, m, &ctx.user.username) {
                        out.insert(f.name.clone(), v);
                    }
                }
            }
        }
        Ok(Value::Object(out))
    })
}

fn comment_node<'a>(ctx: &'a Ctx<'a>, c: &'a Comment, fields: &'a [Field]) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut out = Map::new();
        for f in fields {
            if f.name == "replies" {
                let (sub, page) = nested(f, Node::Comment);
                let path = format!("/{}/replies", c.id);
                out.insert(
                    f.name.clone(),
                    comments_edge(ctx, CommentsOf::Replies(&c.id), &path, &page, &sub, false)
                        .await?,
                );
            } else if let Some(v) = nodes::comment_field(&f.name, c) {
                out.insert(f.name.clone(), v);
            }
        }
        Ok(Value::Object(out))
    })
}

/// `{"data":[…],"paging":{"cursors":{…},"next":…,"previous":…}}`. The links repeat the request
/// (`top_level`: its own parameters; nested: the edge's fields and limit) with a new cursor.
#[allow(clippy::too_many_arguments)]
fn paged<T>(
    ctx: &Ctx<'_>,
    path: &str,
    req: &PageRequest,
    sub: &[Field],
    top_level: bool,
    data: Vec<Value>,
    page: &Page<T>,
    place: fn(&T) -> Position,
) -> Value {
    let mut out = json!({ "data": data });
    let (Some(first), Some(last)) = (page.items.first().map(place), page.items.last().map(place))
    else {
        return out;
    };
    let mut query: Vec<(String, String)> = if top_level {
        ctx.params
            .0
            .iter()
            .filter(|(k, _)| k != "after" && k != "before")
            .cloned()
            .collect()
    } else {
        let mut q = vec![
            ("fields".to_owned(), fields::render(sub)),
            ("limit".to_owned(), req.limit.to_string()),
        ];
        if let Some(t) = &ctx.query_token {
            q.push(("access_token".into(), t.clone()));
        }
        q
    };
    let link = |query: &mut Vec<(String, String)>, name: &str, cursor: String| {
        query.push((name.to_owned(), cursor));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter())
            .finish();
        query.pop();
        format!("{}{path}?{qs}", ctx.base)
    };
    let mut paging = json!({"cursors": {"before": first.cursor(), "after": last.cursor()}});
    if page.has_next {
        paging["next"] = json!(link(&mut query, "after", last.cursor()));
    }
    if page.has_previous {
        paging["previous"] = json!(link(&mut query, "before", first.cursor()));
    }
    out["paging"] = paging;
    out
}

async fn media_edge(
    ctx: &Ctx<'_>,
    path: &str,
    req: &PageRequest,
    sub: &[Field],
    top_level: bool,
) -> Result<Value, GraphError> {
    let rows = ctx
        .store()
        .media_page(ctx.user.id, req)
        .await
        .map_err(internal)?;
    let page = Page::cut(rows, req);
    let mut data = Vec::with_capacity(page.items.len());
    for m in &page.items {
        data.push(media_node(ctx, m, sub).await?);
    }
    Ok(paged(
        ctx,
        path,
        req,
        sub,
        top_level,
        data,
        &page,
        Media::place,
    ))
}

fn comments_edge<'a>(
    ctx: &'a Ctx<'a>,
    of: CommentsOf<'a>,
    path: &'a str,
    req: &'a PageRequest,
    sub: &'a [Field],
    top_level: bool,
) -> Fut<'a, Value> {
    Box::pin(async move {
        let rows = ctx.store().comments_page(of, req).await.map_err(internal)?;
        let page = Page::cut(rows, req);
        let mut data = Vec::with_capacity(page.items.len());
        for c in &page.items {
            data.push(comment_node(ctx, c, sub).await?);
        }
        Ok(paged(
            ctx,
            path,
            req,
            sub,
            top_level,
            data,
            &page,
            Comment::place,
        ))
    })
}

async fn children_edge(ctx: &Ctx<'_>, album: &Media, sub: &[Field]) -> Result<Value, GraphError> {
    if album.media_type != "CAROUSEL_ALBUM" {
        return Err(GraphError::invalid_parameter(format!(
            "Media {} is not an album and has no children",
            album.id
        )));
    }
    let mut data = Vec::new();
    for child in ctx.store().children(&album.id).await.map_err(internal)? {
        data.push(media_node(ctx, &child, sub).await?);
    }
    Ok(json!({ "data": data }))
}

async fn add_comment(
    ctx: &Ctx<'_>,
    media_id: &str,
    parent: Option<&str>,
) -> Result<Value, GraphError> {
    ctx.need(Need::Comments)?;
    let text = check_message(ctx.params.get("message"))?;
    let id = generate_comment_id(&*ctx.state.ops.entropy);
    let added = ctx
        .store()
        .add_comment(&NewComment {
            id: id.clone(),
            media_id: media_id.to_owned(),
            user_id: ctx.user.id,
            parent_id: parent.map(str::to_owned),
            text,
            created_at: ctx.now(),
        })
        .await
        .map_err(internal)?;
    if !added {
        return Err(GraphError::not_found(parent.unwrap_or(media_id), "post"));
    }
    Ok(json!({ "id": id }))
}

async fn create_container(ctx: &Ctx<'_>) -> Result<Value, GraphError> {
    ctx.need(Need::Publish)?;
    let p = ctx.params;
    let spec = ContainerSpec::parse(ContainerParams {
        media_type: p.get("media_type"),
        image_url: p.get("image_url"),
        video_url: p.get("video_url"),
        caption: p.get("caption"),
        is_carousel_item: p.get("is_carousel_item"),
        children: p.get("children"),
    })?;
    let now = ctx.now();
    for child in &spec.children {
        let k = own_container(ctx, child, "post").await?;
        publish::check_child(
            child,
            k.is_carousel_item,
            publish::status(k.status, k.created_at, now),
        )?;
    }
    // The media to fetch, when the server fetches (carousels have none).
    let fetch = ctx.state.fetcher.as_ref().zip(spec.source_url.clone());
    let container = Container {
        id: generate_container_id(&*ctx.state.ops.entropy),
        app_id: ctx.token.app_id.clone(),
        user_id: ctx.user.id,
        kind: spec.kind,
        source_url: spec.source_url.clone(),
        source_is_video: spec.source_is_video,
        caption: spec.caption,
        is_carousel_item: spec.is_carousel_item,
        children: spec.children,
        status: if fetch.is_some() {
            ContainerStatus::InProgress
        } else {
            ContainerStatus::Finished
        },
        status_reason: None,
        created_at: now,
        published_at: None,
        media_id: None,
    };
    ctx.store()
        .create_container(&container)
        .await
        .map_err(internal)?;
    if let Some((fetcher, url)) = fetch {
        fetcher.process(
            container.id.clone(),
            url,
            container.kind.is_video(container.source_is_video),
        );
    }
    tracing::info!(container_id = %container.id, kind = container.kind.as_str(), "container created");
    Ok(json!({ "id": container.id }))
}

/// A container this app made for this user.
async fn own_container(ctx: &Ctx<'_>, id: &str, method: &str) -> Result<Container, GraphError> {
    if !valid_id(id) {
        return Err(GraphError::invalid_parameter(format!(
            "Invalid container id {id:?}"
        )));
    }
    match ctx.store().container(id).await.map_err(internal)? {
        Some(k) if k.user_id == ctx.user.id && k.app_id == ctx.token.app_id => Ok(k),
        _ => Err(GraphError::not_found(id, method)),
    }
}

fn published_type(k: &Container) -> &'static str {
    match k.kind {
        ContainerKind::Carousel => "CAROUSEL_ALBUM",
        kind if kind.is_video(k.source_is_video) => "VIDEO",
        _ => "IMAGE",
    }
}

async fn publish(ctx: &Ctx<'_>) -> Result<Value, GraphError> {
    ctx.need(Need::Publish)?;
    let id = ctx
        .params
        .get("creation_id")
        .ok_or_else(|| GraphError::invalid_parameter("The parameter creation_id is required."))?;
    let k = own_container(ctx, id, "post").await?;
    let now = ctx.now();
    publish::check_publishable(
        publish::status(k.status, k.created_at, now),
        k.is_carousel_item,
    )?;
    let since = now - QUOTA_DURATION;
    publish::check_quota(
        ctx.store()
            .publish_count(ctx.user.id, since)
            .await
            .map_err(internal)?,
    )?;
    let entropy = &*ctx.state.ops.entropy;
    let public = &ctx.state.config.public_url;
    let new_media = |source: &Container, parent: Option<&str>, position: i64| {
        let id = generate_media_id(entropy, now);
        let is_video = published_type(source) == "VIDEO";
        Media {
            media_type: published_type(source).into(),
            caption: source.caption.clone(),
            media_url: source.source_url.clone().unwrap_or_default(),
            permalink: format!("{public}/p/{id}"),
            thumbnail_url: is_video.then(|| format!("{public}/sandbox/media/{id}.svg")),
            user_id: ctx.user.id,
            created_at: now,
            like_count: 0,
            comments_count: 0,
            parent_id: parent.map(str::to_owned),
            position,
            id,
        }
    };
    let mut media = vec![new_media(&k, None, 0)];
    let album_id = media[0].id.clone();
    for (i, child) in k.children.iter().enumerate() {
        let c = own_container(ctx, child, "post").await?;
        publish::check_child(
            child,
            c.is_carousel_item,
            publish::status(c.status, c.created_at, now),
        )?;
        media.push(new_media(&c, Some(&album_id), i as i64));
    }
    if let Some(first_child) = media.get(1).map(|m| m.media_url.clone()) {
        media[0].media_url = first_child;
    }
    let outcome = ctx
        .store()
        .publish(&Publication {
            container_id: k.id.clone(),
            user_id: ctx.user.id,
            media,
            now,
            quota_since: since,
            quota_total: QUOTA_TOTAL,
        })
        .await
        .map_err(internal)?;
    match outcome {
        PublishOutcome::Published => {
            tracing::info!(container_id = %k.id, media_id = %album_id, "published");
            Ok(json!({ "id": album_id }))
        }
        PublishOutcome::OverQuota => Err(GraphError::publish_limit()),
        PublishOutcome::NotPublishable => Err(GraphError::invalid_parameter(
            "This container has already been published",
        )),
    }
}

async fn publishing_limit(ctx: &Ctx<'_>) -> Result<Value, GraphError> {
    ctx.need(Need::Publish)?;
    let fields = match ctx.params.get("fields") {
        Some(raw) => fields::parse(raw)?,
        None => plain(&["quota_usage"]),
    };
    let usage = ctx
        .store()
        .publish_count(ctx.user.id, ctx.now() - QUOTA_DURATION)
        .await
        .map_err(internal)?;
    let mut row = Map::new();
    for f in &fields {
        match (f.name.as_str(), &f.sub) {
            ("quota_usage", None) => row.insert(f.name.clone(), json!(usage)),
            ("config", None) => row.insert(
                f.name.clone(),
                json!({"quota_total": QUOTA_TOTAL, "quota_duration": QUOTA_DURATION}),
            ),
            _ => {
                return Err(GraphError::nonexisting_field(
                    &f.name,
                    "ContentPublishingLimit",
                ));
            }
        };
    }
    Ok(json!({ "data": [row] }))
}
