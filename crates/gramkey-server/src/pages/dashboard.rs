//! The developer dashboard: a person's apps, registering one, and each app's page (settings,
//! client secret, roles and invitations, usage, audit events, callback and webhook deliveries).

use gramkey_domain::account::InvitationState;
use gramkey_domain::callback::CallbackState;
use gramkey_domain::chart::HourlyChart;
use gramkey_domain::sandbox::{Fault, FaultRule};
use gramkey_domain::webhook::Field;
use gramkey_domain::{AppMode, Family, RedirectUri, Role, Scope, UnixTime};
use gramkey_store::{App, AppSubscription, AuditEvent, Callback, Invitation, Webhook};

use crate::call_log::Call;
use maud::{Markup, html};

use super::{Nav, csrf, notice, site, when};

/// The settings form's fields as typed, so a form sent back with an error keeps every value.
#[derive(Debug, Clone, Default)]
pub struct AppForm {
    pub name: String,
    /// One URI per line.
    pub redirect_uris: String,
    pub scopes: Vec<String>,
    pub mode: String,
    pub deauthorize_url: String,
    pub data_deletion_url: String,
    /// Legacy v1's "Enforce signed requests".
    pub signed_requests: bool,
    /// The device authorization grant (RFC 8628).
    pub device_flow: bool,
}

impl AppForm {
    pub fn of(app: &App) -> Self {
        Self {
            name: app.name.clone(),
            redirect_uris: app
                .redirect_uris
                .iter()
                .map(RedirectUri::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            scopes: app.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            mode: app.mode.as_str().to_owned(),
            deauthorize_url: app.deauthorize_url.clone().unwrap_or_default(),
            data_deletion_url: app.data_deletion_url.clone().unwrap_or_default(),
            signed_requests: app.signed_requests,
            device_flow: app.device_flow,
        }
    }

    /// A new app's form: development mode, Basic Display's two scopes.
    pub fn blank() -> Self {
        Self {
            scopes: vec!["user_profile".into(), "user_media".into()],
            mode: AppMode::Development.as_str().into(),
            ..Self::default()
        }
    }

    /// The form from posted fields.
    pub fn posted(form: &[(String, String)]) -> Self {
        let one = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            name: one("name"),
            redirect_uris: one("redirect_uris"),
            scopes: form
                .iter()
                .filter(|(k, _)| k == "scopes")
                .map(|(_, v)| v.clone())
                .collect(),
            mode: one("mode"),
            deauthorize_url: one("deauthorize_url"),
            data_deletion_url: one("data_deletion_url"),
            signed_requests: one("signed_requests") == "on",
            device_flow: one("device_flow") == "on",
        }
    }

    /// The redirect URIs, one per non-empty line.
    pub fn uris(&self) -> Vec<String> {
        self.redirect_uris
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::BasicDisplay => "Basic Display",
        Family::InstagramLogin => "Instagram API with Instagram Login",
        Family::Legacy => "Legacy API (v1)",
    }
}

/// The fields shared by the create form and the settings form.
fn settings_fields(f: &AppForm) -> Markup {
    html! {
        label for="name" { "App name" }
        input type="text" id="name" name="name" value=(f.name) maxlength="100" required;
        label for="redirect_uris" { "Valid OAuth redirect URIs" }
        textarea id="redirect_uris" name="redirect_uris" rows="3" required aria-describedby="uris-hint" { (f.redirect_uris) }
        p id="uris-hint" class="muted" { "One per line. https, or http for localhost and loopback addresses (a loopback IP matches on any port)." }
        fieldset {
            legend { "Mode" }
            @for (value, label, hint) in [
                ("development", "Development", "only people with a role on the app can authorize it"),
                ("live", "Live", "anyone can authorize it"),
            ] {
                label class="check" {
                    input type="radio" name="mode" value=(value) checked[f.mode == value];
                    " " strong { (label) } ": " (hint)
                }
            }
        }
        fieldset {
            legend { "Allowed scopes" }
            p class="muted" { "Each authorization request uses scopes of one family." }
            @for family in [Family::BasicDisplay, Family::InstagramLogin, Family::Legacy] {
                div class="scope-family" {
                    p class="family" { (family_name(family)) }
                    @for s in Scope::ALL.iter().filter(|s| s.family() == family) {
                        label class="check" {
                            input type="checkbox" name="scopes" value=(s.as_str()) checked[f.scopes.iter().any(|x| x == s.as_str())];
                            " " code { (s.as_str()) } span class="muted" { " — " (s.plain_words()) }
                        }
                    }
                }
            }
        }
        fieldset {
            legend { "Legacy API (v1)" }
            label class="check" {
                input type="checkbox" name="signed_requests" value="on" checked[f.signed_requests];
                " " strong { "Enforce signed requests" } ": every v1 call must carry a "
                code { "sig" } ", an HMAC-SHA256 of its endpoint and parameters under the client secret"
            }
        }
        fieldset {
            legend { "Sign-in without a browser" }
            label class="check" {
                input type="checkbox" name="device_flow" value="on" checked[f.device_flow];
                " " strong { "Device flow" } " (RFC 8628): a device shows a code, and its user enters it on "
                code { "/device" } " from any browser. Instagram has no such flow; only gramkey servers offer it"
            }
        }
    }
}

/// The apps the person manages, and the form to register one.
pub fn apps(
    nav: &Nav<'_>,
    apps: &[(App, Role)],
    form: &AppForm,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    site(
        "Developer dashboard",
        nav,
        html! {
            h1 { "Your apps" }
            (notice(None, done))
            @if apps.is_empty() {
                p class="empty" { "You have no apps yet. Register one below." }
            } @else {
                div class="scroll" tabindex="0" role="region" aria-label="Your apps" {
                    table id="apps" {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "App ID" } th scope="col" { "Mode" } th scope="col" { "Your role" } } }
                        tbody {
                            @for (app, role) in apps {
                                tr {
                                    td { a href=(format!("/developers/apps/{}/", app.id)) { (app.name) } }
                                    td { code { (app.id.as_str()) } }
                                    td { (app.mode.as_str()) }
                                    td { (role.as_str()) }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="create-heading" {
                h2 id="create-heading" { "Create an app" }
                (notice(error, None))
                form method="post" action="/developers/apps/" {
                    (csrf(nav.csrf))
                    (settings_fields(form))
                    label for="deauthorize_url" { "Deauthorize callback URL (optional)" }
                    input type="url" id="deauthorize_url" name="deauthorize_url" value=(form.deauthorize_url);
                    label for="data_deletion_url" { "Data deletion request URL (optional)" }
                    input type="url" id="data_deletion_url" name="data_deletion_url" value=(form.data_deletion_url);
                    button class="primary" type="submit" { "Create app" }
                }
            }
        },
    )
}

/// Everything an app's page shows.
pub struct AppPage<'a> {
    pub app: &'a App,
    pub role: Role,
    pub form: AppForm,
    /// A secret just created or rotated: shown this once.
    pub new_secret: Option<&'a str>,
    pub error: Option<&'a str>,
    pub done: Option<&'a str>,
    pub roles: Vec<(String, Role)>,
    pub invitations: &'a [Invitation],
    pub chart: HourlyChart,
    /// Rate limits are on: the ceiling is drawn.
    pub limited: bool,
    pub events: &'a [AuditEvent],
    pub callbacks: &'a [Callback],
    /// The app's webhook subscription, and its latest deliveries.
    pub subscription: Option<&'a AppSubscription>,
    pub deliveries: &'a [Webhook],
    pub now: UnixTime,
    /// The app's time (its test clock), its active fault rules and its latest calls on this
    /// node, newest first: the sandbox tools.
    pub app_now: UnixTime,
    pub faults: &'a [FaultRule],
    pub calls: &'a [Call],
}

pub fn app(nav: &Nav<'_>, p: &AppPage<'_>) -> Markup {
    let app = p.app;
    let base = format!("/developers/apps/{}", app.id);
    site(
        &app.name,
        nav,
        html! {
            p class="crumbs" { a href="/developers/apps/" { "Your apps" } " / " }
            h1 { (app.name) }
            (notice(p.error, p.done))
            @if let Some(secret) = p.new_secret {
                section class="card secret" aria-labelledby="secret-heading" {
                    h2 id="secret-heading" { "Your client secret" }
                    p { "Copy it now and keep it safe: " strong { "it will not be shown again." } " gramkey stores only a keyed hash of it." }
                    p { code id="client-secret" { (secret) } }
                }
            }
            section class="card" aria-labelledby="basic-heading" {
                h2 id="basic-heading" { "Settings › Basic" }
                dl class="facts" {
                    dt { "App ID (client_id)" } dd { code id="client-id" { (app.id.as_str()) } }
                    dt { "Mode" } dd { (app.mode.as_str()) }
                    dt { "Your role" } dd { (p.role.as_str()) }
                    dt { "Created" } dd { (when(app.created_at)) }
                }
                form method="post" action=(format!("{base}/settings")) {
                    (csrf(nav.csrf))
                    (settings_fields(&p.form))
                    label for="deauthorize_url" { "Deauthorize callback URL" }
                    input type="url" id="deauthorize_url" name="deauthorize_url" value=(p.form.deauthorize_url) aria-describedby="deauth-hint";
                    p id="deauth-hint" class="muted" { "Receives a signed_request when someone removes the app. Leave empty for none." }
                    label for="data_deletion_url" { "Data deletion request URL" }
                    input type="url" id="data_deletion_url" name="data_deletion_url" value=(p.form.data_deletion_url);
                    button class="primary" type="submit" { "Save changes" }
                }
            }
            section class="card" aria-labelledby="secret-rotate-heading" {
                h2 id="secret-rotate-heading" { "Client secret" }
                p { "The secret is shown only when it is created. Rotate it to get a new one." }
                @if let Some((_, until)) = &app.previous_secret {
                    @if *until > p.now { p class="muted" { "The previous secret keeps working until " (when(*until)) ". Rotating again now ends it at once: only one previous secret is kept." } }
                }
                form method="post" action=(format!("{base}/secret")) {
                    (csrf(nav.csrf))
                    label for="grace" { "Keep the old secret working for" }
                    select id="grace" name="grace" {
                        option value="0" { "no time: stop it now" }
                        option value="3600" { "1 hour" }
                        option value="86400" selected { "24 hours" }
                        option value="604800" { "7 days" }
                    }
                    button class="secondary" type="submit" { "Rotate secret" }
                }
            }
            section class="card" aria-labelledby="roles-heading" {
                h2 id="roles-heading" { "App roles" }
                div class="scroll" tabindex="0" role="region" aria-label="App roles" {
                    table id="roles" {
                        thead { tr { th scope="col" { "Person" } th scope="col" { "Role" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                        tbody {
                            @for (name, role) in &p.roles {
                                tr {
                                    td { (name) }
                                    td { (role.as_str()) }
                                    td { @if *role != Role::Admin { (remove_member(&base, nav.csrf, name, "Remove")) } }
                                }
                            }
                        }
                    }
                }
                h3 { "Invitations" }
                @if p.invitations.is_empty() { p class="empty" { "No invitations yet." } } @else {
                    div class="scroll" tabindex="0" role="region" aria-label="Invitations" {
                        table id="invitations" {
                            thead { tr { th scope="col" { "Person" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Invited" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                            tbody {
                                @for i in p.invitations {
                                    tr {
                                        td { (i.username) }
                                        td { (i.role.as_str()) }
                                        td { span class=(format!("state {}", i.state.as_str())) { (match i.state {
                                            InvitationState::Pending => "pending",
                                            InvitationState::Accepted => "accepted",
                                            InvitationState::Declined => "declined",
                                        }) } }
                                        td { (when(i.invited_at)) }
                                        td { @if i.state == InvitationState::Pending { (remove_member(&base, nav.csrf, &i.username, "Withdraw")) } }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action=(format!("{base}/invitations")) class="row" {
                    (csrf(nav.csrf))
                    div {
                        label for="invite-username" { "Username" }
                        input type="text" id="invite-username" name="username" autocapitalize="none" required;
                    }
                    div {
                        label for="invite-role" { "Role" }
                        select id="invite-role" name="role" {
                            option value="tester" selected { "Tester" }
                            option value="developer" { "Developer" }
                        }
                    }
                    button class="secondary" type="submit" { "Invite" }
                }
            }
            section class="card" aria-labelledby="usage-heading" {
                h2 id="usage-heading" { "Usage" }
                @if !p.limited { p class="muted" { "Rate limits are off on this server: no ceiling applies." } }
                (super::chart::usage(&p.chart, p.limited))
            }
            section class="card" aria-labelledby="events-heading" {
                h2 id="events-heading" { "Recent events" }
                @if p.events.is_empty() { p class="empty" { "Nothing has happened yet." } } @else {
                    (super::console::events_table(p.events, None))
                }
            }
            section class="card" aria-labelledby="callbacks-heading" {
                h2 id="callbacks-heading" { "Callback deliveries" }
                (callback_health(p.callbacks))
            }
            (webhooks(&base, nav.csrf, p))
            (tools(&base, nav.csrf, p))
            @if p.role == Role::Admin {
                section class="card danger-zone" aria-labelledby="delete-heading" {
                    h2 id="delete-heading" { "Delete app" }
                    p { "Deleting the app revokes every token issued to it and forgets its roles and grants. It cannot be undone." }
                    form method="post" action=(format!("{base}/delete")) {
                        (csrf(nav.csrf))
                        label class="check" {
                            input type="checkbox" name="confirm" value="yes" required;
                            " Delete " (app.name) " and everything issued to it"
                        }
                        button class="danger" type="submit" { "Delete app" }
                    }
                }
            }
        },
    )
}

/// A one-button form that takes `username` off the app's team.
fn remove_member(base: &str, token: &str, username: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(format!("{base}/members/remove")) class="inline" {
            (csrf(token))
            input type="hidden" name="username" value=(username);
            button class="link" type="submit" aria-label=(format!("{label} {username}")) { (label) }
        }
    }
}

fn webhooks(base: &str, token: &str, p: &AppPage<'_>) -> Markup {
    html! {
        section class="card" aria-labelledby="webhooks-heading" {
            h2 id="webhooks-heading" { "Webhooks" }
            p id="webhook-mode" class=(if p.app.mode == AppMode::Live { "muted" } else { "notice" }) {
                (crate::webhooks::mode_note(p.app.mode))
            }
            @match p.subscription {
                None => p class="empty" {
                    "No subscription yet. Subscribe a callback URL with the app's token: "
                    code { "POST /" (p.app.id) "/subscriptions" }
                    " with object=instagram, callback_url, fields and verify_token. Each account then subscribes the app with "
                    code { "POST /me/subscribed_apps" } "."
                },
                Some(s) => {
                    dl class="facts" {
                        dt { "Callback URL" } dd { code id="webhook-url" { (s.callback_url) } }
                        dt { "Fields" } dd id="webhook-fields" { (s.fields.names().join(", ")) }
                    }
                    form method="post" action=(format!("{base}/webhooks/test")) class="row" {
                        (csrf(token))
                        div {
                            label for="webhook-field" { "Field" }
                            select id="webhook-field" name="field" {
                                @for f in Field::ALL {
                                    option value=(f.as_str()) selected[f == Field::Comments] { (f.as_str()) }
                                }
                            }
                        }
                        button class="secondary" type="submit" { "Send test" }
                    }
                }
            }
            h3 { "Recent deliveries" }
            @if p.deliveries.is_empty() { p class="empty" { "No notifications yet." } } @else {
                div class="scroll" tabindex="0" role="region" aria-label="Webhook deliveries" {
                    table id="webhook-deliveries" {
                        thead { tr { th scope="col" { "Queued" } th scope="col" { "Field" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Answer" } } }
                        tbody {
                            @for w in p.deliveries {
                                tr {
                                    td { (when(w.created_at)) }
                                    td { (w.field) }
                                    td { (if w.test { "test" } else { "live" }) }
                                    td { span class=(format!("state {}", w.state.as_str())) { (w.state.as_str()) } }
                                    td { (w.attempts) }
                                    td { (answer(w)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The sandbox tools: the test clock, fault rules and the call log (docs/test-tools.md).
fn tools(base: &str, token: &str, p: &AppPage<'_>) -> Markup {
    let offset = p.app_now - p.now;
    html! {
        section class="card" aria-labelledby="tools-heading" {
            h2 id="tools-heading" { "Sandbox tools" }
            @if p.app.mode == AppMode::Live {
                p class="muted" id="tools-live" {
                    "The test clock, fault injection and the call log work only for apps in development mode: a live app is never affected by them."
                }
            } @else {
                h3 { "Test clock" }
                p id="test-clock" {
                    "The app's time is " (when(p.app_now))
                    @if offset > 0 {
                        ", " strong { (gramkey_domain::sandbox::describe_offset(offset)) } " ahead of real time. Its codes, tokens, refresh rules, rate windows, insights and delivery retries read it."
                    } @else { ": real time." }
                }
                form method="post" action=(format!("{base}/test_clock")) class="row" {
                    (csrf(token))
                    div {
                        label for="clock-advance" { "Move forward by" }
                        select id="clock-advance" name="advance" {
                            option value="3600" { "1 hour" }
                            option value="90000" selected { "25 hours (a long-lived token can be refreshed)" }
                            option value="5270400" { "61 days (a long-lived token has expired)" }
                        }
                    }
                    button class="secondary" type="submit" { "Advance clock" }
                }
                @if offset > 0 {
                    form method="post" action=(format!("{base}/test_clock")) {
                        (csrf(token))
                        button class="link" type="submit" name="reset" value="1" { "Back to real time" }
                    }
                }
                h3 { "Fault injection" }
                @if p.faults.is_empty() { p class="empty" { "No fault rules: calls are answered as usual." } } @else {
                    div class="scroll" tabindex="0" role="region" aria-label="Fault rules" {
                        table id="fault-rules" {
                            thead { tr { th scope="col" { "Fault" } th scope="col" { "Method" } th scope="col" { "Path" } th scope="col" { "For" } th scope="col" { "Until" } } }
                            tbody {
                                @for r in p.faults {
                                    tr {
                                        td { code { (r.fault.as_str()) } }
                                        td { (r.method.as_deref().unwrap_or("any")) }
                                        td { code { (r.path) } }
                                        td { (rule_reach(r)) }
                                        td { @match r.expires_at { Some(t) => (when(t)), None => "cleared" } }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action=(format!("{base}/test_faults")) {
                        (csrf(token))
                        button class="link" type="submit" name="clear" value="1" { "Clear every rule" }
                    }
                }
                form method="post" action=(format!("{base}/test_faults")) class="row" {
                    (csrf(token))
                    div {
                        label for="fault-kind" { "Fault" }
                        select id="fault-kind" name="fault" {
                            @for f in Fault::ALL { option value=(f.as_str()) { (f.as_str()) } }
                        }
                    }
                    div {
                        label for="fault-path" { "Path" }
                        input id="fault-path" name="path" value="*" size="14";
                    }
                    div {
                        label for="fault-method" { "Method" }
                        select id="fault-method" name="method" {
                            option value="" { "any" } option { "GET" } option { "POST" } option { "DELETE" }
                        }
                    }
                    div {
                        label for="fault-count" { "Next calls" }
                        input id="fault-count" name="count" type="number" min="1" value="1" size="4";
                    }
                    div {
                        label for="fault-ms" { "ms (latency, timeout)" }
                        input id="fault-ms" name="ms" type="number" min="1" size="6";
                    }
                    button class="secondary" type="submit" { "Add fault" }
                }
                h3 { "Call log" }
                @if p.calls.is_empty() { p class="empty" { "No calls yet on this node." } } @else {
                    div class="scroll" tabindex="0" role="region" aria-label="Call log" {
                        table id="call-log" {
                            thead { tr { th scope="col" { "Time" } th scope="col" { "Call" } th scope="col" { "Status" } th scope="col" { "Error" } th scope="col" { "Latency" } th scope="col" { "Token" } th scope="col" { "Fault" } th scope="col" { "Node" } } }
                            tbody {
                                @for c in p.calls {
                                    tr {
                                        td { (when(c.time)) }
                                        td { code { (c.method) " " (c.route) } }
                                        td { @if c.status == 0 { "closed" } @else { (c.status) } }
                                        td { @if let Some(code) = c.error_code { (code) } }
                                        td { (format!("{:.1} ms", c.latency_ms)) }
                                        td { @if let Some(t) = c.token_id { "#" (t) } }
                                        td { @if let Some(f) = c.fault { code { (f) } } }
                                        td { (c.node) }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="muted" { "Follow it from a terminal: " code { "gramkey app log " (p.app.id) " --follow" } }
            }
        }
    }
}

/// Which calls a rule reaches.
fn rule_reach(r: &FaultRule) -> String {
    let mut s = match (r.remaining, r.probability) {
        (Some(n), _) => format!("the next {n} calls"),
        (None, Some(p)) => format!("{:.0} % of calls", p * 100.0),
        (None, None) => "every call".to_owned(),
    };
    if r.fault.timed() {
        s.push_str(&format!(", {} ms", r.ms));
    }
    if r.fault.limits() {
        s.push_str(&format!(", Retry-After {} s", r.ms / 1000));
    }
    s
}

/// What the endpoint last answered, or why nothing was answered.
fn answer(w: &Webhook) -> String {
    match (w.status, w.last_error.as_deref()) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, e) => e.unwrap_or_default().to_owned(),
    }
}

fn callback_health(list: &[Callback]) -> Markup {
    let count = |s: CallbackState| list.iter().filter(|c| c.state == s).count();
    let (delivered, pending, failed) = (
        count(CallbackState::Delivered),
        count(CallbackState::Pending),
        count(CallbackState::Failed),
    );
    html! {
        @if list.is_empty() {
            p class="empty" { "No deauthorize or data-deletion callbacks yet." }
        } @else {
            p id="callback-health" {
                span class="state delivered" { (delivered) " delivered" } " · "
                span class="state pending" { (pending) " pending" } " · "
                span class=(if failed > 0 { "state failed" } else { "state" }) { (failed) " failed" }
                " (of the latest " (list.len()) ")"
            }
            div class="scroll" tabindex="0" role="region" aria-label="Callback deliveries" {
                table id="callbacks" {
                    thead { tr { th scope="col" { "Queued" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Last error" } } }
                    tbody {
                        @for c in list {
                            tr {
                                td { (when(c.created_at)) }
                                td { (c.kind.as_str()) }
                                td { span class=(format!("state {}", c.state.as_str())) { (c.state.as_str()) } }
                                td { (c.attempts) }
                                td { (c.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
