//! The administrator's console: the audit log with filters and paging, and the lists of apps
//! and users.

use gramkey_domain::audit::AuditKind;
use gramkey_store::{App, AuditEvent, User};
use maud::{Markup, html};

use super::{Nav, notice, site, when};

/// The filters as typed, kept in the form and in the paging link.
#[derive(Debug, Clone, Default)]
pub struct AuditForm {
    pub app: String,
    pub user: String,
    pub event: String,
    /// `YYYY-MM-DD`, Unix time or RFC 3339.
    pub since: String,
}

impl AuditForm {
    /// The query string for these filters, with `before` for the next page.
    pub fn query(&self, before: Option<i64>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("app", &self.app),
            ("user", &self.user),
            ("event", &self.event),
            ("since", &self.since),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        q.finish()
    }
}

fn console(nav: &Nav<'_>, title: &str, body: Markup) -> Markup {
    site(
        title,
        nav,
        html! {
            nav class="tabs" aria-label="Admin" {
                @for (href, label) in [("/console/audit", "Audit log"), ("/console/apps", "Apps"), ("/console/users", "Users")] {
                    @if label == title { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                }
            }
            (body)
        },
    )
}

/// The usernames of the people audit events name, by user id.
pub type Names = std::collections::HashMap<i64, String>;

/// Audit events, newest first. With `names` (the console), who and from where, people by name
/// where it knows them; without (an app's dashboard, seen by its developers), only what
/// happened: the people who use an app are not its developers' to identify by address.
pub fn events_table(events: &[AuditEvent], names: Option<&Names>) -> Markup {
    html! {
        div class="scroll" tabindex="0" role="region" aria-label="Audit events" {
            table class="events" {
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Outcome" }
                    @if names.is_some() { th scope="col" { "App" } th scope="col" { "User" } th scope="col" { "Address" } }
                    th scope="col" { "Detail" }
                } }
                tbody {
                    @for e in events {
                        @let ev = &e.event;
                        tr {
                            td { (when(ev.at)) }
                            td { code { (ev.kind.as_str()) } }
                            td { span class=(format!("state {}", ev.outcome.as_str())) { (ev.outcome.as_str()) } }
                            @if let Some(names) = names {
                                td { @if let Some(a) = &ev.app_id { code { (a.as_str()) } } }
                                td { @if let Some(u) = ev.user_id { @match names.get(&u.0) { Some(n) => { (n) }, None => { "#" (u.0) } } } }
                                td { (ev.ip.as_deref().unwrap_or("")) }
                            }
                            td { (ev.detail.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub fn audit(
    nav: &Nav<'_>,
    form: &AuditForm,
    (events, names): (&[AuditEvent], &Names),
    (newer, older): (bool, Option<i64>),
    error: Option<&str>,
) -> Markup {
    console(
        nav,
        "Audit log",
        html! {
            h1 { "Audit log" }
            form method="get" action="/console/audit" class="filters" {
                div { label for="f-app" { "App ID" } input type="text" id="f-app" name="app" value=(form.app) inputmode="numeric"; }
                div { label for="f-user" { "Username" } input type="text" id="f-user" name="user" value=(form.user) autocapitalize="none"; }
                div {
                    label for="f-event" { "Event" }
                    select id="f-event" name="event" {
                        option value="" { "any" }
                        @for k in AuditKind::ALL { option value=(k.as_str()) selected[form.event == k.as_str()] { (k.as_str()) } }
                    }
                }
                div { label for="f-since" { "Since" } input type="text" id="f-since" name="since" value=(form.since) placeholder="YYYY-MM-DD"; }
                button class="secondary" type="submit" { "Filter" }
            }
            (notice(error, None))
            @if events.is_empty() && error.is_none() { p class="empty" { "No events match." } }
            @if !events.is_empty() { (events_table(events, Some(names))) }
            nav class="pager" aria-label="Pages" {
                @if newer { a href=(format!("/console/audit?{}", form.query(None))) { "← Newest events" } }
                @if !form.query(None).is_empty() { a href="/console/audit" { "Clear filters" } }
                @if let Some(before) = older { a href=(format!("/console/audit?{}", form.query(Some(before)))) rel="next" { "Older events →" } }
            }
        },
    )
}

pub fn apps(nav: &Nav<'_>, apps: &[App]) -> Markup {
    console(
        nav,
        "Apps",
        html! {
            h1 { "Apps" }
            div class="scroll" tabindex="0" role="region" aria-label="Apps" {
                table id="all-apps" {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "App ID" } th scope="col" { "Mode" } th scope="col" { "Created" } th scope="col" { "Events" } } }
                    tbody {
                        @for a in apps {
                            tr {
                                td { (a.name) }
                                td { code { (a.id.as_str()) } }
                                td { (a.mode.as_str()) }
                                td { (when(a.created_at)) }
                                td { a href=(format!("/console/audit?app={}", a.id)) { "Audit log" } }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn users(nav: &Nav<'_>, users: &[User]) -> Markup {
    console(
        nav,
        "Users",
        html! {
            h1 { "Users" }
            div class="scroll" tabindex="0" role="region" aria-label="Users" {
                table id="all-users" {
                    thead { tr { th scope="col" { "Username" } th scope="col" { "ID" } th scope="col" { "Account type" } th scope="col" { "Created" } th scope="col" { "Events" } } }
                    tbody {
                        @for u in users {
                            tr {
                                td { (u.username) }
                                td { (u.id.0) }
                                td { (u.profile.account_type) }
                                td { (when(u.created_at)) }
                                td { a href=(format!("/console/audit?{}", AuditForm { user: u.username.clone(), ..AuditForm::default() }.query(None))) { "Audit log" } }
                            }
                        }
                    }
                }
            }
        },
    )
}
