//! The admin HTTP API under `/admin`, guarded by `Authorization: Bearer <admin key>`. The same
//! operations as `gramkey app …` and `gramkey user …`, through [`crate::ops::Ops`].

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use gramkey_domain::{AppMode, Password, Role};
use gramkey_store::Profile;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::observe::LimitHeaders;
use crate::origin::Origin;
use crate::throttle::Throttled;

use crate::ops::{CALLBACK_LIST_LIMIT, NewAppInput, app_json, callback_json, user_json};
use crate::state::AppState;
use crate::wire::admin::AdminError;

/// Proof that the request carried the admin key, with the request's origin for the audit log.
pub struct Admin(pub Origin);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let origin = match Origin::from_request_parts(parts, state).await {
            Ok(origin) => origin,
            Err(never) => match never {},
        };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let refusal = match crate::throttle::admin_key(state, &origin, presented).await {
            Ok(Some(true)) => return Ok(Admin(origin)),
            Ok(None) => AdminError(
                StatusCode::FORBIDDEN,
                "the admin API is disabled: start the server with GRAMKEY_ADMIN_KEY set".into(),
            ),
            Ok(Some(false)) => AdminError(
                StatusCode::UNAUTHORIZED,
                "a valid admin key is required (Authorization: Bearer <key>)".into(),
            ),
            Err(Throttled::Locked(wait, _)) => {
                return Err((
                    LimitHeaders::wait(wait),
                    AdminError(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "too many wrong admin keys from this address; try again in {wait} s"
                        ),
                    ),
                )
                    .into_response());
            }
            Err(Throttled::Unavailable) => AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the rate limiter is unavailable; try again shortly".into(),
            ),
        };
        Err(refusal.into_response())
    }
}

/// `Json` whose rejection speaks the admin error shape.
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for Body<T> {
    type Rejection = AdminError;
    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, AdminError> {
        let Json(value) =
            Json::<Value>::from_request(req, state)
                .await
                .map_err(|e| match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => AdminError(e.status(), e.body_text()),
                    _ => AdminError(StatusCode::BAD_REQUEST, e.body_text()),
                })?;
        if let Some(c) = control_character(&value) {
            let why = format!(
                "the body contains a control character (U+{:04X}); text may hold only tabs and line breaks",
                u32::from(c)
            );
            return Err(AdminError(StatusCode::BAD_REQUEST, why));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

/// The first forbidden character ([`gramkey_domain::text`]) in any string of a JSON body.
fn control_character(v: &Value) -> Option<char> {
    use gramkey_domain::text::forbidden_char;
    match v {
        Value::String(s) => forbidden_char(s),
        Value::Array(items) => items.iter().find_map(control_character),
        Value::Object(fields) => fields
            .iter()
            .find_map(|(k, v)| forbidden_char(k).or_else(|| control_character(v))),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    name: String,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    refresh_tokens: bool,
    #[serde(default)]
    signed_requests: bool,
    #[serde(default)]
    device_flow: bool,
    #[serde(default)]
    deauthorize_url: Option<String>,
    #[serde(default)]
    data_deletion_url: Option<String>,
}

fn parse_mode(mode: Option<&str>) -> Result<AppMode, AdminError> {
    match mode {
        None => Ok(AppMode::Development),
        Some(m) => AppMode::parse(m).ok_or_else(|| {
            AdminError(
                StatusCode::BAD_REQUEST,
                format!("mode must be development or live, not {m:?}"),
            )
        }),
    }
}

pub async fn create_app(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Body(body): Body<CreateApp>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let input = NewAppInput {
        name: body.name,
        redirect_uris: body.redirect_uris,
        scopes: body.scopes.join(","),
        mode: parse_mode(body.mode.as_deref())?,
        refresh_tokens: body.refresh_tokens,
        signed_requests: body.signed_requests,
        device_flow: body.device_flow,
        deauthorize_url: body.deauthorize_url,
        data_deletion_url: body.data_deletion_url,
    };
    let (app, secret) = state.ops.create_app(&origin, input).await?;
    tracing::info!(app_id = %app.id, "app created through the admin API");
    let mut v = app_json(&app);
    v["client_secret"] = json!(secret.expose());
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list_apps(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let apps = state
        .ops
        .store
        .apps()
        .await
        .map_err(crate::ops::OpError::from)?;
    Ok(Json(
        json!({"data": apps.iter().map(app_json).collect::<Vec<_>>()}),
    ))
}

pub async fn show_app(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let app = state.ops.app(&id).await?;
    let mut v = app_json(&app);
    let mut roles = Vec::new();
    for (uid, role) in state
        .ops
        .store
        .roles(&app.id)
        .await
        .map_err(crate::ops::OpError::from)?
    {
        let name = state
            .ops
            .store
            .user(uid)
            .await
            .map_err(crate::ops::OpError::from)?
            .map(|u| u.username.clone());
        roles.push(json!({"username": name, "role": role.as_str()}));
    }
    v["roles"] = json!(roles);
    Ok(Json(v))
}

pub async fn delete_app(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.ops.delete_app(&origin, &id).await?;
    tracing::info!(app_id = %id, "app deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grace {
    /// Seconds the old secret keeps working.
    grace_seconds: Option<i64>,
}

pub async fn rotate_secret(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<Grace>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let axum::extract::Query(grace) =
        query.map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let secret = state
        .ops
        .rotate_secret(&origin, &id, grace.grace_seconds)
        .await?;
    tracing::info!(app_id = %id, "client secret rotated through the admin API");
    Ok(Json(json!({"id": id, "client_secret": secret.expose()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    username: String,
    role: String,
}

pub async fn set_role(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<SetRole>,
) -> Result<StatusCode, AdminError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        AdminError(
            StatusCode::BAD_REQUEST,
            "role must be admin, developer or tester".into(),
        )
    })?;
    state
        .ops
        .set_role(&origin, &id, &body.username, role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    password: String,
}

pub async fn create_user(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<CreateUser>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let profile = Profile {
        account_type: "PERSONAL".into(),
        ..Profile::default()
    };
    let user = state
        .ops
        .create_user(&body.username, Password::new(body.password), profile)
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

pub async fn list_users(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, AdminError> {
    let users = state
        .ops
        .store
        .users()
        .await
        .map_err(crate::ops::OpError::from)?;
    Ok(Json(
        json!({"data": users.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

/// `PATCH /admin/apps/{id}`: a field left out keeps its value; an empty string clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    deauthorize_url: Option<String>,
    data_deletion_url: Option<String>,
    signed_requests: Option<bool>,
    device_flow: Option<bool>,
}

pub async fn update_app(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<UpdateApp>,
) -> Result<Json<Value>, AdminError> {
    let mut app = state.ops.app(&id).await?;
    if body.deauthorize_url.is_some() || body.data_deletion_url.is_some() {
        app = state
            .ops
            .set_app_callbacks(
                &origin,
                &id,
                body.deauthorize_url.as_deref(),
                body.data_deletion_url.as_deref(),
            )
            .await?;
    }
    if let Some(on) = body.signed_requests {
        app = state.ops.set_signed_requests(&origin, &id, on).await?;
    }
    if let Some(on) = body.device_flow {
        app = state.ops.set_device_flow(&origin, &id, on).await?;
    }
    Ok(Json(app_json(&app)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveApp {
    #[serde(default)]
    delete_data: bool,
}

/// `DELETE /admin/users/{username}/apps/{id}[?delete_data=true]`: the user removes the app,
/// as from their "Apps and Websites" page.
pub async fn remove_user_app(
    Admin(origin): Admin,
    State(state): State<AppState>,
    Path((username, id)): Path<(String, String)>,
    query: Result<axum::extract::Query<RemoveApp>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let axum::extract::Query(q) =
        query.map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let removal = state
        .ops
        .remove_app_by_name(&origin, &username, &id, q.delete_data)
        .await?;
    if let Some(app) = gramkey_domain::AppId::parse(&id) {
        state.forget_app_facts(&app);
    }
    Ok(Json(json!({"revoked_tokens": removal.tokens})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCallbacks {
    app_id: Option<String>,
    limit: Option<u32>,
}

type ListQuery =
    Result<axum::extract::Query<ListCallbacks>, axum::extract::rejection::QueryRejection>;

/// An outbox listing's query: the app filter and the limit (1 to 1000), or the admin error.
fn list_query(query: ListQuery) -> Result<(Option<String>, u32), AdminError> {
    let axum::extract::Query(q) =
        query.map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok((
        q.app_id,
        q.limit.unwrap_or(CALLBACK_LIST_LIMIT).clamp(1, 1000),
    ))
}

pub async fn list_callbacks(
    _: Admin,
    State(state): State<AppState>,
    query: ListQuery,
) -> Result<Json<Value>, AdminError> {
    let (app_id, limit) = list_query(query)?;
    let list = state.ops.callbacks(app_id.as_deref(), limit).await?;
    Ok(Json(
        json!({"data": list.iter().map(callback_json).collect::<Vec<_>>()}),
    ))
}

pub async fn retry_callback(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    // Parsed here, not by the extractor, so a bad id gets the admin error shape.
    let id = id
        .parse()
        .map_err(|_| AdminError(StatusCode::NOT_FOUND, format!("no callback with id {id:?}")))?;
    state.ops.retry_callback(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_webhooks(
    _: Admin,
    State(state): State<AppState>,
    query: ListQuery,
) -> Result<Json<Value>, AdminError> {
    let (app_id, limit) = list_query(query)?;
    let list = state
        .ops
        .webhook_deliveries(app_id.as_deref(), limit)
        .await?;
    Ok(Json(
        json!({"data": list.iter().map(crate::webhooks::delivery_json).collect::<Vec<_>>()}),
    ))
}

pub async fn retry_webhook(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let id = id.parse().map_err(|_| {
        AdminError(
            StatusCode::NOT_FOUND,
            format!("no webhook delivery with id {id:?}"),
        )
    })?;
    state.ops.retry_webhook(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestWebhook {
    field: Option<String>,
}

/// `POST /admin/apps/{id}/webhooks/test` (`{"field": "comments"}`): a test notification.
pub async fn test_webhook(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TestWebhook>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, AdminError> {
    let field = match body {
        Ok(Json(b)) => b.field.unwrap_or_else(|| "comments".into()),
        Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) => {
            "comments".into()
        }
        Err(e) => return Err(AdminError(StatusCode::BAD_REQUEST, e.body_text())),
    };
    state.ops.send_test_webhook(&id, &field).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Any other path under `/admin`, in the admin error shape.
pub async fn not_found(uri: axum::http::Uri) -> AdminError {
    AdminError(
        StatusCode::NOT_FOUND,
        format!("no admin endpoint at {}", uri.path()),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    app: Option<String>,
    user: Option<String>,
    event: Option<String>,
    since: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /admin/audit?app=&user=&event=&since=&before=&limit=`: newest first; `before` (an
/// event id) pages back. `since` is Unix time, `YYYY-MM-DD` or RFC 3339.
pub async fn audit(
    _: Admin,
    State(state): State<AppState>,
    query: Result<axum::extract::Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let axum::extract::Query(q) =
        query.map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let since = match q.since.as_deref() {
        Some(s) => Some(
            gramkey_domain::graph::paging::parse_time("since", s).map_err(|e| {
                AdminError(
                    StatusCode::BAD_REQUEST,
                    e.message.trim_start_matches("(#100) ").to_owned(),
                )
            })?,
        ),
        None => None,
    };
    if q.limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = crate::audit::AuditFilter {
        app: q.app,
        user: q.user,
        event: q.event,
        since,
        before_id: q.before,
        limit: q.limit,
    };
    let limit = filter.limit.unwrap_or(100);
    let events = state.ops.audit_log(&filter).await?;
    // A full page may have more behind it; a short one is the last.
    let before = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({
        "data": events.iter().map(crate::audit::audit_json).collect::<Vec<_>>(),
        "paging": {"before": before},
    })))
}

/// `POST /admin/addresses/{ip}/unlock`: ends an address's sign-in and client-authentication
/// lockouts at once (an IPv6 address ends its /64's).
pub async fn unlock_address(
    _: Admin,
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<StatusCode, AdminError> {
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("{ip:?} is not an IP address"),
        )
    })?;
    for key in crate::throttle::address_keys(&crate::throttle::address_of(ip)) {
        state.limiter.clear(&key).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/users/{username}/unlock`: ends an account's sign-in lockout at once.
pub async fn unlock_user(
    _: Admin,
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<StatusCode, AdminError> {
    let user = state.ops.user(&username).await?;
    state
        .limiter
        .clear(&crate::throttle::account_key(&user.username))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /metrics`: Prometheus text format, behind the admin key (or unguarded on the separate
/// `--metrics-listen` listener).
pub async fn metrics(_: Admin, State(state): State<AppState>) -> axum::response::Response {
    render_metrics(&state).await
}

pub async fn render_metrics(state: &AppState) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = state
        .metrics
        .render(&*state.ops.store, state.ops.clock.now())
        .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
