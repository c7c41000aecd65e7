//! Invitations, and a person's view of the apps they authorized.

use async_trait::async_trait;
use gramkey_domain::account::InvitationState;
use gramkey_domain::{AppId, Role, ScopeSet, UnixTime, UserId};

use super::{Conn, Engine, Row, SqlStore, q, transaction, write};
use crate::records::corrupt;
use crate::{AccessStore, AppAccess, Invitation, InvitationsOf, Result};

/// Reads an invitation: app, app name, user, username, role, state, invited, answered,
/// inviter's username.
fn invitation_from_row(r: &mut Row) -> Result<Invitation> {
    let app: String = r.get(0)?;
    let role: String = r.get(4)?;
    let state: String = r.get(5)?;
    Ok(Invitation {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        app_name: r.get(1)?,
        user_id: UserId(r.get(2)?),
        username: r.get(3)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        state: InvitationState::parse(&state).ok_or_else(|| corrupt("invitation state", &state))?,
        invited_at: r.get(6)?,
        answered_at: r.get(7)?,
        invited_by: r.get(8)?,
    })
}

/// Reads a grant or removal: app, app name, scopes, granted, latest token expiry, removed,
/// whether the app takes data-deletion requests, when deletion was last requested, and the
/// app's confirmation code.
fn access_from_row(r: &mut Row) -> Result<AppAccess> {
    let app: String = r.get(0)?;
    Ok(AppAccess {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        app_name: r.get(1)?,
        scopes: ScopeSet::from_stored(&r.get::<String>(2)?),
        granted_at: r.get(3)?,
        latest_expiry: r.get(4)?,
        removed_at: r.get(5)?,
        accepts_data_deletion: r.get(6)?,
        deletion_requested_at: r.get(7)?,
        deletion_confirmation: r.get(8)?,
    })
}

#[async_trait]
impl<E: Engine> AccessStore for SqlStore<E> {
    async fn invite(
        &self,
        app: &AppId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
        now: UnixTime,
    ) -> Result<()> {
        let app = app.clone();
        write!(self, |c| {
            c.execute(
                q("INSERT INTO app_invitations (app_id, user_id, role, state, invited_at, answered_at, invited_by)
                   VALUES ($1, $2, $3, 'pending', $4, NULL, $5)
                   ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role, state = 'pending',
                       invited_at = excluded.invited_at, answered_at = NULL, invited_by = excluded.invited_by")
                .bind(app.as_str())
                .bind(user.0)
                .bind(role.as_str())
                .bind(now)
                .bind(by.map(|u| u.0)),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn invitations(&self, of: InvitationsOf<'_>) -> Result<Vec<Invitation>> {
        let select = |filter: &str| {
            q(format!(
                "SELECT i.app_id, a.name, i.user_id, u.username, i.role, i.state, i.invited_at, i.answered_at,
                     b.username
                 FROM app_invitations i JOIN apps a ON a.id = i.app_id JOIN users u ON u.id = i.user_id
                     LEFT JOIN users b ON b.id = i.invited_by
                 WHERE {filter} = $1 ORDER BY i.invited_at DESC, u.username"
            ))
        };
        let query = match of {
            InvitationsOf::App(app) => select("i.app_id").bind(app.as_str()),
            InvitationsOf::User(user) => select("i.user_id").bind(user.0),
        };
        let mut c = self.engine.reader().await?;
        c.fetch_all(query)
            .await?
            .iter_mut()
            .map(invitation_from_row)
            .collect()
    }

    async fn answer_invitation(
        &self,
        app: &AppId,
        user: UserId,
        accept: bool,
        now: UnixTime,
    ) -> Result<bool> {
        let app = app.clone();
        transaction!(self, |c| {
            let state = if accept { "accepted" } else { "declined" };
            let role: Option<String> = match c
                .fetch_optional(
                    q("UPDATE app_invitations SET state = $3, answered_at = $4
                       WHERE app_id = $1 AND user_id = $2 AND state = 'pending' RETURNING role")
                    .bind(app.as_str())
                    .bind(user.0)
                    .bind(state)
                    .bind(now),
                )
                .await?
            {
                Some(mut r) => Some(r.get(0)?),
                None => None,
            };
            if let (true, Some(role)) = (accept, &role) {
                c.execute(
                    q("INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role
                       WHERE app_roles.role <> 'admin'")
                    .bind(app.as_str())
                    .bind(user.0)
                    .bind(role)
                    .bind(now),
                )
                .await?;
            }
            Ok(role.is_some())
        })
        .await
    }

    async fn remove_member(&self, app: &AppId, user: UserId) -> Result<bool> {
        let app = app.clone();
        transaction!(self, |c| {
            let roles = c
                .execute(
                    q("DELETE FROM app_roles WHERE app_id = $1 AND user_id = $2 AND role <> 'admin'")
                        .bind(app.as_str())
                        .bind(user.0),
                )
                .await?;
            let invitations = c
                .execute(
                    q("DELETE FROM app_invitations WHERE app_id = $1 AND user_id = $2")
                        .bind(app.as_str())
                        .bind(user.0),
                )
                .await?;
            Ok(roles + invitations > 0)
        })
        .await
    }

    async fn user_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT g.app_id, a.name, g.scopes, g.granted_at,
                   (SELECT MAX(CASE WHEN t.revoked_at < t.expires_at THEN t.revoked_at ELSE t.expires_at END)
                    FROM tokens t WHERE t.app_id = g.app_id AND t.user_id = g.user_id),
                   CAST(NULL AS BIGINT), a.data_deletion_url IS NOT NULL, CAST(NULL AS BIGINT),
                   CAST(NULL AS TEXT)
               FROM grants g JOIN apps a ON a.id = g.app_id
               WHERE g.user_id = $1 ORDER BY g.granted_at DESC, g.app_id")
            .bind(user.0),
        )
        .await?
        .iter_mut()
        .map(access_from_row)
        .collect()
    }

    async fn removed_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT r.app_id, a.name, r.scopes, r.granted_at, CAST(NULL AS BIGINT), r.removed_at,
                   a.data_deletion_url IS NOT NULL, r.deletion_requested_at,
                   (SELECT c.confirmation_code FROM callbacks c
                    WHERE c.app_id = r.app_id AND c.user_id = r.user_id AND c.kind = 'data_deletion'
                      AND c.confirmation_code IS NOT NULL
                    ORDER BY c.id DESC LIMIT 1)
               FROM grant_removals r JOIN apps a ON a.id = r.app_id
               WHERE r.user_id = $1 AND NOT EXISTS
                   (SELECT 1 FROM grants g WHERE g.app_id = r.app_id AND g.user_id = r.user_id)
               ORDER BY r.removed_at DESC, r.app_id")
            .bind(user.0),
        )
        .await?
        .iter_mut()
        .map(access_from_row)
        .collect()
    }

    async fn request_data_deletion(
        &self,
        app: &AppId,
        user: UserId,
        now: UnixTime,
    ) -> Result<bool> {
        let app = app.clone();
        transaction!(self, |c| {
            let queued = c
                .execute(
                    q("INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
                       SELECT $1, 'data_deletion', $2, scoped_id, $3, $3 FROM
                           (SELECT scoped_id FROM grants WHERE app_id = $1 AND user_id = $2
                            UNION ALL
                            SELECT scoped_id FROM grant_removals WHERE app_id = $1 AND user_id = $2) s
                       LIMIT 1")
                    .bind(app.as_str())
                    .bind(user.0)
                    .bind(now),
                )
                .await?;
            c.execute(
                q("UPDATE grant_removals SET deletion_requested_at = $3 WHERE app_id = $1 AND user_id = $2")
                    .bind(app.as_str())
                    .bind(user.0)
                    .bind(now),
            )
            .await?;
            Ok(queued == 1)
        })
        .await
    }
}
