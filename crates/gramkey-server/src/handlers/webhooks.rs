//! Webhook subscriptions over Graph (wire protocol §13, docs/webhooks.md):
//! `/{app-id}/subscriptions` with the app's token, and `/{ig-user-id}/subscribed_apps` with an
//! account's token.

use gramkey_domain::callback::validate_callback_url;
use gramkey_domain::error::GraphError;
use gramkey_domain::webhook::{Fields, OBJECT, check_verify_token, missing_permission_error};
use gramkey_domain::{AppId, Flavour};
use gramkey_store::{AccountSubscription, AppSubscription};
use serde_json::{Value, json};

use crate::origin::Origin;
use crate::state::AppState;
use crate::wire::graph::GraphResponse;
use gramkey_domain::audit::{AuditKind, Outcome};

/// The version a subscription's fields are reported in (`fields[].version`).
const FIELD_VERSION: &str = "v22.0";

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn success() -> Value {
    json!({ "success": true })
}

/// `object` as given: only `instagram` exists here.
fn check_object(raw: Option<&str>) -> Result<(), GraphError> {
    match raw {
        Some(OBJECT) => Ok(()),
        Some(other) => Err(GraphError::invalid_parameter(format!(
            "Param object must be one of {{instagram}} - got \"{other}\""
        ))),
        None => Err(GraphError::invalid_parameter(
            "The parameter object is required",
        )),
    }
}

/// `GET`, `POST` and `DELETE /{app-id}/subscriptions` for the app's own token.
pub async fn app_subscriptions(
    state: &AppState,
    origin: &Origin,
    app: &AppId,
    node: &str,
    method: &str,
    params: &[(String, String)],
) -> Result<Value, GraphResponse> {
    let unsupported = || GraphError::not_found(node, &method.to_ascii_lowercase());
    if node != app.as_str() {
        return Err(unsupported().into());
    }
    let store = &*state.ops.store;
    let current = store.app_subscription(app, OBJECT).await?;
    match method {
        "GET" => Ok(json!({ "data": current.iter().map(|s| json!({
            "object": s.object,
            "callback_url": s.callback_url,
            "active": true,
            "fields": s.fields.iter().map(|f| json!({"name": f.as_str(), "version": FIELD_VERSION})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>() })),
        "POST" => {
            check_object(param(params, "object"))?;
            let url = param(params, "callback_url").ok_or_else(|| {
                GraphError::invalid_parameter("The parameter callback_url is required")
            })?;
            let url = validate_callback_url(url)
                .map_err(|e| GraphError::invalid_parameter(e.to_string()))?;
            let fields = Fields::parse("fields", param(params, "fields").unwrap_or(""))?;
            let verify_token = check_verify_token(param(params, "verify_token"))?;
            crate::webhooks::verify_endpoint(
                state.config.fetch_allow_private,
                &*state.ops.entropy,
                &url,
                &verify_token,
            )
            .await?;
            // A later subscription adds fields and moves the URL, as on Graph.
            let fields = match &current {
                Some(s) => s.fields.union(&fields),
                None => fields,
            };
            let sub = AppSubscription {
                object: OBJECT.into(),
                callback_url: url,
                fields,
                updated_at: state.ops.clock.now(),
            };
            store.save_app_subscription(app, &sub).await?;
            audit(
                state,
                origin,
                app,
                format!(
                    "webhooks: {} to {}",
                    sub.fields.to_stored(),
                    sub.callback_url
                ),
            )
            .await;
            Ok(success())
        }
        "DELETE" => {
            if let Some(object) = param(params, "object") {
                check_object(Some(object))?;
            }
            let Some(current) = current else {
                return Ok(success());
            };
            let left = match param(params, "fields") {
                Some(raw) => current.fields.without(&Fields::parse("fields", raw)?),
                None => Fields::default(),
            };
            if left.is_empty() {
                store.delete_app_subscription(app, OBJECT).await?;
            } else {
                store
                    .save_app_subscription(
                        app,
                        &AppSubscription {
                            fields: left.clone(),
                            updated_at: state.ops.clock.now(),
                            ..current
                        },
                    )
                    .await?;
            }
            audit(
                state,
                origin,
                app,
                format!(
                    "webhooks: {}",
                    if left.is_empty() {
                        "unsubscribed".to_owned()
                    } else {
                        left.to_stored()
                    }
                ),
            )
            .await;
            Ok(success())
        }
        _ => Err(unsupported().into()),
    }
}

async fn audit(state: &AppState, origin: &Origin, app: &AppId, detail: String) {
    state
        .ops
        .audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            crate::audit::Entry::default().app(app).detail(detail),
        )
        .await;
}

/// Who calls `/{ig-user-id}/subscribed_apps`: the account, through this app.
pub struct Subscriber<'a> {
    pub state: &'a AppState,
    pub app: &'a AppId,
    pub user: gramkey_domain::UserId,
    pub flavour: Flavour,
    pub scopes: &'a gramkey_domain::ScopeSet,
}

/// `GET`, `POST` and `DELETE /{ig-user-id}/subscribed_apps`. Each token belongs to one app, so
/// an account's listing shows that app only, and it subscribes or unsubscribes that app.
pub async fn subscribed_apps(
    who: Subscriber<'_>,
    node: &str,
    method: &str,
    params: &[(String, String)],
) -> Result<Value, GraphResponse> {
    let store = &*who.state.ops.store;
    if who.flavour != Flavour::InstagramLogin {
        // Basic Display and legacy v1 had no webhooks.
        return Err(GraphError::not_found(node, &method.to_ascii_lowercase()).into());
    }
    match method {
        "GET" => {
            let subs = store.account_subscriptions(who.user).await?;
            let mut data = Vec::new();
            if let Some(s) = subs.iter().find(|s| &s.app_id == who.app) {
                let name = store
                    .app(who.app)
                    .await?
                    .map(|a| a.name)
                    .unwrap_or_default();
                data.push(json!({
                    "id": who.app.as_str(),
                    "name": name,
                    "subscribed_fields": s.fields.names(),
                }));
            }
            Ok(json!({ "data": data }))
        }
        "POST" => {
            let raw = param(params, "subscribed_fields").ok_or_else(|| {
                GraphError::invalid_parameter("The parameter subscribed_fields is required")
            })?;
            let fields = Fields::parse("subscribed_fields", raw)?;
            if let Some(f) = fields.missing_permission(who.scopes) {
                return Err(missing_permission_error(f).into());
            }
            store
                .subscribe_account(&AccountSubscription {
                    app_id: who.app.clone(),
                    user_id: who.user,
                    fields,
                    created_at: who.state.ops.clock.now(),
                })
                .await?;
            Ok(success())
        }
        "DELETE" => {
            store.unsubscribe_account(who.app, who.user).await?;
            Ok(success())
        }
        _ => Err(GraphError::not_found(node, &method.to_ascii_lowercase()).into()),
    }
}
