//! Invitations and a person's view of the apps they authorized, on PostgreSQL.

use async_trait::async_trait;
use gramkey_domain::{AppId, Role, UnixTime, UserId};
use sqlx::query;

use super::PgStore;
use crate::sqlite::access::{AccessRow, InvitationRow, invitations_sql, to_access, to_invitation};
use crate::{AccessStore, AppAccess, Invitation, InvitationsOf, Result};

#[async_trait]
impl AccessStore for PgStore {
    async fn invite(
        &self,
        app: &AppId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
        now: UnixTime,
    ) -> Result<()> {
        query(
            "INSERT INTO app_invitations (app_id, user_id, role, state, invited_at, answered_at, invited_by)
             VALUES ($1, $2, $3, 'pending', $4, NULL, $5)
             ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role, state = 'pending',
                 invited_at = excluded.invited_at, answered_at = NULL, invited_by = excluded.invited_by",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(role.as_str())
        .bind(now)
        .bind(by.map(|u| u.0))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn invitations(&self, of: InvitationsOf<'_>) -> Result<Vec<Invitation>> {
        let sql = invitations_sql(of, "$1");
        let q = sqlx::query_as::<_, InvitationRow>(&sql);
        let rows = match of {
            InvitationsOf::App(app) => q.bind(app.as_str()).fetch_all(&self.pool).await?,
            InvitationsOf::User(user) => q.bind(user.0).fetch_all(&self.pool).await?,
        };
        rows.into_iter().map(to_invitation).collect()
    }

    async fn answer_invitation(
        &self,
        app: &AppId,
        user: UserId,
        accept: bool,
        now: UnixTime,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let role: Option<String> = sqlx::query_scalar(
            "UPDATE app_invitations SET state = $3, answered_at = $4
             WHERE app_id = $1 AND user_id = $2 AND state = 'pending' RETURNING role",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(if accept { "accepted" } else { "declined" })
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let (true, Some(role)) = (accept, &role) {
            query(
                "INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role
                 WHERE app_roles.role <> 'admin'",
            )
            .bind(app.as_str())
            .bind(user.0)
            .bind(role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(role.is_some())
    }

    async fn remove_member(&self, app: &AppId, user: UserId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let roles =
            query("DELETE FROM app_roles WHERE app_id = $1 AND user_id = $2 AND role <> 'admin'")
                .bind(app.as_str())
                .bind(user.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let invitations = query("DELETE FROM app_invitations WHERE app_id = $1 AND user_id = $2")
            .bind(app.as_str())
            .bind(user.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(roles + invitations > 0)
    }

    async fn user_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let rows: Vec<AccessRow> = sqlx::query_as(
            "SELECT g.app_id, a.name, g.scopes, g.granted_at,
                 (SELECT MAX(CASE WHEN t.revoked_at < t.expires_at THEN t.revoked_at ELSE t.expires_at END)
                  FROM tokens t WHERE t.app_id = g.app_id AND t.user_id = g.user_id),
                 NULL::BIGINT, a.data_deletion_url IS NOT NULL, NULL::BIGINT, NULL::TEXT
             FROM grants g JOIN apps a ON a.id = g.app_id
             WHERE g.user_id = $1 ORDER BY g.granted_at DESC, g.app_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(to_access).collect()
    }

    async fn removed_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        let rows: Vec<AccessRow> = sqlx::query_as(
            "SELECT r.app_id, a.name, r.scopes, r.granted_at, NULL::BIGINT, r.removed_at,
                 a.data_deletion_url IS NOT NULL, r.deletion_requested_at,
                 (SELECT c.confirmation_code FROM callbacks c
                  WHERE c.app_id = r.app_id AND c.user_id = r.user_id AND c.kind = 'data_deletion'
                    AND c.confirmation_code IS NOT NULL
                  ORDER BY c.id DESC LIMIT 1)
             FROM grant_removals r JOIN apps a ON a.id = r.app_id
             WHERE r.user_id = $1 AND NOT EXISTS
                 (SELECT 1 FROM grants g WHERE g.app_id = r.app_id AND g.user_id = r.user_id)
             ORDER BY r.removed_at DESC, r.app_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(to_access).collect()
    }

    async fn request_data_deletion(
        &self,
        app: &AppId,
        user: UserId,
        now: UnixTime,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let r = query(
            "INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
             SELECT $1, 'data_deletion', $2, scoped_id, $3, $3 FROM
                 (SELECT scoped_id FROM grants WHERE app_id = $1 AND user_id = $2
                  UNION ALL
                  SELECT scoped_id FROM grant_removals WHERE app_id = $1 AND user_id = $2) s
             LIMIT 1",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        query(
            "UPDATE grant_removals SET deletion_requested_at = $3 WHERE app_id = $1 AND user_id = $2",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}
