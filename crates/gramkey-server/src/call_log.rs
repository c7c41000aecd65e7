//! The sandbox's call log: each node keeps the latest calls of its development-mode apps in
//! memory, bounded ([`CALLS_PER_APP`] per app, [`APPS_LOGGED`] apps). Nodes do not share it:
//! `gramkey app log` asks each node it is given and merges them by time (docs/test-tools.md).
//! This module depends on nothing else in the crate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gramkey_domain::{AppId, UnixTime};
use serde::Serialize;

/// Calls kept per app on each node.
pub const CALLS_PER_APP: usize = 500;
/// Apps whose calls a node keeps; the one heard from least recently makes room.
pub const APPS_LOGGED: usize = 200;

/// One call in an app's log. Never a token, secret or query value: the route template, the
/// token's row id.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// Increasing on this node: `since` asks for what came after.
    pub seq: u64,
    /// Real time, and the app's time (they differ while its test clock is ahead).
    pub time: UnixTime,
    pub app_time: UnixTime,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub error_code: Option<u32>,
    pub latency_ms: f64,
    pub token_id: Option<i64>,
    /// The fault injected into it, if one was.
    pub fault: Option<&'static str>,
    pub node: String,
}

/// This node's call log: the latest [`CALLS_PER_APP`] calls of at most [`APPS_LOGGED`]
/// development-mode apps.
pub struct CallLog {
    node: String,
    next: AtomicU64,
    apps: Mutex<HashMap<AppId, VecDeque<Call>>>,
}

impl CallLog {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            next: AtomicU64::new(1),
            apps: Mutex::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Notes a call of `app` (`seq` and `node` are filled in here).
    pub fn record(&self, app: &AppId, mut call: Call) {
        call.seq = self.next.fetch_add(1, Ordering::Relaxed);
        call.node.clone_from(&self.node);
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if !apps.contains_key(app) && apps.len() >= APPS_LOGGED {
            let quietest = apps
                .iter()
                .min_by_key(|(_, calls)| calls.back().map_or(0, |c| c.seq))
                .map(|(id, _)| id.clone());
            if let Some(id) = quietest {
                apps.remove(&id);
            }
        }
        let calls = apps.entry(app.clone()).or_default();
        if calls.len() >= CALLS_PER_APP {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The app's calls after `since`, oldest first, at most `limit`: the newest ones when
    /// more came.
    pub fn since(&self, app: &AppId, since: u64, limit: usize) -> Vec<Call> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(calls) = apps.get(app) else {
            return Vec::new();
        };
        let newer: Vec<&Call> = calls.iter().filter(|c| c.seq > since).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(route: &str) -> Call {
        Call {
            seq: 0,
            time: 1,
            app_time: 1,
            method: "GET".into(),
            route: route.into(),
            status: 200,
            error_code: None,
            latency_ms: 0.5,
            token_id: Some(3),
            fault: None,
            node: String::new(),
        }
    }

    #[test]
    fn the_log_is_bounded_per_app_and_in_apps() {
        let log = CallLog::new("n1");
        let a = AppId::parse("1000000000000001").unwrap();
        for _ in 0..CALLS_PER_APP + 10 {
            log.record(&a, call("/me"));
        }
        let all = log.since(&a, 0, usize::MAX);
        assert_eq!(all.len(), CALLS_PER_APP);
        assert_eq!(all[0].seq, 11, "the oldest made room");
        assert_eq!(all[0].node, "n1");
        let last = all.last().unwrap().seq;
        assert!(log.since(&a, last, 10).is_empty());
        assert_eq!(log.since(&a, 0, 2).len(), 2);
        assert_eq!(
            log.since(&a, 0, 2)[1].seq,
            last,
            "the newest when more came"
        );
        for n in 0..APPS_LOGGED as u64 + 5 {
            let id = AppId::parse(&format!("{}", 2_000_000_000_000_000 + n)).unwrap();
            log.record(&id, call("/me"));
        }
        assert_eq!(log.apps.lock().unwrap().len(), APPS_LOGGED);
        assert!(
            log.since(&a, 0, 10).is_empty(),
            "the quietest app made room"
        );
    }
}
