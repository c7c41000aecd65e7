//! Appending to the audit log. Every event takes the client's address and user agent from the
//! [`Origin`] its caller passes (none for the CLI), and names apps, users and tokens by id only.

use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, UnixTime, UserId};
use gramkey_store::NewAuditEvent;

use crate::origin::Origin;

/// Who and what an event is about.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    app: Option<AppId>,
    user: Option<UserId>,
    token: Option<i64>,
    detail: Option<String>,
}

impl Entry {
    pub fn app(mut self, app: &AppId) -> Self {
        self.app = Some(app.clone());
        self
    }
    /// The app, when there is one (a sign-in on the site itself has none).
    pub fn app_opt(mut self, app: Option<&AppId>) -> Self {
        self.app = app.cloned();
        self
    }
    pub fn user(mut self, user: Option<UserId>) -> Self {
        self.user = user;
        self
    }
    /// The stored token's row id (never the token).
    pub fn token(mut self, id: i64) -> Self {
        self.token = Some(id);
        self
    }
    /// The stored token's row id, if the credential was stored (`APP_ID|APP_SECRET` is not).
    pub fn token_opt(mut self, id: Option<i64>) -> Self {
        self.token = id;
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// Adds to the detail.
    pub fn more(mut self, more: &str) -> Self {
        self.detail = Some(self.detail.take().unwrap_or_default() + more);
        self
    }
}

impl Entry {
    /// The event this entry records, from `origin`, at `at`. An action taken on a page by a
    /// signed-in person is theirs: the event names them as its user, or, when it is about
    /// someone else (an invitation), says who did it in its detail.
    pub fn event(
        mut self,
        origin: &Origin,
        kind: AuditKind,
        outcome: Outcome,
        at: UnixTime,
    ) -> NewAuditEvent {
        if let Some((actor, name)) = &origin.actor {
            match self.user {
                None => self.user = Some(*actor),
                Some(subject) if subject != *actor => self = self.more(&format!(" (by {name})")),
                Some(_) => {}
            }
        }
        NewAuditEvent {
            at,
            kind,
            outcome,
            app_id: self.app,
            user_id: self.user,
            token_id: self.token,
            ip: origin.ip.map(|ip| ip.to_string()),
            user_agent: origin.user_agent(),
            detail: self.detail,
        }
    }
}

/// A filter for reading the audit log, as the CLI and the admin API take it.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub app: Option<String>,
    /// A username.
    pub user: Option<String>,
    pub event: Option<String>,
    pub since: Option<gramkey_domain::UnixTime>,
    pub before_id: Option<i64>,
    pub limit: Option<u32>,
}

/// An audit event as JSON, for `gramkey audit --json` and `/admin/audit`.
pub fn audit_json(e: &gramkey_store::AuditEvent) -> serde_json::Value {
    let ev = &e.event;
    serde_json::json!({
        "id": e.id,
        "at": ev.at,
        "time": gramkey_domain::time::graph_timestamp(ev.at),
        "event": ev.kind.as_str(),
        "outcome": ev.outcome.as_str(),
        "app_id": ev.app_id.as_ref().map(AppId::as_str),
        "user_id": ev.user_id.map(|u| u.0),
        "token_id": ev.token_id,
        "ip": ev.ip,
        "user_agent": ev.user_agent,
        "detail": ev.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person acting on a page is the event's user, or named in its detail when the event is
    /// about someone else; the origin's address and agent are recorded as given.
    #[test]
    fn events_name_who_acted() {
        let page = Origin {
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some(axum::http::HeaderValue::from_static("browser/1")),
            actor: Some((UserId(7), "ana".into())),
        };
        let (kind, ok) = (AuditKind::LoginFailed, Outcome::Success);
        let own = Entry::default().detail("x").event(&page, kind, ok, 5);
        assert_eq!(
            (own.user_id, own.detail.as_deref()),
            (Some(UserId(7)), Some("x"))
        );
        assert_eq!(own.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(own.user_agent.as_deref(), Some("browser/1"));
        let other = Entry::default()
            .user(Some(UserId(9)))
            .detail("invited")
            .event(&page, kind, ok, 5);
        assert_eq!(other.user_id, Some(UserId(9)));
        assert_eq!(other.detail.as_deref(), Some("invited (by ana)"));
        let cli = Entry::default().token(3).event(&Origin::LOCAL, kind, ok, 5);
        assert_eq!((cli.user_id, cli.ip, cli.token_id), (None, None, Some(3)));
        let app_secret = Entry::default().token_opt(None).event(&page, kind, ok, 5);
        assert_eq!(app_secret.token_id, None);
    }
}
