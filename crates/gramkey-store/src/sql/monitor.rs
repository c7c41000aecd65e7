//! The audit log, hourly usage, token networks and the counts behind the gauges.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, TokenKind, UnixTime, UserId};

use super::{Append, Bind, Conn, Engine, Kind, Row, SqlStore, count, int, q, transaction, write};
use crate::records::corrupt;
use crate::{
    AuditEvent, AuditQuery, MonitorStore, NetworkSeen, NewAuditEvent, Result, UsageDelta, UsageHour,
};

/// Audit events, as `append_audit` gives them.
static AUDIT_LOG: Append = Append {
    table: "audit_log",
    columns: &[
        ("at", Kind::Int),
        ("event", Kind::Text),
        ("outcome", Kind::Text),
        ("app_id", Kind::Text),
        ("user_id", Kind::Int),
        ("token_id", Kind::Int),
        ("ip", Kind::Text),
        ("user_agent", Kind::Text),
        ("detail", Kind::Text),
    ],
};

const AUDIT_COLUMNS: &str =
    "id, at, event, outcome, app_id, user_id, token_id, ip, user_agent, detail";

fn audit_from_row(r: &mut Row) -> Result<AuditEvent> {
    let event: String = r.get(2)?;
    let outcome: String = r.get(3)?;
    Ok(AuditEvent {
        id: r.get(0)?,
        event: NewAuditEvent {
            at: r.get(1)?,
            kind: AuditKind::parse(&event).ok_or_else(|| corrupt("audit event", &event))?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("audit outcome", &outcome))?,
            app_id: r
                .get::<Option<String>>(4)?
                .map(|a| AppId::parse(&a).ok_or_else(|| corrupt("app id", &a)))
                .transpose()?,
            user_id: r.get::<Option<i64>>(5)?.map(UserId),
            token_id: r.get(6)?,
            ip: r.get(7)?,
            user_agent: r.get(8)?,
            detail: r.get(9)?,
        },
    })
}

/// How many events a query reads: 100 when it does not say, never more than 1000.
fn audit_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 { 100 } else { limit.min(1000) })
}

/// One app's hour of a [`UsageDelta`], ready to add.
struct UsageRow {
    app: String,
    hour: UnixTime,
    calls: i64,
    throttled: i64,
    peak_call_pct: i64,
    /// `(code, count)`, one per code, by code.
    errors: Vec<(i64, i64)>,
    /// Distinct, in order.
    users: Vec<i64>,
}

/// The deltas with an app, in (app, hour) order, each code and user once: concurrent flushes
/// then take row locks in the same order, and no statement touches one row twice.
fn usage_rows(deltas: &[UsageDelta]) -> Vec<UsageRow> {
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

#[async_trait]
impl<E: Engine> MonitorStore for SqlStore<E> {
    /// Appended: the events of concurrent requests may share one statement and one commit.
    async fn append_audit(&self, e: &NewAuditEvent) -> Result<i64> {
        let row = vec![
            e.at.value(),
            e.kind.as_str().value(),
            e.outcome.as_str().value(),
            e.app_id.as_ref().map(|a| a.as_str().to_owned()).value(),
            e.user_id.map(|u| u.0).value(),
            e.token_id.value(),
            e.ip.clone().value(),
            e.user_agent.clone().value(),
            e.detail.clone().value(),
        ];
        self.engine.append(&AUDIT_LOG, row).await
    }

    /// A condition only for each filter that is set, so each can use its index.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut filters = Vec::new();
        let mut select = q("");
        if let Some(app) = &query.app {
            select = select.bind(app.as_str());
            filters.push(format!("app_id = ${}", select.args.len()));
        }
        if let Some(user) = query.user {
            select = select.bind(user.0);
            filters.push(format!("user_id = ${}", select.args.len()));
        }
        if let Some(kind) = query.kind {
            select = select.bind(kind.as_str());
            filters.push(format!("event = ${}", select.args.len()));
        }
        if let Some(since) = query.since {
            select = select.bind(since);
            filters.push(format!("at >= ${}", select.args.len()));
        }
        if let Some(id) = query.before_id {
            select = select.bind(id);
            filters.push(format!("id < ${}", select.args.len()));
        }
        select = select.bind(audit_limit(query.limit));
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        };
        select.sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {filter} ORDER BY id DESC LIMIT ${}",
            select.args.len()
        )
        .into();
        let mut c = self.engine.reader().await?;
        c.fetch_all(select)
            .await?
            .iter_mut()
            .map(audit_from_row)
            .collect()
    }

    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let rows = usage_rows(deltas);
        if rows.is_empty() {
            return Ok(());
        }
        transaction!(self, |c| {
            for u in &rows {
                c.execute(
                    q("INSERT INTO app_usage (app_id, hour, calls, throttled, peak_call_pct)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (app_id, hour) DO UPDATE SET
                           calls = app_usage.calls + excluded.calls,
                           throttled = app_usage.throttled + excluded.throttled,
                           peak_call_pct = CASE WHEN app_usage.peak_call_pct > excluded.peak_call_pct
                               THEN app_usage.peak_call_pct ELSE excluded.peak_call_pct END")
                    .bind(&u.app)
                    .bind(u.hour)
                    .bind(u.calls)
                    .bind(u.throttled)
                    .bind(u.peak_call_pct),
                )
                .await?;
                for &(code, n) in &u.errors {
                    c.execute(
                        q("INSERT INTO app_usage_errors (app_id, hour, code, n) VALUES ($1, $2, $3, $4)
                           ON CONFLICT (app_id, hour, code) DO UPDATE SET n = app_usage_errors.n + excluded.n")
                        .bind(&u.app)
                        .bind(u.hour)
                        .bind(code)
                        .bind(n),
                    )
                    .await?;
                }
                for &user in &u.users {
                    c.execute(
                        q("INSERT INTO app_usage_users (app_id, hour, user_id) VALUES ($1, $2, $3)
                           ON CONFLICT DO NOTHING")
                        .bind(&u.app)
                        .bind(u.hour)
                        .bind(user),
                    )
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<Vec<UsageHour>> {
        let mut c = self.engine.reader().await?;
        let hours = c
            .fetch_all(
                q("SELECT u.hour, u.calls, u.throttled, u.peak_call_pct,
                       (SELECT COUNT(*) FROM app_usage_users x WHERE x.app_id = u.app_id AND x.hour = u.hour)
                   FROM app_usage u WHERE u.app_id = $1 AND u.hour >= $2 AND u.hour < $3 ORDER BY u.hour")
                .bind(app.as_str())
                .bind(since)
                .bind(until),
            )
            .await?;
        let errors = c
            .fetch_all(
                q("SELECT hour, code, n FROM app_usage_errors
                   WHERE app_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, code")
                .bind(app.as_str())
                .bind(since)
                .bind(until),
            )
            .await?;
        let mut errors = errors
            .into_iter()
            .map(|mut e| Ok((e.get::<i64>(0)?, e.get::<i64>(1)?, e.get::<i64>(2)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .peekable();
        hours
            .into_iter()
            .map(|mut h| {
                let hour: i64 = h.get(0)?;
                // Errors of an hour with no row (its row purged first) are skipped.
                while errors.next_if(|e| e.0 < hour).is_some() {}
                let mut mine = Vec::new();
                while let Some((_, code, n)) = errors.next_if(|e| e.0 == hour) {
                    mine.push((u32::try_from(code).unwrap_or_default(), count(n)));
                }
                Ok(UsageHour {
                    hour,
                    calls: count(h.get(1)?),
                    throttled: count(h.get(2)?),
                    peak_call_pct: count(h.get(3)?),
                    distinct_users: count(h.get(4)?),
                    errors: mine,
                })
            })
            .collect()
    }

    async fn distinct_users(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<u64> {
        let mut c = self.engine.reader().await?;
        c.count(
            q("SELECT COUNT(DISTINCT user_id) FROM app_usage_users
               WHERE app_id = $1 AND hour >= $2 AND hour < $3")
            .bind(app.as_str())
            .bind(since)
            .bind(until),
        )
        .await
    }

    async fn note_network(
        &self,
        token_id: i64,
        network: &str,
        now: UnixTime,
    ) -> Result<NetworkSeen> {
        let network = network.to_owned();
        transaction!(self, |c| {
            // Of two racing first uses from one network, the second insert waits for the first
            // (the single writer, or the unique key's lock) and then does nothing. A token that
            // is gone (purged, its app deleted) records nothing.
            let new = c
                .execute(
                    q("INSERT INTO token_networks (token_id, network, first_seen)
                       SELECT id, $2, $3 FROM tokens WHERE id = $1
                       ON CONFLICT (token_id, network) DO NOTHING")
                    .bind(token_id)
                    .bind(&network)
                    .bind(now),
                )
                .await?
                == 1;
            let others = c
                .count(
                    q("SELECT COUNT(*) FROM token_networks WHERE token_id = $1 AND network <> $2")
                        .bind(token_id)
                        .bind(&network),
                )
                .await?;
            Ok(NetworkSeen {
                new,
                known_before: others,
            })
        })
        .await
    }

    async fn authorized_users(&self, app: &AppId) -> Result<u64> {
        let mut c = self.engine.reader().await?;
        c.count(q("SELECT COUNT(*) FROM grants WHERE app_id = $1").bind(app.as_str()))
            .await
    }

    async fn active_tokens(&self, now: UnixTime) -> Result<Vec<(TokenKind, u64)>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q("SELECT kind, COUNT(*) FROM tokens
               WHERE revoked_at IS NULL AND expires_at > $1 GROUP BY kind ORDER BY kind")
            .bind(now),
        )
        .await?
        .into_iter()
        .map(|mut r| {
            let kind: String = r.get(0)?;
            Ok((
                TokenKind::parse(&kind).ok_or_else(|| corrupt("token kind", &kind))?,
                count(r.get(1)?),
            ))
        })
        .collect()
    }

    async fn pending_callbacks(&self) -> Result<u64> {
        let mut c = self.engine.reader().await?;
        c.count(q("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'"))
            .await
    }

    /// A read connection, and the writer: a stuck SQLite writer is not ready either.
    async fn ping(&self) -> Result<()> {
        self.engine.reader().await?.fetch_one(q("SELECT 1")).await?;
        write!(self, |c| c.fetch_one(q("SELECT 1")).await.map(drop)).await
    }
}
