//! The outbox of deauthorize and data-deletion callbacks.

use async_trait::async_trait;
use gramkey_domain::callback::{CallbackKind, CallbackState, Confirmation};
use gramkey_domain::{AppId, ScopedUserId, UnixTime, UserId};

use super::{Conn, Engine, Row, SqlStore, q, write};
use crate::records::corrupt;
use crate::{Attempt, Callback, CallbackStore, Result};

const CALLBACK_COLUMNS: &str = "id, app_id, kind, user_id, scoped_id, created_at, state, attempts, \
     next_attempt_at, url, last_error, finished_at, confirmation_code, status_url";

fn callback_from_row(r: &mut Row) -> Result<Callback> {
    let app: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let scoped: String = r.get(4)?;
    let state: String = r.get(6)?;
    Ok(Callback {
        id: r.get(0)?,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        kind: CallbackKind::parse(&kind).ok_or_else(|| corrupt("callback kind", &kind))?,
        user_id: UserId(r.get(3)?),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        created_at: r.get(5)?,
        state: CallbackState::parse(&state).ok_or_else(|| corrupt("callback state", &state))?,
        attempts: u32::try_from(r.get::<i64>(7)?).unwrap_or(u32::MAX),
        next_attempt_at: r.get(8)?,
        url: r.get(9)?,
        last_error: r.get(10)?,
        finished_at: r.get(11)?,
        confirmation: Confirmation {
            confirmation_code: r.get(12)?,
            status_url: r.get(13)?,
        },
    })
}

#[async_trait]
impl<E: Engine> CallbackStore for SqlStore<E> {
    async fn claim_callbacks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        write!(self, |c| {
            claim_due(c, "callbacks", CALLBACK_COLUMNS, (now, lease_until, limit))
                .await?
                .iter_mut()
                .map(callback_from_row)
                .collect()
        })
        .await
    }

    async fn finish_attempt(&self, id: i64, attempt_no: u32, attempt: &Attempt) -> Result<bool> {
        let attempt = attempt.clone();
        write!(self, |c| {
            let (state, next, url, error, finished, code, status_url) = attempt.columns();
            Ok(c.execute(
                q("UPDATE callbacks SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at),
                       url = COALESCE($4, url), last_error = $5, finished_at = $6,
                       confirmation_code = $7, status_url = $8
                   WHERE id = $1 AND state = 'pending' AND attempts = $9")
                .bind(id)
                .bind(state)
                .bind(next)
                .bind(url)
                .bind(error)
                .bind(finished)
                .bind(code)
                .bind(status_url)
                .bind(attempt_no),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn callbacks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Callback>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q(format!(
                "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE CAST($1 AS TEXT) IS NULL OR app_id = $1
                 ORDER BY id DESC LIMIT $2"
            ))
            .bind(app.map(AppId::as_str))
            .bind(limit),
        )
        .await?
        .iter_mut()
        .map(callback_from_row)
        .collect()
    }

    async fn retry_callback(&self, id: i64, now: UnixTime) -> Result<bool> {
        write!(self, |c| requeue_failed(c, "callbacks", id, now).await).await
    }
}

/// Claims up to `limit` rows of an outbox (`callbacks`, `webhook_deliveries`) due at `now`,
/// oldest due first: each one's attempt count goes up and it is leased until `lease_until`.
/// `SKIP LOCKED`: nodes claiming at the same moment take different rows.
pub(super) async fn claim_due<C: Conn>(
    c: &mut C,
    table: &str,
    columns: &str,
    (now, lease_until, limit): (UnixTime, UnixTime, u32),
) -> Result<Vec<Row>> {
    let skip = C::DIALECT.suffix(" FOR UPDATE SKIP LOCKED");
    c.fetch_all(
        q(format!(
            "UPDATE {table} SET attempts = attempts + 1, next_attempt_at = $2
             WHERE id IN (SELECT id FROM {table} WHERE state = 'pending' AND next_attempt_at <= $1
                          ORDER BY next_attempt_at, id LIMIT $3{skip})
             RETURNING {columns}"
        ))
        .bind(now)
        .bind(lease_until)
        .bind(limit),
    )
    .await
}

/// Queues a failed row of an outbox for an attempt at `now`, with a fresh attempt count.
pub(super) async fn requeue_failed<C: Conn>(
    c: &mut C,
    table: &str,
    id: i64,
    now: UnixTime,
) -> Result<bool> {
    Ok(c.execute(
        q(format!(
            "UPDATE {table} SET state = 'pending', attempts = 0, next_attempt_at = $2, finished_at = NULL
             WHERE id = $1 AND state = 'failed'"
        ))
        .bind(id)
        .bind(now),
    )
    .await?
        == 1)
}
