//! Appending to the audit log. Every event takes the client's address and user agent from the
//! [`Origin`] its caller passes (none for the CLI), and names apps, users and tokens by id only.

use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, UserId};
use gramkey_store::NewAuditEvent;

use crate::ops::Ops;
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
    /// The token's row id (never the token). Row 0 is an `APP_ID|APP_SECRET` pseudo-token.
    pub fn token(mut self, id: i64) -> Self {
        self.token = (id != 0).then_some(id);
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

impl Ops {
    /// Appends an event. The action it records has already happened, so a failure to append
    /// is logged as an error, not returned. An action taken on a page by a signed-in person is
    /// theirs: the event names them as its user, or, when it is about someone else (an
    /// invitation), says who did it in its detail.
    pub async fn audit(
        &self,
        origin: &Origin,
        kind: AuditKind,
        outcome: Outcome,
        mut entry: Entry,
    ) {
        if let Some((actor, name)) = &origin.actor {
            match entry.user {
                None => entry.user = Some(*actor),
                Some(subject) if subject != *actor => entry = entry.more(&format!(" (by {name})")),
                Some(_) => {}
            }
        }
        let event = NewAuditEvent {
            at: self.clock.now(),
            kind,
            outcome,
            app_id: entry.app,
            user_id: entry.user,
            token_id: entry.token,
            ip: origin.ip.map(|ip| ip.to_string()),
            user_agent: origin.user_agent.clone(),
            detail: entry.detail,
        };
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, event = kind.as_str(), "AUDIT EVENT LOST: appending it failed");
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

impl Ops {
    /// The newest audit events matching `filter` (at most 1,000; 100 by default).
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<gramkey_store::AuditEvent>, crate::ops::OpError> {
        use crate::ops::OpError;
        let app = match &filter.app {
            Some(a) => Some(
                AppId::parse(a)
                    .ok_or_else(|| OpError::Invalid(format!("{a:?} is not an app id")))?,
            ),
            None => None,
        };
        let user = match &filter.user {
            Some(name) => Some(self.user(name).await?.id),
            None => None,
        };
        let kind = match &filter.event {
            Some(e) => Some(AuditKind::parse(e).ok_or_else(|| {
                OpError::Invalid(format!(
                    "unknown event {e:?}; events are {}",
                    AuditKind::ALL.map(AuditKind::as_str).join(", ")
                ))
            })?),
            None => None,
        };
        Ok(self
            .store
            .audit(&gramkey_store::AuditQuery {
                app,
                user,
                kind,
                since: filter.since,
                before_id: filter.before_id,
                limit: filter.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?)
    }
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
