//! The HTML pages, rendered with maud (which escapes every interpolated string, so app names,
//! usernames and error texts are always shown as text). One layout for all pages; the only
//! asset is the stylesheet, embedded in the binary. Pages work without JavaScript.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gramkey_domain::Scope;
use maud::{DOCTYPE, Markup, html};

pub const STYLESHEET: &str = include_str!("../assets/gramkey.css");

/// Headers every page carries: no framing (clickjacking), a strict CSP, no referrer (the
/// authorize query must not leak to other sites), and no caching.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup).into_response();
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · gramkey" }
                link rel="stylesheet" href="/static/gramkey.css";
            }
            body {
                header { a class="brand" href="/" { "gramkey" } }
                main { div class="card" { (body) } }
            }
        }
    }
}

fn hidden(params: &[(&'static str, String)]) -> Markup {
    html! { @for (k, v) in params { input type="hidden" name=(k) value=(v); } }
}

/// The sign-in form. `params` are the authorize parameters it carries through.
pub fn login(
    app_name: &str,
    params: &[(&'static str, String)],
    csrf: &str,
    error: Option<&str>,
) -> Markup {
    layout(
        "Log in",
        html! {
            h1 { "Log in to continue to " (app_name) }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/oauth/authorize/login" {
                (hidden(params))
                input type="hidden" name="csrf" value=(csrf);
                label for="username" { "Username" }
                input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" required autofocus;
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                button class="primary" type="submit" { "Log in" }
            }
        },
    )
}

/// The consent form: the app's name and the requested permissions in plain words.
pub fn consent(
    app_name: &str,
    username: &str,
    scopes: &[Scope],
    params: &[(&'static str, String)],
    csrf: &str,
) -> Markup {
    layout(
        "Authorize",
        html! {
            h1 { (app_name) " would like to access your account" }
            p class="muted" { "Logged in as " strong { (username) } "." }
            p { "If you allow it, " (app_name) " will be able to:" }
            ul class="perms" { @for s in scopes { li { (s.plain_words()) } } }
            p class="muted" { "You can remove this app's access at any time." }
            form method="post" action="/oauth/authorize/consent" {
                (hidden(params))
                input type="hidden" name="csrf" value=(csrf);
                div class="actions" {
                    button class="secondary" type="submit" name="decision" value="deny" { "Cancel" }
                    button class="primary" type="submit" name="decision" value="allow" { "Allow" }
                }
            }
        },
    )
}

/// An error the user must see, because redirecting would be unsafe or impossible.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        layout(
            title,
            html! {
                h1 { (title) }
                p class="error" role="alert" { (message) }
                p class="muted" { "If you came here from an app, go back to it and try again." }
            },
        ),
    )
}

/// The sandbox app's redirect target: shows the code and how to exchange it.
pub fn sandbox_callback(
    public_url: &str,
    client_id: &str,
    redirect_uri: &str,
    code: Option<&str>,
    state: Option<&str>,
    error: Option<&str>,
) -> Markup {
    layout(
        "Sandbox callback",
        html! {
            @if let Some(e) = error {
                h1 { "The authorization was refused" }
                p class="error" role="alert" { (e) }
            } @else if let Some(code) = code {
                h1 { "Authorization code received" }
                p { "gramkey redirected here with " code { "code" } @if let Some(s) = state { " and " code { "state=" (s) } } "." }
                p { "Exchange it for a short-lived token within one hour. Put the client secret printed when the sandbox was created in "
                    code { "GRAMKEY_SANDBOX_SECRET" } " (or run " code { "gramkey app rotate-secret " (client_id) } " for a new one), then:" }
                pre { "curl -X POST " (public_url) "/oauth/access_token \\\n  -F client_id=" (client_id) " \\\n  -F client_secret=\"$GRAMKEY_SANDBOX_SECRET\" \\\n  -F grant_type=authorization_code \\\n  -F redirect_uri=" (redirect_uri) " \\\n  -F code=" (code) }
            } @else {
                h1 { "Nothing to show" }
                p { "This page receives the sandbox app's redirects." }
            }
        },
    )
}

/// The home page.
pub fn home(public_url: &str) -> Markup {
    layout(
        "Home",
        html! {
            h1 { "gramkey" }
            p { "An Instagram-compatible OAuth server. Apps send people to "
                code { (public_url) "/oauth/authorize" } " to sign in and grant access." }
        },
    )
}
