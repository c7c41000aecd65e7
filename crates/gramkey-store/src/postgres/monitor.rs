//! The audit log, hourly usage, token networks and gauges on PostgreSQL.

use async_trait::async_trait;
use gramkey_domain::{AppId, TokenKind, UnixTime};
use sqlx::postgres::PgRow;
use sqlx::{Row, query};

use super::PgStore;
use crate::sqlite::monitor::{
    AuditRow, audit_limit, audit_sql, count, to_audit, to_kinds, to_usage, usage_rows,
};
use crate::{
    AuditEvent, AuditQuery, MonitorStore, NetworkSeen, NewAuditEvent, Result, UsageDelta, UsageHour,
};

fn audit_from_row(r: &PgRow) -> Result<AuditEvent> {
    let row: AuditRow = (
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
        r.try_get(7)?,
        r.try_get(8)?,
        r.try_get(9)?,
    );
    to_audit(row)
}

#[async_trait]
impl MonitorStore for PgStore {
    async fn append_audit(&self, e: &NewAuditEvent) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_log (at, event, outcome, app_id, user_id, token_id, ip, user_agent, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(e.at)
        .bind(e.kind.as_str())
        .bind(e.outcome.as_str())
        .bind(e.app_id.as_ref().map(AppId::as_str))
        .bind(e.user_id.map(|u| u.0))
        .bind(e.token_id)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let sql = audit_sql(q, '$');
        let mut select = query(&sql);
        if let Some(app) = &q.app {
            select = select.bind(app.as_str());
        }
        if let Some(user) = q.user {
            select = select.bind(user.0);
        }
        if let Some(kind) = q.kind {
            select = select.bind(kind.as_str());
        }
        if let Some(since) = q.since {
            select = select.bind(since);
        }
        if let Some(id) = q.before_id {
            select = select.bind(id);
        }
        select
            .bind(audit_limit(q.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let rows = usage_rows(deltas);
        if rows.is_empty() {
            return Ok(());
        }
        // Rows in (app, hour) order: two nodes flushing at once lock them in the same order.
        let mut tx = self.pool.begin().await?;
        for u in &rows {
            query(
                "INSERT INTO app_usage (app_id, hour, calls, throttled, peak_call_pct)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app_id, hour) DO UPDATE SET
                     calls = app_usage.calls + excluded.calls,
                     throttled = app_usage.throttled + excluded.throttled,
                     peak_call_pct = GREATEST(app_usage.peak_call_pct, excluded.peak_call_pct)",
            )
            .bind(&u.app)
            .bind(u.hour)
            .bind(u.calls)
            .bind(u.throttled)
            .bind(u.peak_call_pct)
            .execute(&mut *tx)
            .await?;
            if !u.errors.is_empty() {
                let (codes, counts): (Vec<i64>, Vec<i64>) = u.errors.iter().copied().unzip();
                query(
                    "INSERT INTO app_usage_errors (app_id, hour, code, n)
                     SELECT $1, $2, e.code, e.n FROM UNNEST($3::BIGINT[], $4::BIGINT[]) AS e (code, n)
                     ON CONFLICT (app_id, hour, code) DO UPDATE SET n = app_usage_errors.n + excluded.n",
                )
                .bind(&u.app)
                .bind(u.hour)
                .bind(codes)
                .bind(counts)
                .execute(&mut *tx)
                .await?;
            }
            if !u.users.is_empty() {
                query(
                    "INSERT INTO app_usage_users (app_id, hour, user_id)
                     SELECT $1, $2, u FROM UNNEST($3::BIGINT[]) AS u
                     ON CONFLICT DO NOTHING",
                )
                .bind(&u.app)
                .bind(u.hour)
                .bind(&u.users)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<Vec<UsageHour>> {
        let hours: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT u.hour, u.calls, u.throttled, u.peak_call_pct,
                 (SELECT COUNT(*) FROM app_usage_users x WHERE x.app_id = u.app_id AND x.hour = u.hour)
             FROM app_usage u WHERE u.app_id = $1 AND u.hour >= $2 AND u.hour < $3 ORDER BY u.hour",
        )
        .bind(app.as_str())
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let errors: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT hour, code, n FROM app_usage_errors
             WHERE app_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, code",
        )
        .bind(app.as_str())
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(to_usage(hours, errors))
    }

    async fn distinct_users(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT user_id) FROM app_usage_users
             WHERE app_id = $1 AND hour >= $2 AND hour < $3",
        )
        .bind(app.as_str())
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn note_network(
        &self,
        token_id: i64,
        network: &str,
        now: UnixTime,
    ) -> Result<NetworkSeen> {
        // One statement: of two racing first uses from one network, the second insert waits for
        // the first to commit, then does nothing. The count runs on the statement's snapshot,
        // which does not hold this insert: it counts the other networks. A token that is gone
        // records nothing.
        let (new, others): (bool, i64) = sqlx::query_as(
            "WITH inserted AS (
                 INSERT INTO token_networks (token_id, network, first_seen)
                 SELECT id, $2, $3 FROM tokens WHERE id = $1
                 ON CONFLICT (token_id, network) DO NOTHING
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM inserted),
                 (SELECT COUNT(*) FROM token_networks WHERE token_id = $1 AND network <> $2)",
        )
        .bind(token_id)
        .bind(network)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(NetworkSeen {
            new,
            known_before: count(others),
        })
    }

    async fn authorized_users(&self, app: &AppId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM grants WHERE app_id = $1")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn active_tokens(&self, now: UnixTime) -> Result<Vec<(TokenKind, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, COUNT(*) FROM tokens
             WHERE revoked_at IS NULL AND expires_at > $1 GROUP BY kind ORDER BY kind",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        to_kinds(rows)
    }

    async fn pending_callbacks(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
