//! The HTML pages, rendered with maud (which escapes every interpolated string, so app names,
//! usernames and error texts are always shown as text). One layout for all pages; the only
//! asset is the stylesheet, embedded in the binary. Pages work without JavaScript: every action
//! is a form that posts its session's CSRF token.
//!
//! - this module: the layout, and the pages of the authorize flow;
//! - [`settings`]: a person's "Apps and Websites", invitations and password;
//! - [`dashboard`]: the developer dashboard, with [`chart`], the usage chart drawn as SVG;
//! - [`console`]: the administrator's audit log and lists.

pub mod chart;
pub mod console;
pub mod dashboard;
pub mod settings;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gramkey_domain::Scope;
use maud::{DOCTYPE, Markup, html};

pub const STYLESHEET: &str = include_str!("../../assets/gramkey.css");

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

/// Who is looking at a signed-in page, for the header's links and its log-out form.
pub struct Nav<'a> {
    pub username: Option<&'a str>,
    pub csrf: &'a str,
    /// May open the admin console.
    pub admin: bool,
    pub section: Section,
}

/// The part of the site a page belongs to, marked in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Settings,
    Developers,
    Console,
}

/// A page of the flow an app sends people through (login, consent, errors): one narrow card.
fn layout(title: &str, body: Markup) -> Markup {
    document(title, None, html! { main { div class="card" { (body) } } })
}

/// A page of the site itself (settings, dashboard, console): the header's links, a wide column.
fn site(title: &str, nav: &Nav<'_>, body: Markup) -> Markup {
    document(title, Some(nav), html! { main class="wide" { (body) } })
}

fn document(title: &str, nav: Option<&Nav<'_>>, main: Markup) -> Markup {
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
                a class="skip" href="#content" { "Skip to content" }
                header {
                    a class="brand" href="/" { "gramkey" }
                    @if let Some(nav) = nav { (site_nav(nav)) }
                }
                div id="content" { (main) }
            }
        }
    }
}

fn site_nav(nav: &Nav<'_>) -> Markup {
    let link = |href: &str, label: &str, section: Section| {
        html! {
            @if nav.section == section {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        nav aria-label="Site" {
            @if nav.username.is_some() {
                (link("/accounts/manage_access/", "Apps and Websites", Section::Settings))
                (link("/developers/apps/", "Developers", Section::Developers))
            }
            @if nav.admin { (link("/console/audit", "Admin", Section::Console)) }
            @if let Some(name) = nav.username { span class="who" { (name) } }
            form method="post" action="/accounts/logout/" class="inline" {
                input type="hidden" name="csrf" value=(nav.csrf);
                button class="link" type="submit" { "Log out" }
            }
        }
    }
}

/// A time, in UTC, as a `<time>` element.
pub fn when(at: gramkey_domain::UnixTime) -> Markup {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => html! {
            time datetime=(gramkey_domain::time::graph_timestamp(at)) {
                (format!("{}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()))
            }
        },
        Err(_) => html! { "never" },
    }
}

/// A message above a form: a problem (`role="alert"`) or a confirmation (`role="status"`).
pub fn notice(error: Option<&str>, ok: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        @if let Some(m) = ok { p class="ok" role="status" { (m) } }
    }
}

/// The CSRF field every form carries.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

fn hidden(params: &[(&'static str, String)]) -> Markup {
    html! { @for (k, v) in params { input type="hidden" name=(k) value=(v); } }
}

/// The sign-in form of the authorize flow. `params` are the authorize parameters it carries
/// through.
pub fn login(
    app_name: &str,
    params: &[(&'static str, String)],
    csrf: &str,
    attempt: SignInAttempt<'_>,
) -> Markup {
    // The name in <bdi>: whatever direction its script runs, the words around it stay put.
    sign_in_form(
        html! { "Log in to continue to " bdi { (app_name) } },
        "/oauth/authorize/login",
        params,
        csrf,
        attempt,
    )
}

/// What a sign-in form shows besides its fields: why the last try failed (with the username
/// typed, kept), or a confirmation such as "logged out".
#[derive(Default, Clone, Copy)]
pub struct SignInAttempt<'a> {
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub ok: Option<&'a str>,
}

/// The site's own sign-in form; `next` is where to go after.
pub fn site_login(next: &str, csrf: &str, attempt: SignInAttempt<'_>) -> Markup {
    sign_in_form(
        html! { "Log in to gramkey" },
        "/accounts/login/",
        &[("next", next.to_owned())],
        csrf,
        attempt,
    )
}

fn sign_in_form(
    heading: Markup,
    action: &str,
    params: &[(&'static str, String)],
    token: &str,
    attempt: SignInAttempt<'_>,
) -> Markup {
    layout(
        "Log in",
        html! {
            h1 { (heading) }
            (notice(attempt.error, attempt.ok))
            form method="post" action=(action) {
                (hidden(params))
                (csrf(token))
                label for="username" { "Username" }
                input type="text" id="username" name="username" value=(attempt.username) autocomplete="username" autocapitalize="none" required autofocus;
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                button class="primary" type="submit" { "Log in" }
            }
        },
    )
}

/// The console's sign-in with the admin key.
pub fn admin_key_login(csrf_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Admin sign-in",
        html! {
            h1 { "Admin sign-in" }
            p class="muted" { "Enter the server's admin key (GRAMKEY_ADMIN_KEY), or log in as a user the server names with --admin-user." }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/console/login" {
                (csrf(csrf_token))
                label for="key" { "Admin key" }
                input type="password" id="key" name="key" autocomplete="off" required autofocus;
                button class="primary" type="submit" { "Continue" }
            }
        },
    )
}

/// The consent form: the app's name and the requested permissions in plain words. It posts
/// `params` and the decision to `action`: the authorize flow's, or the device flow's.
pub fn consent(
    action: &str,
    app_name: &str,
    username: &str,
    scopes: &[Scope],
    params: &[(&'static str, String)],
    csrf_token: &str,
) -> Markup {
    layout(
        "Authorize",
        html! {
            h1 { bdi { (app_name) } " would like to access your account" }
            p class="muted" { "Logged in as " strong { (username) } "." }
            p { "If you allow it, " bdi { (app_name) } " will be able to:" }
            ul class="perms" { @for s in scopes { li { (s.plain_words()) } } }
            p class="muted" { "You can remove this app's access at any time." }
            form method="post" action=(action) {
                (hidden(params))
                (csrf(csrf_token))
                div class="actions" {
                    button class="secondary" type="submit" name="decision" value="deny" { "Cancel" }
                    button class="primary" type="submit" name="decision" value="allow" { "Allow" }
                }
            }
        },
    )
}

/// The device flow's first page (RFC 8628 §3.3): the code a device shows, typed or carried
/// in from `verification_uri_complete`.
pub fn device_entry(
    username: &str,
    user_code: &str,
    csrf_token: &str,
    error: Option<&str>,
) -> Markup {
    layout(
        "Connect a device",
        html! {
            h1 { "Connect a device" }
            p class="muted" { "Logged in as " strong { (username) } "." }
            (notice(error, None))
            form method="post" action="/device" {
                (csrf(csrf_token))
                label for="user_code" { "Enter the code your device shows" }
                input type="text" id="user_code" name="user_code" value=(user_code)
                    autocomplete="off" autocapitalize="characters" spellcheck="false"
                    placeholder="BCDF-GHJK" required autofocus;
                button class="primary" type="submit" { "Continue" }
            }
            p class="muted" { "Only enter a code you asked for yourself, on a device in front of you." }
        },
    )
}

/// The device flow's last page: connected, or not.
pub fn device_done(app_name: &str, approved: bool) -> Markup {
    layout(
        if approved {
            "Device connected"
        } else {
            "Device not connected"
        },
        html! {
            @if approved {
                h1 { "Device connected" }
                p role="status" { bdi { (app_name) } " on your device can now use your account. You can close this window and go back to the device." }
            } @else {
                h1 { "Device not connected" }
                p role="status" { "You cancelled: " bdi { (app_name) } " on your device was not given access." }
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
    sandbox_app: bool,
    redirect_uri: &str,
    code: Option<&str>,
    state: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let secret_var = if sandbox_app {
        "GRAMKEY_SANDBOX_SECRET"
    } else {
        "GRAMKEY_CLIENT_SECRET"
    };
    layout(
        "Sandbox callback",
        html! {
            @if let Some(e) = error {
                h1 { "The authorization was refused" }
                p class="error" role="alert" { (e) }
            } @else if let Some(code) = code {
                h1 { "Authorization code received" }
                p { "gramkey redirected here with " code { "code" } @if let Some(s) = state { " and " code { "state=" (s) } } "." }
                p { "Exchange it for a short-lived token within one hour. Put the client secret of app " code { (client_id) }
                    @if sandbox_app { ", printed when the sandbox was created," } @else { ", printed when the app was created," }
                    " in " code { (secret_var) } " (or run " code { "gramkey app rotate-secret " (client_id) } " for a new one), then:" }
                pre { "curl -X POST " (public_url) "/oauth/access_token \\\n  -F client_id=" (client_id) " \\\n  -F client_secret=\"$" (secret_var) "\" \\\n  -F grant_type=authorization_code \\\n  -F redirect_uri=" (redirect_uri) " \\\n  -F code=" (code) }
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
            ul class="links" {
                li { a href="/accounts/manage_access/" { "Apps and Websites" } ": the apps you have authorized" }
                li { a href="/developers/apps/" { "Developer dashboard" } ": register and manage apps" }
                li { a href="/console/audit" { "Admin console" } ": the audit log, apps and users" }
            }
        },
    )
}

/// A page for a request that cannot go on (not found, refused), inside the site's layout.
pub fn site_error(status: StatusCode, nav: &Nav<'_>, title: &str, message: &str) -> Response {
    page(
        status,
        site(
            title,
            nav,
            html! {
                div class="card" {
                    h1 { (title) }
                    p class="error" role="alert" { (message) }
                }
            },
        ),
    )
}
