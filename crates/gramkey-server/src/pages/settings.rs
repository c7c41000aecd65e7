//! A person's settings: "Apps and Websites" (Active, Expired, Removed), invitations to test
//! apps, and their password.

use gramkey_domain::account::{AccessStatus, AccessTab, InvitationState};
use gramkey_store::{AppAccess, Invitation};
use maud::{Markup, html};

use super::{Nav, csrf, notice, site, when};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Apps,
    Invitations,
    Password,
}

fn settings(nav: &Nav<'_>, title: &str, current: Page, body: Markup) -> Markup {
    let link = |href: &str, label: &str, page: Page| {
        html! {
            @if page == current { a href=(href) aria-current="page" { (label) } }
            @else { a href=(href) { (label) } }
        }
    };
    site(
        title,
        nav,
        html! {
            div class="columns" {
                nav class="side" aria-label="Settings" {
                    (link("/accounts/manage_access/", "Apps and Websites", Page::Apps))
                    (link("/accounts/invitations/", "Invitations", Page::Invitations))
                    (link("/accounts/password/change/", "Password", Page::Password))
                }
                section class="card grow" { (body) }
            }
        },
    )
}

/// One app on the "Apps and Websites" page.
pub struct Listed<'a> {
    pub access: &'a AppAccess,
    /// `None` for a removed app.
    pub status: Option<AccessStatus>,
}

/// "Apps and Websites", showing one tab; `counts` are the tabs' sizes, in [`AccessTab::ALL`]
/// order.
pub fn apps_and_websites(
    nav: &Nav<'_>,
    tab: AccessTab,
    counts: [usize; 3],
    apps: &[Listed<'_>],
    done: Option<&str>,
) -> Markup {
    settings(
        nav,
        "Apps and Websites",
        Page::Apps,
        html! {
            h1 { "Apps and Websites" }
            p class="muted" { "Apps you have used your account to log in to. Removing one stops it from using your account; it may keep what you shared before, unless you ask it to delete your data." }
            (notice(None, done))
            nav class="tabs" aria-label="Apps by status" {
                @for (t, n) in AccessTab::ALL.iter().zip(counts) {
                    @let href = format!("/accounts/manage_access/?tab={}", t.as_str());
                    @if *t == tab { a href=(href) aria-current="page" { (t.title()) " (" (n) ")" } }
                    @else { a href=(href) { (t.title()) " (" (n) ")" } }
                }
            }
            @if apps.is_empty() {
                p class="empty" { (match tab {
                    AccessTab::Active => "You have no active apps.",
                    AccessTab::Expired => "You have no expired apps.",
                    AccessTab::Removed => "You have not removed any apps.",
                }) }
            }
            ul class="apps" {
                @for app in apps { li { (listed(nav.csrf, app)) } }
            }
        },
    )
}

fn listed(token: &str, l: &Listed<'_>) -> Markup {
    let a = l.access;
    let id = a.app_id.as_str();
    html! {
        article aria-label=(a.app_name) {
            h2 { (a.app_name) }
            dl class="facts" {
                dt { "Permissions" }
                dd { ul { @for s in a.scopes.iter() { li { (s.plain_words()) } } } }
                dt { "Granted" }
                dd { (when(a.granted_at)) }
                @match l.status {
                    Some(AccessStatus::Active { expires: Some(at) }) => { dt { "Expires" } dd { (when(at)) } }
                    Some(AccessStatus::Active { expires: None }) => { dt { "Expires" } dd { "not set yet: the app has not finished signing you in" } }
                    Some(AccessStatus::Expired { since: Some(at) }) => { dt { "Expired" } dd { (when(at)) } }
                    Some(AccessStatus::Expired { since: None }) => { dt { "Expired" } dd { "the app no longer has access" } }
                    None => {}
                }
                @if let Some(at) = a.removed_at { dt { "Removed" } dd { (when(at)) } }
                @if let Some(at) = a.deletion_requested_at {
                    dt { "Data deletion" }
                    dd {
                        "requested " (when(at))
                        @if let Some(code) = &a.deletion_confirmation { "; confirmation code " code { (code) } }
                    }
                }
            }
            @if l.status.is_some() {
                form method="post" action=(format!("/accounts/manage_access/{id}/remove")) {
                    (csrf(token))
                    @if a.accepts_data_deletion {
                        label class="check" {
                            input type="checkbox" name="delete_data" value="1";
                            " Also ask " (a.app_name) " to delete the data it has about me"
                        }
                    }
                    button class="danger" type="submit" aria-label=(format!("Remove {}", a.app_name)) { "Remove" }
                }
            } @else if a.accepts_data_deletion && a.deletion_requested_at.is_none() {
                form method="post" action=(format!("/accounts/manage_access/{id}/delete_data")) {
                    (csrf(token))
                    button class="secondary" type="submit" aria-label=(format!("Request deletion of my data from {}", a.app_name)) { "Request deletion of my data" }
                }
            }
        }
    }
}

/// Invitations to take a role on apps.
pub fn invitations(nav: &Nav<'_>, list: &[Invitation], done: Option<&str>) -> Markup {
    let (pending, answered): (Vec<_>, Vec<_>) = list
        .iter()
        .partition(|i| i.state == InvitationState::Pending);
    settings(
        nav,
        "Invitations",
        Page::Invitations,
        html! {
            h1 { "Invitations" }
            p class="muted" { "Developers can invite you to test their apps before they go live. Accept to be able to authorize the app while it is in development mode." }
            (notice(None, done))
            @if pending.is_empty() { p class="empty" { "You have no pending invitations." } }
            ul class="apps" {
                @for i in &pending {
                    li {
                        article aria-label=(i.app_name) {
                            h2 { (i.app_name) }
                            p {
                                @if let Some(by) = &i.invited_by { strong { (by) } " invited you" } @else { "Invited" }
                                " as " strong { (i.role.as_str()) } " on " (when(i.invited_at)) "."
                            }
                            form method="post" action=(format!("/accounts/invitations/{}", i.app_id)) class="actions" {
                                (csrf(nav.csrf))
                                button class="secondary" type="submit" name="decision" value="decline" aria-label=(format!("Decline the invitation to {}", i.app_name)) { "Decline" }
                                button class="primary" type="submit" name="decision" value="accept" aria-label=(format!("Accept the invitation to {}", i.app_name)) { "Accept" }
                            }
                        }
                    }
                }
            }
            @if !answered.is_empty() {
                h2 { "Answered" }
                div class="scroll" tabindex="0" role="region" aria-label="Answered invitations" {
                    table {
                        thead { tr { th scope="col" { "App" } th scope="col" { "Role" } th scope="col" { "Answer" } th scope="col" { "When" } } }
                        tbody {
                            @for i in &answered {
                                tr {
                                    td { (i.app_name) }
                                    td { (i.role.as_str()) }
                                    td { (i.state.as_str()) }
                                    td { @if let Some(at) = i.answered_at { (when(at)) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The change-password form.
pub fn password(nav: &Nav<'_>, error: Option<&str>, done: Option<&str>) -> Markup {
    settings(
        nav,
        "Change password",
        Page::Password,
        html! {
            h1 { "Change password" }
            p class="muted" { "Changing your password signs you out everywhere else and ends the access of every app you authorized: each must ask you to sign in again." }
            (notice(error, done))
            form method="post" action="/accounts/password/change/" class="narrow" {
                (csrf(nav.csrf))
                label for="current" { "Current password" }
                input type="password" id="current" name="current" autocomplete="current-password" required;
                label for="new" { "New password" }
                input type="password" id="new" name="new" autocomplete="new-password" minlength="8" required aria-describedby="new-hint";
                p id="new-hint" class="muted" { "At least 8 characters." }
                label for="confirm" { "New password, again" }
                input type="password" id="confirm" name="confirm" autocomplete="new-password" required;
                button class="primary" type="submit" { "Change password" }
            }
        },
    )
}
