//! Registered apps and the roles people hold on them.

use async_trait::async_trait;
use gramkey_domain::sandbox::{Fault, FaultRule, FaultSpec};
use gramkey_domain::{AppId, AppMode, Role, ScopeSet, UnixTime, UserId};

use super::{Conn, Engine, Row, SqlStore, q, transaction, write};
use crate::cached::Stale;
use crate::records::{corrupt, join_uris, split_uris};
use crate::{App, AppFacts, AppStore, Result};
use std::sync::Arc;

/// `apps_of` reads the role after these, at index 17 (0-based).
const APP_COLUMNS: &str = "id, name, secret_hash, redirect_uris, scopes, mode, created_at, previous_secret_hash, \
     previous_secret_expires_at, refresh_tokens, secret_seed, deauthorize_url, data_deletion_url, \
     signed_requests, clock_offset, fault_rules, device_flow";

fn app_from_row(r: &mut Row) -> Result<App> {
    let id: String = r.get(0)?;
    let mode: String = r.get(5)?;
    Ok(App {
        id: AppId::parse(&id).ok_or_else(|| corrupt("app id", &id))?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        redirect_uris: split_uris(&r.get::<String>(3)?),
        scopes: ScopeSet::from_stored(&r.get::<String>(4)?),
        mode: AppMode::parse(&mode).ok_or_else(|| corrupt("app mode", &mode))?,
        created_at: r.get(6)?,
        previous_secret: match (r.get::<Option<Vec<u8>>>(7)?, r.get::<Option<i64>>(8)?) {
            (Some(h), Some(until)) => Some((h, until)),
            _ => None,
        },
        refresh_tokens: r.get(9)?,
        secret_seed: r.get(10)?,
        deauthorize_url: r.get(11)?,
        data_deletion_url: r.get(12)?,
        signed_requests: r.get(13)?,
        clock_offset: r.get(14)?,
        fault_rules: r.get(15)?,
        device_flow: r.get(16)?,
    })
}

const FAULT_COLUMNS: &str =
    "id, path, method, fault, ms, remaining, probability_ppm, expires_at, created_at";

fn fault_from_row(r: &mut Row) -> Result<FaultRule> {
    let fault: String = r.get(3)?;
    Ok(FaultRule {
        id: r.get(0)?,
        path: r.get(1)?,
        method: r.get(2)?,
        fault: Fault::parse(&fault).ok_or_else(|| corrupt("fault", &fault))?,
        ms: r.get::<i64>(4)?.unsigned_abs(),
        remaining: r.get(5)?,
        probability: r.get::<Option<i64>>(6)?.map(|ppm| ppm as f64 / 1e6),
        expires_at: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn role(stored: &str) -> Result<Role> {
    Role::parse(stored).ok_or_else(|| corrupt("role", stored))
}

impl<E: Engine> SqlStore<E> {
    /// The app, through the cache.
    async fn shared_app(&self, id: &AppId) -> Result<Option<Arc<App>>> {
        self.through(|c| &c.apps, id.clone(), async {
            let mut c = self.engine.reader().await?;
            c.fetch_optional(
                q(format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1")).bind(id.as_str()),
            )
            .await?
            .as_mut()
            .map(|r| app_from_row(r).map(Arc::new))
            .transpose()
        })
        .await
    }
}

#[async_trait]
impl<E: Engine> AppStore for SqlStore<E> {
    async fn create_app(&self, app: &App) -> Result<()> {
        let app = app.clone();
        write!(self, |c| {
            c.execute(
                q(format!(
                    "INSERT INTO apps ({APP_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10, $11, $12, 0, 0, $13)"
                ))
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(&app.secret_hash)
                .bind(join_uris(&app.redirect_uris))
                .bind(app.scopes.to_stored())
                .bind(app.mode.as_str())
                .bind(app.created_at)
                .bind(app.refresh_tokens)
                .bind(&app.secret_seed)
                .bind(&app.deauthorize_url)
                .bind(&app.data_deletion_url)
                .bind(app.signed_requests)
                .bind(app.device_flow),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        Ok(self.shared_app(id).await?.map(|a| (*a).clone()))
    }

    async fn app_facts(&self, id: &AppId) -> Result<Option<AppFacts>> {
        Ok(self.shared_app(id).await?.map(|a| AppFacts::of(&a)))
    }

    async fn apps(&self) -> Result<Vec<App>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(q(format!(
            "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, id"
        )))
        .await?
        .iter_mut()
        .map(app_from_row)
        .collect()
    }

    async fn set_app_secret(
        &self,
        id: &AppId,
        secret_hash: &[u8],
        secret_seed: &[u8],
        keep_old_until: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool> {
        let stale = id.clone();
        let (id, hash, seed) = (id.clone(), secret_hash.to_vec(), secret_seed.to_vec());
        transaction!(self, self.after(move |_| vec![Stale::AppAndTokens(stale)]), |c| {
            // The right-hand sides see the row as it was: the old secret becomes the previous one.
            let found = c
                .execute(
                    q("UPDATE apps SET
                           previous_secret_hash = CASE WHEN CAST($3 AS BIGINT) IS NULL THEN NULL ELSE secret_hash END,
                           previous_secret_expires_at = $3, secret_hash = $1, secret_seed = $4
                       WHERE id = $2")
                    .bind(&hash)
                    .bind(id.as_str())
                    .bind(keep_old_until)
                    .bind(&seed),
                )
                .await?
                == 1;
            let until = keep_old_until.unwrap_or(now);
            c.execute(
                q("UPDATE tokens SET expires_at = CASE WHEN expires_at < $2 THEN expires_at ELSE $2 END
                   WHERE app_id = $1 AND kind = 'app' AND revoked_at IS NULL")
                .bind(id.as_str())
                .bind(until),
            )
            .await?;
            Ok(found)
        })
        .await
    }

    async fn update_app(&self, app: &App) -> Result<bool> {
        let stale = app.id.clone();
        let app = app.clone();
        write!(self, self.after(move |_| vec![Stale::App(stale)]), |c| {
            Ok(c.execute(
                q("UPDATE apps SET name = $2, redirect_uris = $3, scopes = $4, mode = $5, refresh_tokens = $6,
                       deauthorize_url = $7, data_deletion_url = $8, signed_requests = $9, device_flow = $10
                   WHERE id = $1")
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(join_uris(&app.redirect_uris))
                .bind(app.scopes.to_stored())
                .bind(app.mode.as_str())
                .bind(app.refresh_tokens)
                .bind(&app.deauthorize_url)
                .bind(&app.data_deletion_url)
                .bind(app.signed_requests)
                .bind(app.device_flow),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let stale = id.clone();
        let id = id.clone();
        write!(
            self,
            self.after(move |_| vec![Stale::AppAndTokens(stale)]),
            |c| {
                Ok(
                    c.execute(q("DELETE FROM apps WHERE id = $1").bind(id.as_str()))
                        .await?
                        == 1,
                )
            }
        )
        .await
    }

    async fn set_role(&self, app: &AppId, user: UserId, role: Role, now: UnixTime) -> Result<()> {
        let app = app.clone();
        write!(self, |c| {
            c.execute(
                q("INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role")
                .bind(app.as_str())
                .bind(user.0)
                .bind(role.as_str())
                .bind(now),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn role(&self, app: &AppId, user: UserId) -> Result<Option<Role>> {
        let mut c = self.engine.reader().await?;
        let found = c
            .fetch_optional(
                q("SELECT role FROM app_roles WHERE app_id = $1 AND user_id = $2")
                    .bind(app.as_str())
                    .bind(user.0),
            )
            .await?;
        found.map(|mut r| role(&r.get::<String>(0)?)).transpose()
    }

    async fn roles(&self, app: &AppId) -> Result<Vec<(UserId, Role)>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT user_id, role FROM app_roles WHERE app_id = $1 ORDER BY created_at, user_id")
                .bind(app.as_str()),
        )
        .await?
        .into_iter()
        .map(|mut r| Ok((UserId(r.get(0)?), role(&r.get::<String>(1)?)?)))
        .collect()
    }

    async fn apps_of(&self, user: UserId) -> Result<Vec<(App, Role)>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q(format!(
                "SELECT {APP_COLUMNS}, (SELECT role FROM app_roles r WHERE r.app_id = apps.id AND r.user_id = $1)
                 FROM apps WHERE id IN (SELECT app_id FROM app_roles WHERE user_id = $1)
                 ORDER BY created_at, id"
            ))
            .bind(user.0),
        )
        .await?
        .iter_mut()
        .map(|r| Ok((app_from_row(r)?, role(&r.get::<String>(17)?)?)))
        .collect()
    }

    async fn set_clock(&self, id: &AppId, offset: i64, shift: i64) -> Result<bool> {
        let stale = id.clone();
        let id = id.clone();
        transaction!(self, self.after(move |_| vec![Stale::App(stale)]), |c| {
            let found = c
                .execute(
                    q("UPDATE apps SET clock_offset = $2 WHERE id = $1")
                        .bind(id.as_str())
                        .bind(offset),
                )
                .await?
                == 1;
            if shift != 0 {
                for table in ["callbacks", "webhook_deliveries"] {
                    c.execute(
                        q(format!(
                            "UPDATE {table} SET next_attempt_at = next_attempt_at - $2
                             WHERE app_id = $1 AND state = 'pending'"
                        ))
                        .bind(id.as_str())
                        .bind(shift),
                    )
                    .await?;
                }
            }
            Ok(found)
        })
        .await
    }

    async fn clocked_apps(&self) -> Result<Vec<(AppId, i64)>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(q(
            "SELECT id, clock_offset FROM apps WHERE clock_offset <> 0 AND mode = 'development'",
        ))
        .await?
        .iter_mut()
        .map(|r| {
            let id: String = r.get(0)?;
            Ok((
                AppId::parse(&id).ok_or_else(|| corrupt("app id", &id))?,
                r.get(1)?,
            ))
        })
        .collect()
    }

    async fn add_fault(&self, id: &AppId, spec: &FaultSpec, now: UnixTime) -> Result<FaultRule> {
        let stale = id.clone();
        let (id, spec) = (id.clone(), spec.clone());
        transaction!(self, self.after(move |_| vec![Stale::App(stale)]), |c| {
            let mut row = c
                .fetch_one(
                    q(format!(
                        "INSERT INTO test_faults
                           (app_id, path, method, fault, ms, remaining, probability_ppm, expires_at, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         RETURNING {FAULT_COLUMNS}"
                    ))
                    .bind(id.as_str())
                    .bind(&spec.path)
                    .bind(&spec.method)
                    .bind(spec.fault.as_str())
                    .bind(i64::try_from(spec.ms).unwrap_or(i64::MAX))
                    .bind(spec.count)
                    .bind(spec.probability.map(|p| (p * 1e6).round() as i64))
                    .bind(spec.expires_in.map(|s| now.saturating_add(s)))
                    .bind(now),
                )
                .await?;
            c.execute(
                q("UPDATE apps SET fault_rules = fault_rules + 1 WHERE id = $1").bind(id.as_str()),
            )
            .await?;
            fault_from_row(&mut row)
        })
        .await
    }

    async fn faults(&self, id: &AppId) -> Result<Vec<FaultRule>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q(format!(
                "SELECT {FAULT_COLUMNS} FROM test_faults WHERE app_id = $1 ORDER BY id"
            ))
            .bind(id.as_str()),
        )
        .await?
        .iter_mut()
        .map(fault_from_row)
        .collect()
    }

    async fn take_fault(&self, rule: i64) -> Result<bool> {
        write!(self, |c| {
            Ok(c.execute(
                q("UPDATE test_faults SET remaining = remaining - 1 WHERE id = $1 AND remaining > 0")
                    .bind(rule),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn clear_faults(&self, id: &AppId) -> Result<u64> {
        let stale = id.clone();
        let id = id.clone();
        transaction!(self, self.after(move |_| vec![Stale::App(stale)]), |c| {
            let n = c
                .execute(q("DELETE FROM test_faults WHERE app_id = $1").bind(id.as_str()))
                .await?;
            c.execute(q("UPDATE apps SET fault_rules = 0 WHERE id = $1").bind(id.as_str()))
                .await?;
            Ok(n)
        })
        .await
    }
}
