//! Invitations and a person's view of the apps they authorized, on SQLite.

use async_trait::async_trait;
use gramkey_domain::account::InvitationState;
use gramkey_domain::{AppId, Role, ScopeSet, UnixTime, UserId};
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::records::corrupt;
use crate::{AccessStore, AppAccess, Invitation, InvitationsOf, Result};

/// An invitation row as both backends read it: app, app name, user, username, role, state,
/// invited, answered, inviter's username.
pub(crate) type InvitationRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

pub(crate) fn to_invitation(
    (app, app_name, user, username, role, state, invited_at, answered_at, invited_by): InvitationRow,
) -> Result<Invitation> {
    Ok(Invitation {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        app_name,
        user_id: UserId(user),
        username,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        state: InvitationState::parse(&state).ok_or_else(|| corrupt("invitation state", &state))?,
        invited_at,
        answered_at,
        invited_by,
    })
}

/// A grant or removal row as both backends read it: app, app name, scopes, granted, latest
/// token expiry, removed, whether the app takes data-deletion requests, when deletion was last
/// requested, and the app's confirmation code.
pub(crate) type AccessRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    bool,
    Option<i64>,
    Option<String>,
);

pub(crate) fn to_access(
    (
        app,
        app_name,
        scopes,
        granted_at,
        latest_expiry,
        removed_at,
        deletion,
        deletion_requested_at,
        deletion_confirmation,
    ): AccessRow,
) -> Result<AppAccess> {
    Ok(AppAccess {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        app_name,
        scopes: ScopeSet::from_stored(&scopes),
        granted_at,
        latest_expiry,
        removed_at,
        accepts_data_deletion: deletion,
        deletion_requested_at,
        deletion_confirmation,
    })
}

/// The invitation columns, `{}` being the filter column (`i.app_id` or `i.user_id`).
pub(crate) const INVITATIONS: &str =
    "SELECT i.app_id, a.name, i.user_id, u.username, i.role, i.state, i.invited_at, i.answered_at,
         b.username
     FROM app_invitations i JOIN apps a ON a.id = i.app_id JOIN users u ON u.id = i.user_id
         LEFT JOIN users b ON b.id = i.invited_by
     WHERE {} ORDER BY i.invited_at DESC, u.username";

pub(crate) fn invitations_sql(of: InvitationsOf<'_>, placeholder: &str) -> String {
    let filter = match of {
        InvitationsOf::App(_) => format!("i.app_id = {placeholder}"),
        InvitationsOf::User(_) => format!("i.user_id = {placeholder}"),
    };
    INVITATIONS.replace("{}", &filter)
}

fn invitation_row(r: &Row<'_>) -> rusqlite::Result<InvitationRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn access_row(r: &Row<'_>) -> rusqlite::Result<AccessRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn invite(
        &self,
        app: &AppId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
        now: UnixTime,
    ) -> Result<()> {
        let app = app.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO app_invitations (app_id, user_id, role, state, invited_at, answered_at, invited_by)
                 VALUES (?1, ?2, ?3, 'pending', ?4, NULL, ?5)
                 ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role, state = 'pending',
                     invited_at = excluded.invited_at, answered_at = NULL, invited_by = excluded.invited_by",
            )?
            .execute(params![app.as_str(), user.0, role.as_str(), now, by.map(|u| u.0)])?;
            Ok(())
        })
        .await
    }

    async fn invitations(&self, of: InvitationsOf<'_>) -> Result<Vec<Invitation>> {
        let sql = invitations_sql(of, "?1");
        let rows: Vec<InvitationRow> = self.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = match of {
                InvitationsOf::App(app) => stmt.query_map([app.as_str()], invitation_row)?,
                InvitationsOf::User(user) => stmt.query_map([user.0], invitation_row)?,
            };
            rows.collect()
        })?;
        rows.into_iter().map(to_invitation).collect()
    }

    async fn answer_invitation(
        &self,
        app: &AppId,
        user: UserId,
        accept: bool,
        now: UnixTime,
    ) -> Result<bool> {
        let app = app.clone();
        self.write(move |c| {
            let state = if accept { "accepted" } else { "declined" };
            let role: Option<String> = c
                .prepare_cached(
                    "UPDATE app_invitations SET state = ?3, answered_at = ?4
                     WHERE app_id = ?1 AND user_id = ?2 AND state = 'pending' RETURNING role",
                )?
                .query_row(params![app.as_str(), user.0, state, now], |r| r.get(0))
                .optional()?;
            if let (true, Some(role)) = (accept, &role) {
                c.prepare_cached(
                    "INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role
                     WHERE app_roles.role <> 'admin'",
                )?
                .execute(params![app.as_str(), user.0, role, now])?;
            }
            Ok(role.is_some())
        })
        .await
    }

    async fn remove_member(&self, app: &AppId, user: UserId) -> Result<bool> {
        let app = app.clone();
        self.write(move |c| {
            let roles = c
                .prepare_cached(
                    "DELETE FROM app_roles WHERE app_id = ?1 AND user_id = ?2 AND role <> 'admin'",
                )?
                .execute(params![app.as_str(), user.0])?;
            let invitations = c
                .prepare_cached("DELETE FROM app_invitations WHERE app_id = ?1 AND user_id = ?2")?
                .execute(params![app.as_str(), user.0])?;
            Ok(roles + invitations > 0)
        })
        .await
    }

    async fn user_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let rows: Vec<AccessRow> = self.read(|c| {
            c.prepare_cached(
                "SELECT g.app_id, a.name, g.scopes, g.granted_at,
                     (SELECT MAX(CASE WHEN t.revoked_at < t.expires_at THEN t.revoked_at ELSE t.expires_at END)
                      FROM tokens t WHERE t.app_id = g.app_id AND t.user_id = g.user_id),
                     NULL, a.data_deletion_url IS NOT NULL, NULL, NULL
                 FROM grants g JOIN apps a ON a.id = g.app_id
                 WHERE g.user_id = ?1 ORDER BY g.granted_at DESC, g.app_id",
            )?
            .query_map([user.0], access_row)?
            .collect()
        })?;
        rows.into_iter().map(to_access).collect()
    }

    async fn removed_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let rows: Vec<AccessRow> = self.read(|c| {
            c.prepare_cached(
                "SELECT r.app_id, a.name, r.scopes, r.granted_at, NULL, r.removed_at,
                     a.data_deletion_url IS NOT NULL, r.deletion_requested_at,
                     (SELECT c.confirmation_code FROM callbacks c
                      WHERE c.app_id = r.app_id AND c.user_id = r.user_id AND c.kind = 'data_deletion'
                        AND c.confirmation_code IS NOT NULL
                      ORDER BY c.id DESC LIMIT 1)
                 FROM grant_removals r JOIN apps a ON a.id = r.app_id
                 WHERE r.user_id = ?1 AND NOT EXISTS
                     (SELECT 1 FROM grants g WHERE g.app_id = r.app_id AND g.user_id = r.user_id)
                 ORDER BY r.removed_at DESC, r.app_id",
            )?
            .query_map([user.0], access_row)?
            .collect()
        })?;
        rows.into_iter().map(to_access).collect()
    }

    async fn request_data_deletion(
        &self,
        app: &AppId,
        user: UserId,
        now: UnixTime,
    ) -> Result<bool> {
        let app = app.clone();
        self.write(move |c| {
            let queued = c
                .prepare_cached(
                    "INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
                     SELECT ?1, 'data_deletion', ?2, scoped_id, ?3, ?3 FROM
                         (SELECT scoped_id FROM grants WHERE app_id = ?1 AND user_id = ?2
                          UNION ALL
                          SELECT scoped_id FROM grant_removals WHERE app_id = ?1 AND user_id = ?2)
                     LIMIT 1",
                )?
                .execute(params![app.as_str(), user.0, now])?;
            c.prepare_cached(
                "UPDATE grant_removals SET deletion_requested_at = ?3 WHERE app_id = ?1 AND user_id = ?2",
            )?
            .execute(params![app.as_str(), user.0, now])?;
            Ok(queued == 1)
        })
        .await
    }
}
