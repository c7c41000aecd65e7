//! Pages that belong to the server itself rather than to the OAuth protocol: the home page, the
//! stylesheet, the sandbox app's callback page and the sandbox media placeholders.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::pages;
use crate::sandbox::SANDBOX_CALLBACK_PATH;
use crate::state::AppState;

pub async fn home(State(state): State<AppState>) -> Response {
    pages::page(StatusCode::OK, pages::home(&state.config.public_url))
}

/// A page's path typed without its trailing slash: a permanent redirect to the page, with the
/// query kept.
pub async fn with_slash(uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let to = format!("{}/{query}", uri.path());
    match HeaderValue::from_str(&to) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn stylesheet() -> Response {
    let mut resp = pages::STYLESHEET.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Response {
    let base = &state.config.public_url;
    let sandbox_app = crate::sandbox::sandbox_app_id(&state).await;
    // Any app may redirect here: the exchange command names the app the code was issued to.
    let code_app = match q.code.as_deref() {
        Some(code) => {
            let hash = gramkey_domain::TokenHash::of_code(&gramkey_domain::AuthCode::new(code));
            state
                .ops
                .store
                .code_app(&hash)
                .await
                .ok()
                .flatten()
                .map(|a| a.to_string())
        }
        None => None,
    };
    let for_sandbox = code_app.is_none() || code_app == sandbox_app;
    let client_id = code_app
        .or(sandbox_app)
        .unwrap_or_else(|| "<your client id>".into());
    let redirect_uri = format!("{base}{SANDBOX_CALLBACK_PATH}");
    pages::page(
        StatusCode::OK,
        pages::sandbox_callback(
            base,
            &client_id,
            for_sandbox,
            &redirect_uri,
            q.code.as_deref(),
            q.state.as_deref(),
            q.error_description.as_deref(),
        ),
    )
}

/// A placeholder image for seeded media: a coloured square with the media id.
pub async fn media_image(Path(file): Path<String>) -> Response {
    let Some(id) = file
        .strip_suffix(".svg")
        .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let hue = id.bytes().fold(0u32, |h, b| (h * 31 + u32::from(b)) % 360);
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"640\"><rect width=\"640\" height=\"640\" fill=\"hsl({hue},60%,55%)\"/><text x=\"320\" y=\"330\" font-size=\"36\" text-anchor=\"middle\" fill=\"#fff\">{id}</text></svg>"
    );
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}
