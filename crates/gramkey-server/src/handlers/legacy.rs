//! The legacy v1 API (wire protocol §4): `/v1/users/self`, `/v1/users/{id}`,
//! `/v1/users/{id}/media/recent` and `/v1/media/{id}`, in the
//! `{"meta":{"code":200},"data":…,"pagination":{…}}` envelope, with JSONP through `callback=`.
//!
//! Another user is visible only through this app's id for them (they granted the app too), and
//! only with `public_content`, as on v1. Objects have the whole v1 shape its official clients
//! index (docs/legacy-v1.md). For apps that enforce signed requests, every call must carry a
//! valid `sig` ([`check_signature`]).

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::graph::access::Need;
use gramkey_domain::graph::legacy::{LegacyError, MAX_COUNT, check_signature, parse_count};
use gramkey_domain::graph::paging::{Page, PageRequest};
use gramkey_domain::{MediaId, Scope, ScopedUserId};
use gramkey_store::{Comment, CommentsOf, Media, TokenRecord, User};
use serde_json::{Value, json};

use super::me::{admit, authenticate, bearer};
use crate::handlers::QueryPairs;
use crate::observe::LimitHeaders;
use crate::origin::Origin;
use crate::state::AppState;
use crate::wire::legacy::{LegacyResponse, respond};
use gramkey_domain::ratelimit::CallClass;

/// A v1 request refused before its handler ran (e.g. a control character in its query).
pub(crate) fn refused(message: impl Into<String>) -> Response {
    respond(&[], Err(LegacyError::invalid(message).into()))
}

struct Caller {
    token: std::sync::Arc<TokenRecord>,
    user: Arc<User>,
    scoped: ScopedUserId,
}

/// The caller of `path` (as requested, `.json` and all): its token, checked and admitted, and
/// the request's signature when its app enforces signed requests.
async fn caller(
    state: &AppState,
    origin: &Origin,
    path: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> (LimitHeaders, Result<Caller, LegacyResponse>) {
    let mut refused = LimitHeaders::default();
    let token = match bearer(headers, query) {
        Ok(presented) => authenticate(state, origin, presented, &mut refused)
            .await
            .map_err(LegacyResponse::from),
        Err(e) => Err(LegacyError::from(&e).into()),
    };
    let caller = match token {
        Ok(caller) if !caller.is_app() => caller,
        Ok(_) => return (refused, Err(invalid_token().into())),
        Err(e) => return (refused, Err(e)),
    };
    let (limits, verdict) = admit(state, origin, &caller, CallClass::Legacy, ("GET", path)).await;
    let checked = match (verdict, caller.into_user_token()) {
        (Ok(()), Some(token)) => checked_caller(state, token, path, query).await,
        (Ok(()), None) => Err(invalid_token().into()),
        (Err(e), _) => Err(e.into()),
    };
    (limits, checked)
}

fn invalid_token() -> LegacyError {
    LegacyError::from(&GraphError::invalid_token())
}

/// An admitted caller, once its signature, user and permission are checked.
async fn checked_caller(
    state: &AppState,
    token: std::sync::Arc<TokenRecord>,
    path: &str,
    query: &[(String, String)],
) -> Result<Caller, LegacyResponse> {
    check_signed(state, &token, path, query).await?;
    let (Some(uid), Some(scoped)) = (token.user_id, token.scoped_id.clone()) else {
        return Err(invalid_token().into());
    };
    let user = state.ops.store.user(uid).await?.ok_or_else(invalid_token)?;
    if !Need::Profile.allowed(&token.scopes) {
        return Err(LegacyError::permission("basic").into());
    }
    Ok(Caller {
        token,
        user,
        scoped,
    })
}

/// Legacy v1's "Enforce signed requests", for the apps that turned it on.
async fn check_signed(
    state: &AppState,
    token: &TokenRecord,
    path: &str,
    query: &[(String, String)],
) -> Result<(), LegacyResponse> {
    let app = state
        .ops
        .store
        .app(&token.app_id)
        .await?
        .ok_or_else(invalid_token)?;
    if !app.signed_requests {
        return Ok(());
    }
    let secret = state.ops.app_secret(&app).ok_or_else(|| {
        tracing::error!(app_id = %app.id, "signed requests enforced, but the app's secret cannot be derived");
        LegacyError::from(&GraphError::internal())
    })?;
    let endpoint = path.strip_prefix("/v1").unwrap_or(path);
    Ok(check_signature(&secret, endpoint, query)?)
}

/// An id as the last path segment, without the `.json` v1's official clients append
/// (`/v1/users/self.json`, `/v1/media/{id}.json`; wire protocol §11).
fn bare(id: &str) -> &str {
    id.strip_suffix(".json").unwrap_or(id)
}

/// `self`, the caller's own id, or another user's id in this app (with `public_content`).
async fn resolve_user(
    state: &AppState,
    c: &Caller,
    id: &str,
) -> Result<(Arc<User>, ScopedUserId), LegacyResponse> {
    let id = bare(id);
    if id == "self" || id == c.scoped.as_str() {
        return Ok((c.user.clone(), c.scoped.clone()));
    }
    let missing = || LegacyError::not_found("this user does not exist");
    let scoped = ScopedUserId::parse(id).ok_or_else(missing)?;
    let grant = state
        .ops
        .store
        .grant_by_scoped_id(&c.token.app_id, &scoped)
        .await?
        .ok_or_else(missing)?;
    if !c.token.scopes.contains(Scope::PublicContent) {
        return Err(LegacyError::permission("public_content").into());
    }
    let user = state
        .ops
        .store
        .user(grant.user_id)
        .await?
        .ok_or_else(missing)?;
    Ok((user, scoped))
}

async fn user_json(
    state: &AppState,
    user: &User,
    scoped: &ScopedUserId,
) -> Result<Value, LegacyResponse> {
    let media = state.ops.store.media_count(user.id).await?;
    let p = &user.profile;
    Ok(json!({
        "id": scoped.as_str(),
        "username": user.username,
        "full_name": p.full_name,
        "profile_picture": p.profile_picture_url,
        "bio": p.biography,
        "website": p.website,
        "is_business": p.account_type != "PERSONAL",
        "counts": {"media": media, "follows": p.follows_count, "followed_by": p.followers_count},
    }))
}

/// A person as v1 names them inside other objects. `id` is this app's id for them, or empty
/// for someone who has not authorized the app (v1's ids were global; ours are per app, and a
/// stranger's must not leak).
fn user_brief(u: &User, scoped: Option<&ScopedUserId>) -> Value {
    json!({
        "id": scoped.map_or("", ScopedUserId::as_str),
        "username": u.username,
        "full_name": u.profile.full_name,
        "profile_picture": u.profile.profile_picture_url,
    })
}

/// v1's three video renditions (480, 480 and 640 px square).
fn videos(url: &str) -> Value {
    json!({
        "low_bandwidth": {"url": url, "width": 480, "height": 480},
        "low_resolution": {"url": url, "width": 480, "height": 480},
        "standard_resolution": {"url": url, "width": 640, "height": 640},
    })
}

/// How many of a media's comments its v1 object carries in `comments.data`.
const EMBEDDED_COMMENTS: u32 = 8;

/// Up to `limit` of a media's newest visible comments, as v1 objects.
async fn media_comments(
    state: &AppState,
    m: &Media,
    app: &gramkey_domain::AppId,
    limit: u32,
) -> Result<Vec<Value>, LegacyResponse> {
    if m.comments_count == 0 {
        return Ok(Vec::new());
    }
    let req = PageRequest::first(limit);
    let rows = state
        .ops
        .store
        .comments_page(CommentsOf::Media(&m.id), &req)
        .await?;
    let page = Page::cut(rows, &req);
    let mut out = Vec::with_capacity(page.items.len());
    for c in page.items.iter().filter(|c| !c.hidden) {
        out.push(comment_json(state, c, app).await?);
    }
    Ok(out)
}

/// A v1 comment: `id`, `text`, `created_time` (epoch seconds as a string) and `from`.
async fn comment_json(
    state: &AppState,
    c: &Comment,
    app: &gramkey_domain::AppId,
) -> Result<Value, LegacyResponse> {
    let author = state.ops.store.user(c.user_id).await?;
    let scoped = state
        .ops
        .store
        .grant(app, c.user_id)
        .await?
        .map(|g| g.scoped_id);
    let from = match &author {
        Some(u) => user_brief(u, scoped.as_ref()),
        None => json!({"id": "", "username": c.username, "full_name": "", "profile_picture": ""}),
    };
    Ok(json!({
        "id": c.id,
        "text": c.text,
        "created_time": c.created_at.to_string(),
        "from": from,
    }))
}

/// A v1 media object, as the app `app` sees it.
async fn media_json(
    state: &AppState,
    app: &gramkey_domain::AppId,
    m: &Media,
    owner: &User,
    scoped: &ScopedUserId,
) -> Result<Value, LegacyResponse> {
    let kind = m.media_type.legacy_name();
    let images = |url: &str| {
        json!({
            "thumbnail": {"url": url, "width": 150, "height": 150},
            "low_resolution": {"url": url, "width": 320, "height": 320},
            "standard_resolution": {"url": url, "width": 640, "height": 640},
        })
    };
    let user = user_brief(owner, Some(scoped));
    let tags: Vec<&str> = m
        .caption
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut v = json!({
        "id": m.id,
        "type": kind,
        "images": images(m.thumbnail_url.as_deref().unwrap_or(&m.media_url)),
        "caption": if m.caption.is_empty() { Value::Null } else {
            json!({"id": m.id, "text": m.caption, "created_time": m.created_at.to_string(), "from": user})
        },
        "created_time": m.created_at.to_string(),
        "link": m.permalink,
        // Who liked is not kept: `data` is empty, as v1 showed it to apps without `likes`.
        "likes": {"count": m.like_count, "data": []},
        "comments": {"count": m.comments_count, "data": media_comments(state, m, app, EMBEDDED_COMMENTS).await?},
        "tags": tags,
        "filter": "Normal",
        "location": null,
        "users_in_photo": [],
        "user_has_liked": false,
        "attribution": null,
        "user": user,
    });
    if kind == "video" {
        v["videos"] = videos(&m.media_url);
    }
    if kind == "carousel" {
        let children = state.ops.store.children(&m.id).await?;
        v["carousel_media"] = children
            .iter()
            .map(|c| {
                if c.media_type == gramkey_domain::graph::media::MediaType::Video {
                    json!({"type": "video", "videos": videos(&c.media_url), "users_in_photo": []})
                } else {
                    json!({"type": "image", "images": images(&c.media_url), "users_in_photo": []})
                }
            })
            .collect();
    }
    Ok(v)
}

pub async fn user(
    State(state): State<AppState>,
    origin: Origin,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let (limits, c) = caller(&state, &origin, uri.path(), &headers, &query).await;
    let result = async {
        let c = c?;
        let (user, scoped) = resolve_user(&state, &c, &id).await?;
        Ok(json!({"meta": {"code": 200}, "data": user_json(&state, &user, &scoped).await?}))
    }
    .await;
    (limits, respond(&query, result)).into_response()
}

pub async fn recent_media(
    State(state): State<AppState>,
    origin: Origin,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let (limits, c) = caller(&state, &origin, uri.path(), &headers, &query).await;
    let result = async {
        let c = c?;
        let (user, scoped) = resolve_user(&state, &c, &id).await?;
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let mut req = PageRequest::first(parse_count(get("count"))?);
        // max_id: older than that media; min_id: newer than it.
        let position = |name: &'static str| {
            let state = &state;
            let user_id = user.id;
            async move {
                let Some(raw) = get(name) else { return Ok::<_, LegacyResponse>(None) };
                let bad = || LegacyError::invalid(format!("{name} is not a media id of this user: {raw:?}"));
                let Some(id) = MediaId::parse(raw) else {
                    return Err(bad().into());
                };
                match state.ops.store.media(&id).await? {
                    Some(m) if m.user_id == user_id && m.parent_id.is_none() => Ok(Some(m.place())),
                    _ => Err(bad().into()),
                }
            }
        };
        req.after = position("max_id").await?;
        req.before = position("min_id").await?;
        if req.after.is_some() && req.before.is_some() {
            return Err(LegacyError::invalid("Use max_id or min_id, not both").into());
        }
        let rows = state.ops.store.media_page(user.id, &req).await?;
        let page = Page::cut(rows, &req);
        let mut data = Vec::with_capacity(page.items.len());
        for m in &page.items {
            data.push(media_json(&state, &c.token.app_id, m, &user, &scoped).await?);
        }
        let mut pagination = json!({});
        if let (true, Some(last)) = (page.has_next, page.items.last()) {
            let mut pairs: Vec<(String, String)> = query.iter().filter(|(k, _)| k != "max_id" && k != "min_id").cloned().collect();
            pairs.push(("max_id".into(), last.id.to_string()));
            let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
            pagination = json!({"next_url": format!("{}{}?{qs}", state.config.public_url, uri.path()), "next_max_id": last.id});
        }
        Ok(json!({"pagination": pagination, "meta": {"code": 200}, "data": data}))
    }
    .await;
    (limits, respond(&query, result)).into_response()
}

pub async fn media(
    State(state): State<AppState>,
    origin: Origin,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let (limits, c) = caller(&state, &origin, uri.path(), &headers, &query).await;
    let result = async {
        let c = c?;
        let (m, owner, owner_scoped) = visible_media(&state, &c, &id).await?;
        Ok(json!({"meta": {"code": 200}, "data": media_json(&state, &c.token.app_id, &m, &owner, &owner_scoped).await?}))
    }
    .await;
    (limits, respond(&query, result)).into_response()
}

/// `GET /v1/media/{id}/comments`: the media's comments, newest first, in one list (v1 did not
/// page them; at most 100).
pub async fn comments(
    State(state): State<AppState>,
    origin: Origin,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let (limits, c) = caller(&state, &origin, uri.path(), &headers, &query).await;
    let result = async {
        let c = c?;
        let (m, _, _) = visible_media(&state, &c, &id).await?;
        let data = media_comments(&state, &m, &c.token.app_id, MAX_COUNT).await?;
        Ok(json!({"meta": {"code": 200}, "data": data}))
    }
    .await;
    (limits, respond(&query, result)).into_response()
}

/// A media the caller may see: their own, or (with `public_content`) that of someone who uses
/// this app too. With its owner and this app's id for them.
async fn visible_media(
    state: &AppState,
    c: &Caller,
    id: &str,
) -> Result<(Media, Arc<User>, ScopedUserId), LegacyResponse> {
    let id = bare(id);
    let missing = || LegacyError::not_found("invalid media id");
    let Some(id) = MediaId::parse(id) else {
        return Err(missing().into());
    };
    let m = state
        .ops
        .store
        .media(&id)
        .await?
        .filter(|m| m.parent_id.is_none())
        .ok_or_else(missing)?;
    if m.user_id == c.user.id {
        return Ok((m, c.user.clone(), c.scoped.clone()));
    }
    let Some(owner_scoped) = owner_scoped_id(state, c, &m).await? else {
        return Err(missing().into());
    };
    if !c.token.scopes.contains(Scope::PublicContent) {
        return Err(LegacyError::permission("public_content").into());
    }
    let owner = state.ops.store.user(m.user_id).await?.ok_or_else(missing)?;
    Ok((m, owner, owner_scoped))
}

async fn owner_scoped_id(
    state: &AppState,
    c: &Caller,
    m: &Media,
) -> Result<Option<ScopedUserId>, LegacyResponse> {
    Ok(state
        .ops
        .store
        .grant(&c.token.app_id, m.user_id)
        .await?
        .map(|g| g.scoped_id))
}

/// Any other `/v1/…` path.
pub async fn unknown(QueryPairs(query): QueryPairs) -> Response {
    respond(&query, Err(LegacyError::unknown_endpoint().into()))
}
