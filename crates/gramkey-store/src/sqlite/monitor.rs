//! The audit log, hourly usage, token networks and gauges on SQLite.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, TokenKind, UnixTime, UserId};
use rusqlite::types::Value;
use rusqlite::{Row, params, params_from_iter};

use super::SqliteStore;
use crate::records::corrupt;
use crate::{
    AuditEvent, AuditQuery, MonitorStore, NetworkSeen, NewAuditEvent, Result, UsageDelta, UsageHour,
};

pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, event, outcome, app_id, user_id, token_id, ip, user_agent, detail";

/// An audit row as both backends read it, before its text columns are checked.
pub(crate) type AuditRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn to_audit(
    (id, at, event, outcome, app, user, token_id, ip, user_agent, detail): AuditRow,
) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id,
        event: NewAuditEvent {
            at,
            kind: AuditKind::parse(&event).ok_or_else(|| corrupt("audit event", &event))?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("audit outcome", &outcome))?,
            app_id: app
                .map(|a| AppId::parse(&a).ok_or_else(|| corrupt("app id", &a)))
                .transpose()?,
            user_id: user.map(UserId),
            token_id,
            ip,
            user_agent,
            detail,
        },
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
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
        r.get(9)?,
    ))
}

/// The query for `q`, with a condition only for each filter that is set (so each can use its
/// index), numbered with `mark` (`?` or `$`) in the order app, user, kind, since, before id,
/// and the limit last.
pub(crate) fn audit_sql(q: &AuditQuery, mark: char) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("{mark}{n}")
    };
    let mut filters = Vec::new();
    if q.app.is_some() {
        filters.push(format!("app_id = {}", next()));
    }
    if q.user.is_some() {
        filters.push(format!("user_id = {}", next()));
    }
    if q.kind.is_some() {
        filters.push(format!("event = {}", next()));
    }
    if q.since.is_some() {
        filters.push(format!("at >= {}", next()));
    }
    if q.before_id.is_some() {
        filters.push(format!("id < {}", next()));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log {filter} ORDER BY id DESC LIMIT {}",
        next()
    )
}

/// How many events a query reads: 100 when it does not say, never more than 1000.
pub(crate) fn audit_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 { 100 } else { limit.min(1000) })
}

/// One app's hour of a [`UsageDelta`], ready to add.
pub(crate) struct UsageRow {
    pub app: String,
    pub hour: UnixTime,
    pub calls: i64,
    pub throttled: i64,
    pub peak_call_pct: i64,
    /// `(code, count)`, one per code, by code.
    pub errors: Vec<(i64, i64)>,
    /// Distinct, in order.
    pub users: Vec<i64>,
}

/// The deltas with an app, in (app, hour) order, each code and user once: concurrent flushes
/// then take row locks in the same order, and no statement touches one row twice.
pub(crate) fn usage_rows(deltas: &[UsageDelta]) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = deltas
        .iter()
        .filter_map(|d| {
            let app = d.app_id.as_ref()?;
            let mut errors = BTreeMap::<i64, i64>::new();
            for &(code, n) in &d.errors {
                let e = errors.entry(i64::from(code)).or_default();
                *e = e.saturating_add(int(n));
            }
            Some(UsageRow {
                app: app.as_str().to_owned(),
                hour: d.hour,
                calls: int(d.calls),
                throttled: int(d.throttled),
                peak_call_pct: int(d.peak_call_pct),
                errors: errors.into_iter().collect(),
                users: d
                    .users
                    .iter()
                    .map(|u| u.0)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.app, a.hour).cmp(&(&b.app, b.hour)));
    rows
}

/// A count as stored.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as read.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// An hour's row (hour, calls, throttled, peak, distinct users) before its errors are added.
pub(crate) type UsageHourRow = (i64, i64, i64, i64, i64);

/// The hours with their errors (`(hour, code, n)`, by hour then code) attached.
pub(crate) fn to_usage(hours: Vec<UsageHourRow>, errors: Vec<(i64, i64, i64)>) -> Vec<UsageHour> {
    let mut errors = errors.into_iter().peekable();
    hours
        .into_iter()
        .map(|(hour, calls, throttled, peak_call_pct, distinct_users)| {
            // Errors of an hour with no row (its row purged first) are skipped.
            while errors.next_if(|e| e.0 < hour).is_some() {}
            let mut mine = Vec::new();
            while let Some((_, code, n)) = errors.next_if(|e| e.0 == hour) {
                mine.push((u32::try_from(code).unwrap_or_default(), count(n)));
            }
            UsageHour {
                hour,
                calls: count(calls),
                throttled: count(throttled),
                peak_call_pct: count(peak_call_pct),
                distinct_users: count(distinct_users),
                errors: mine,
            }
        })
        .collect()
}

pub(crate) fn to_kinds(rows: Vec<(String, i64)>) -> Result<Vec<(TokenKind, u64)>> {
    rows.into_iter()
        .map(|(kind, n)| {
            Ok((
                TokenKind::parse(&kind).ok_or_else(|| corrupt("token kind", &kind))?,
                count(n),
            ))
        })
        .collect()
}

#[async_trait]
impl MonitorStore for SqliteStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<i64> {
        let e = event.clone();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO audit_log (at, event, outcome, app_id, user_id, token_id, ip, user_agent, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
            )?
            .query_row(
                params![
                    e.at,
                    e.kind.as_str(),
                    e.outcome.as_str(),
                    e.app_id.as_ref().map(AppId::as_str),
                    e.user_id.map(|u| u.0),
                    e.token_id,
                    e.ip,
                    e.user_agent,
                    e.detail
                ],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut values = Vec::new();
        if let Some(app) = &q.app {
            values.push(Value::Text(app.as_str().to_owned()));
        }
        if let Some(user) = q.user {
            values.push(Value::Integer(user.0));
        }
        if let Some(kind) = q.kind {
            values.push(Value::Text(kind.as_str().to_owned()));
        }
        if let Some(since) = q.since {
            values.push(Value::Integer(since));
        }
        if let Some(id) = q.before_id {
            values.push(Value::Integer(id));
        }
        values.push(Value::Integer(audit_limit(q.limit)));
        self.read(|c| {
            c.prepare_cached(&audit_sql(q, '?'))?
                .query_map(params_from_iter(values), audit_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?
        .into_iter()
        .map(to_audit)
        .collect()
    }

    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let rows = usage_rows(deltas);
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for u in &rows {
                c.prepare_cached(
                    "INSERT INTO app_usage (app_id, hour, calls, throttled, peak_call_pct)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (app_id, hour) DO UPDATE SET
                         calls = app_usage.calls + excluded.calls,
                         throttled = app_usage.throttled + excluded.throttled,
                         peak_call_pct = MAX(app_usage.peak_call_pct, excluded.peak_call_pct)",
                )?
                .execute(params![u.app, u.hour, u.calls, u.throttled, u.peak_call_pct])?;
                for (code, n) in &u.errors {
                    c.prepare_cached(
                        "INSERT INTO app_usage_errors (app_id, hour, code, n) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (app_id, hour, code) DO UPDATE SET n = app_usage_errors.n + excluded.n",
                    )?
                    .execute(params![u.app, u.hour, code, n])?;
                }
                for user in &u.users {
                    c.prepare_cached(
                        "INSERT INTO app_usage_users (app_id, hour, user_id) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![u.app, u.hour, user])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<Vec<UsageHour>> {
        let (hours, errors) = self.read(|c| {
            let args = params![app.as_str(), since, until];
            let hours = c
                .prepare_cached(
                    "SELECT u.hour, u.calls, u.throttled, u.peak_call_pct,
                         (SELECT COUNT(*) FROM app_usage_users x WHERE x.app_id = u.app_id AND x.hour = u.hour)
                     FROM app_usage u WHERE u.app_id = ?1 AND u.hour >= ?2 AND u.hour < ?3 ORDER BY u.hour",
                )?
                .query_map(args, |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let errors = c
                .prepare_cached(
                    "SELECT hour, code, n FROM app_usage_errors
                     WHERE app_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour, code",
                )?
                .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((hours, errors))
        })?;
        Ok(to_usage(hours, errors))
    }

    async fn distinct_users(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(DISTINCT user_id) FROM app_usage_users
                 WHERE app_id = ?1 AND hour >= ?2 AND hour < ?3",
            )?
            .query_row(params![app.as_str(), since, until], |r| r.get(0))
        })?;
        Ok(count(n))
    }

    async fn note_network(
        &self,
        token_id: i64,
        network: &str,
        now: UnixTime,
    ) -> Result<NetworkSeen> {
        let network = network.to_owned();
        self.write(move |c| {
            // The single writer runs this insert and count with nothing in between. A token
            // that is gone (purged, its app deleted) records nothing.
            let new = c
                .prepare_cached(
                    "INSERT INTO token_networks (token_id, network, first_seen)
                     SELECT id, ?2, ?3 FROM tokens WHERE id = ?1
                     ON CONFLICT (token_id, network) DO NOTHING",
                )?
                .execute(params![token_id, network, now])?
                == 1;
            let others: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM token_networks WHERE token_id = ?1 AND network <> ?2",
                )?
                .query_row(params![token_id, network], |r| r.get(0))?;
            Ok(NetworkSeen {
                new,
                known_before: count(others),
            })
        })
        .await
    }

    async fn authorized_users(&self, app: &AppId) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM grants WHERE app_id = ?1")?
                .query_row([app.as_str()], |r| r.get(0))
        })?;
        Ok(count(n))
    }

    async fn active_tokens(&self, now: UnixTime) -> Result<Vec<(TokenKind, u64)>> {
        let rows = self.read(|c| {
            c.prepare_cached(
                "SELECT kind, COUNT(*) FROM tokens
                 WHERE revoked_at IS NULL AND expires_at > ?1 GROUP BY kind ORDER BY kind",
            )?
            .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        to_kinds(rows)
    }

    async fn pending_callbacks(&self) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'")?
                .query_row([], |r| r.get(0))
        })?;
        Ok(count(n))
    }

    async fn ping(&self) -> Result<()> {
        // A read connection, and the writer thread: a stuck writer is not ready either.
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))?;
        self.write(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
