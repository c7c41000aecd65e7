//! Webhook subscriptions and the outbox of notifications.

use async_trait::async_trait;
use gramkey_domain::callback::CallbackState;
use gramkey_domain::webhook::{Fields, OBJECT};
use gramkey_domain::{AppId, ScopeSet, ScopedUserId, UnixTime, UserId};

use super::callbacks::{claim_due, requeue_failed};
use super::{Conn, Engine, Row, SqlStore, q, transaction, write};
use crate::records::corrupt;
use crate::{
    AccountSubscription, AppSubscription, Attempt, NewWebhook, Result, Webhook, WebhookStore,
    WebhookTarget,
};

const WEBHOOK_COLUMNS: &str = "id, app_id, field, body, test, created_at, state, attempts, \
     next_attempt_at, url, status, last_error, finished_at";

fn app_id(r: &mut Row, i: usize) -> Result<AppId> {
    let s: String = r.get(i)?;
    AppId::parse(&s).ok_or_else(|| corrupt("app id", &s))
}

fn webhook_from_row(r: &mut Row) -> Result<Webhook> {
    let state: String = r.get(6)?;
    Ok(Webhook {
        id: r.get(0)?,
        app_id: app_id(r, 1)?,
        field: r.get(2)?,
        body: r.get(3)?,
        test: r.get(4)?,
        created_at: r.get(5)?,
        state: CallbackState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?,
        attempts: u32::try_from(r.get::<i64>(7)?).unwrap_or(u32::MAX),
        next_attempt_at: r.get(8)?,
        url: r.get(9)?,
        status: r
            .get::<Option<i64>>(10)?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(11)?,
        finished_at: r.get(12)?,
    })
}

/// Queues `notes` on `c`, inside whatever transaction it is in.
pub(super) async fn insert_webhooks<C: Conn>(c: &mut C, notes: &[NewWebhook]) -> Result<()> {
    for n in notes {
        c.execute(
            q("INSERT INTO webhook_deliveries (app_id, field, body, test, created_at, next_attempt_at)
               VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(n.app_id.as_str())
            .bind(n.field.as_str())
            .bind(n.body.as_str())
            .bind(n.test)
            .bind(n.created_at),
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl<E: Engine> WebhookStore for SqlStore<E> {
    async fn app_subscription(&self, app: &AppId, object: &str) -> Result<Option<AppSubscription>> {
        let mut c = self.engine.reader().await?;
        let row = c
            .fetch_optional(
                q(
                    "SELECT object, callback_url, fields, updated_at FROM webhook_subscriptions
                   WHERE app_id = $1 AND object = $2",
                )
                .bind(app.as_str())
                .bind(object),
            )
            .await?;
        row.map(|mut r| {
            Ok(AppSubscription {
                object: r.get(0)?,
                callback_url: r.get(1)?,
                fields: Fields::from_stored(&r.get::<String>(2)?),
                updated_at: r.get(3)?,
            })
        })
        .transpose()
    }

    async fn save_app_subscription(&self, app: &AppId, sub: &AppSubscription) -> Result<()> {
        let (app, sub) = (app.clone(), sub.clone());
        write!(self, |c| {
            c.execute(
                q("INSERT INTO webhook_subscriptions (app_id, object, callback_url, fields, updated_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (app_id, object) DO UPDATE SET callback_url = excluded.callback_url,
                       fields = excluded.fields, updated_at = excluded.updated_at")
                .bind(app.as_str())
                .bind(sub.object.as_str())
                .bind(sub.callback_url.as_str())
                .bind(sub.fields.to_stored())
                .bind(sub.updated_at),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn delete_app_subscription(&self, app: &AppId, object: &str) -> Result<bool> {
        let (app, object) = (app.clone(), object.to_owned());
        write!(self, |c| {
            Ok(c.execute(
                q("DELETE FROM webhook_subscriptions WHERE app_id = $1 AND object = $2")
                    .bind(app.as_str())
                    .bind(object.as_str()),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn subscribe_account(&self, sub: &AccountSubscription) -> Result<()> {
        let sub = sub.clone();
        write!(self, |c| {
            c.execute(
                q("INSERT INTO subscribed_apps (app_id, user_id, fields, created_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (user_id, app_id) DO UPDATE SET fields = excluded.fields")
                .bind(sub.app_id.as_str())
                .bind(sub.user_id.0)
                .bind(sub.fields.to_stored())
                .bind(sub.created_at),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn account_subscriptions(&self, user: UserId) -> Result<Vec<AccountSubscription>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT app_id, fields, created_at FROM subscribed_apps WHERE user_id = $1 ORDER BY created_at, app_id")
                .bind(user.0),
        )
        .await?
        .iter_mut()
        .map(|r| {
            Ok(AccountSubscription {
                app_id: app_id(r, 0)?,
                user_id: user,
                fields: Fields::from_stored(&r.get::<String>(1)?),
                created_at: r.get(2)?,
            })
        })
        .collect()
    }

    async fn unsubscribe_account(&self, app: &AppId, user: UserId) -> Result<bool> {
        let app = app.clone();
        write!(self, |c| {
            Ok(c.execute(
                q("DELETE FROM subscribed_apps WHERE user_id = $1 AND app_id = $2")
                    .bind(user.0)
                    .bind(app.as_str()),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn webhook_targets(&self, user: UserId) -> Result<Vec<WebhookTarget>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT s.app_id, g.scoped_id, g.scopes, w.fields
               FROM subscribed_apps s
               JOIN apps a ON a.id = s.app_id AND a.mode = 'live'
               JOIN webhook_subscriptions w ON w.app_id = s.app_id AND w.object = $2
               JOIN grants g ON g.app_id = s.app_id AND g.user_id = s.user_id
               WHERE s.user_id = $1
               ORDER BY s.app_id")
            .bind(user.0)
            .bind(OBJECT),
        )
        .await?
        .iter_mut()
        .map(|r| {
            let scoped: String = r.get(1)?;
            Ok(WebhookTarget {
                app_id: app_id(r, 0)?,
                account: ScopedUserId::parse(&scoped)
                    .ok_or_else(|| corrupt("scoped id", &scoped))?,
                scopes: ScopeSet::from_stored(&r.get::<String>(2)?),
                fields: Fields::from_stored(&r.get::<String>(3)?),
            })
        })
        .collect()
    }

    async fn enqueue_webhooks(&self, notes: &[NewWebhook]) -> Result<()> {
        if notes.is_empty() {
            return Ok(());
        }
        let notes = notes.to_vec();
        transaction!(self, |c| insert_webhooks(c, &notes).await).await
    }

    async fn claim_webhooks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Webhook>> {
        write!(self, |c| {
            claim_due(
                c,
                "webhook_deliveries",
                WEBHOOK_COLUMNS,
                (now, lease_until, limit),
            )
            .await?
            .iter_mut()
            .map(webhook_from_row)
            .collect()
        })
        .await
    }

    async fn finish_webhook(
        &self,
        id: i64,
        attempt_no: u32,
        attempt: &Attempt,
        status: Option<u16>,
    ) -> Result<bool> {
        let attempt = attempt.clone();
        write!(self, |c| {
            let (state, next, url, error, finished, _, _) = attempt.columns();
            Ok(c.execute(
                q("UPDATE webhook_deliveries SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at),
                       url = COALESCE($4, url), last_error = $5, finished_at = $6, status = $7
                   WHERE id = $1 AND state = 'pending' AND attempts = $8")
                .bind(id)
                .bind(state)
                .bind(next)
                .bind(url)
                .bind(error)
                .bind(finished)
                .bind(status.map(i64::from))
                .bind(attempt_no),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn webhooks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Webhook>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q(format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_deliveries
                 WHERE CAST($1 AS TEXT) IS NULL OR app_id = $1
                 ORDER BY id DESC LIMIT $2"
            ))
            .bind(app.map(AppId::as_str))
            .bind(limit),
        )
        .await?
        .iter_mut()
        .map(webhook_from_row)
        .collect()
    }

    async fn retry_webhook(&self, id: i64, now: UnixTime) -> Result<bool> {
        write!(self, |c| requeue_failed(c, "webhook_deliveries", id, now)
            .await)
        .await
    }
}
