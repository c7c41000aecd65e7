//! `gramkey app clock|faults|log`: the sandbox's test tools (docs/test-tools.md), for
//! development-mode apps. They go through a running server's API with the app's own
//! credentials (`APP_ID|APP_SECRET`: the secret from `GRAMKEY_CLIENT_SECRET`, or derived from
//! the database as the server derives it), so
//! the server applies them as it applies a client's: its rate windows are reset with its clock,
//! and the call log is the node's own memory.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gramkey_domain::AppId;
use gramkey_domain::time::graph_timestamp;

use crate::config::Global;
use serde_json::Value;

/// Where the server is.
#[derive(Args, Clone)]
pub struct ServerArg {
    /// The gramkey server's URL.
    #[arg(
        long,
        global = true,
        env = "GRAMKEY_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
}

#[derive(Subcommand)]
pub enum ClockAction {
    /// The app's time, and how far ahead of real time it is.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Move the app's clock forward (e.g. 25h, 61d, 90m).
    Advance {
        #[arg(value_parser = forward, allow_hyphen_values = true)]
        by: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Back to real time.
    Reset {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum FaultsAction {
    /// Add a rule: the next matching calls (or each with a probability) get the fault.
    Add {
        /// app_rate_limit, user_rate_limit, expired_token, password_changed, deauthorized,
        /// permission, server_error, unavailable, latency or timeout.
        fault: String,
        /// The route, e.g. /me/media; a prefix ending in /*; or * for every call.
        #[arg(long, default_value = "*")]
        path: String,
        /// Only calls of this method (GET, POST or DELETE).
        #[arg(long)]
        method: Option<String>,
        /// The next this many matching calls.
        #[arg(long, conflicts_with = "probability")]
        count: Option<u32>,
        /// Each matching call with this probability (0 to 1).
        #[arg(long)]
        probability: Option<f64>,
        /// Milliseconds, for latency and timeout.
        #[arg(long)]
        ms: Option<u64>,
        /// The wait a rate-limit fault announces (Retry-After), in seconds; 60 by default.
        #[arg(long)]
        retry_after: Option<u64>,
        /// The rule lapses after this long (e.g. 10m).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// The active rules.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove every rule.
    Clear,
}

/// `gramkey app log`.
#[derive(Args)]
pub struct LogArgs {
    /// The gramkey servers to read: each node keeps its own log; give every node of a cluster
    /// to see all of them, merged by time.
    #[arg(
        long = "server",
        env = "GRAMKEY_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    servers: Vec<String>,
    /// Keep printing calls as they come (stop with Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// How many of the latest calls to print first.
    #[arg(long, default_value_t = 20)]
    last: u32,
}

/// The app's `APP_ID|APP_SECRET`: its secret from `GRAMKEY_CLIENT_SECRET`, or derived from the
/// server's database (the data directory `gramkey serve` runs with, or its PostgreSQL).
async fn credentials(global: &Global, id: &str) -> Result<(AppId, String)> {
    let app_id = AppId::parse(id).with_context(|| format!("{id:?} is not an app id"))?;
    if let Ok(secret) = std::env::var("GRAMKEY_CLIENT_SECRET") {
        return Ok((app_id.clone(), format!("{app_id}|{}", secret.trim())));
    }
    let db = global.data_dir.join("gramkey.db");
    let hint = "run this where `gramkey serve` runs (or give its --data-dir or --database-url), or set GRAMKEY_CLIENT_SECRET to the app's secret";
    if global.database_url.is_none() && !db.exists() {
        bail!("no gramkey database at {}: {hint}", db.display());
    }
    let ops = global.open().await?;
    let app = ops
        .store
        .app(&app_id)
        .await?
        .with_context(|| format!("no app {id} in this database: {hint}"))?;
    let secret = ops.app_secret(&app).with_context(|| {
        format!("app {id}'s secret cannot be derived: rotate it once (gramkey app rotate-secret {id}), or set GRAMKEY_CLIENT_SECRET")
    })?;
    Ok((app_id.clone(), format!("{app_id}|{}", secret.expose())))
}

/// A humantime duration, forward only.
pub fn forward(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("a test clock only moves forward; `reset` puts it back on real time".into());
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 90m, 25h, 61d)"))?;
    if d.is_zero() {
        return Err("advance by more than nothing (e.g. 90m, 25h, 61d)".into());
    }
    Ok(d)
}

/// Calls the tool `edge` of the app on `server`; the Graph error's message becomes the error.
async fn tool(
    server: &str,
    (app, token): &(AppId, String),
    method: reqwest::Method,
    edge: &str,
    form: &[(&str, String)],
) -> Result<Value> {
    let base = server.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--server {base:?} is not a URL: give it as http://HOST:PORT (GRAMKEY_SERVER too)");
    }
    let url = format!("{base}/{app}/{edge}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut req = http.request(method, &url).bearer_auth(token);
    if !form.is_empty() {
        req = req.form(form);
    }
    let resp = req.send().await.map_err(|e| {
        let cause = if e.is_connect() {
            "connection refused"
        } else if e.is_timeout() {
            "no answer within 15 s"
        } else {
            "the request failed"
        };
        anyhow::anyhow!(
            "cannot reach the gramkey server at {base} ({cause}): is `gramkey serve` running there? Point --server (or GRAMKEY_SERVER) at it"
        )
    })?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("{base} did not answer as a gramkey server ({status})"))?;
    if let Some(message) = body["error"]["message"].as_str() {
        bail!("{message}");
    }
    Ok(body)
}

fn print_json(v: &Value) {
    println!("{v}");
}

pub async fn clock(
    global: &Global,
    id: &str,
    server: ServerArg,
    action: ClockAction,
) -> Result<()> {
    let creds = credentials(global, id).await?;
    let s = &server.server;
    let (view, json) = match action {
        ClockAction::Show { json } => (
            tool(s, &creds, reqwest::Method::GET, "test_clock", &[]).await?,
            json,
        ),
        ClockAction::Advance { by, json } => {
            let form = [("advance", by.as_secs().to_string())];
            let view = tool(s, &creds, reqwest::Method::POST, "test_clock", &form).await?;
            (view, json)
        }
        ClockAction::Reset { json } => (
            tool(s, &creds, reqwest::Method::DELETE, "test_clock", &[]).await?,
            json,
        ),
    };
    if json {
        print_json(&view);
        return Ok(());
    }
    let offset = view["offset_seconds"].as_i64().unwrap_or(0);
    let now = graph_timestamp(view["now"].as_i64().unwrap_or(0));
    if offset == 0 {
        println!("app {id} runs on real time: {now}");
    } else {
        let ahead = gramkey_domain::sandbox::describe_offset(offset);
        println!("app {id}'s clock reads {now}, {ahead} ahead of real time");
    }
    Ok(())
}

fn describe_rule(r: &Value) -> String {
    let mut s = format!(
        "{:>4}  {:<16} {} {}",
        r["id"].as_str().unwrap_or("?"),
        r["fault"].as_str().unwrap_or("?"),
        r["method"].as_str().unwrap_or("any"),
        r["path"].as_str().unwrap_or("*"),
    );
    if let Some(n) = r["remaining"].as_i64() {
        s.push_str(&format!("  next {n} calls"));
    }
    if let Some(p) = r["probability"].as_f64() {
        s.push_str(&format!("  probability {p}"));
    }
    if let Some(ms) = r["ms"].as_u64() {
        s.push_str(&format!("  {ms} ms"));
    }
    if let Some(secs) = r["retry_after"].as_u64() {
        s.push_str(&format!("  Retry-After {secs} s"));
    }
    if let Some(t) = r["expires_at"].as_i64() {
        s.push_str(&format!("  until {}", graph_timestamp(t)));
    }
    s
}

pub async fn faults(
    global: &Global,
    id: &str,
    server: ServerArg,
    action: FaultsAction,
) -> Result<()> {
    let creds = credentials(global, id).await?;
    let s = &server.server;
    match action {
        FaultsAction::Add {
            fault,
            path,
            method,
            count,
            probability,
            ms,
            retry_after,
            expires_in,
            json,
        } => {
            let mut form = vec![("fault", fault), ("path", path)];
            let optional = [
                ("method", method),
                ("count", count.map(|n| n.to_string())),
                ("probability", probability.map(|p| p.to_string())),
                ("ms", ms.map(|n| n.to_string())),
                ("retry_after", retry_after.map(|n| n.to_string())),
                ("expires_in", expires_in.map(|d| d.as_secs().to_string())),
            ];
            form.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
            let rule = tool(s, &creds, reqwest::Method::POST, "test_faults", &form).await?;
            if json {
                print_json(&rule);
            } else {
                println!("added  {}", describe_rule(&rule));
            }
        }
        FaultsAction::List { json } => {
            let rules = tool(s, &creds, reqwest::Method::GET, "test_faults", &[]).await?;
            if json {
                print_json(&rules);
            } else {
                let rules = rules["data"].as_array().cloned().unwrap_or_default();
                if rules.is_empty() {
                    println!("no active fault rules for app {id}");
                }
                for r in &rules {
                    println!("{}", describe_rule(r));
                }
            }
        }
        FaultsAction::Clear => {
            let done = tool(s, &creds, reqwest::Method::DELETE, "test_faults", &[]).await?;
            println!(
                "cleared {} fault rules of app {id}",
                done["deleted"].as_u64().unwrap_or(0)
            );
        }
    }
    Ok(())
}

fn describe_call(c: &Value) -> String {
    let mut s = format!(
        "{}  {:<6} {:<28} {:>3}  {:>8.1} ms",
        graph_timestamp(c["time"].as_i64().unwrap_or(0)),
        c["method"].as_str().unwrap_or("?"),
        c["route"].as_str().unwrap_or("?"),
        match c["status"].as_u64() {
            Some(0) | None => "---".to_owned(),
            Some(n) => n.to_string(),
        },
        c["latency_ms"].as_f64().unwrap_or(0.0),
    );
    if let Some(code) = c["error_code"].as_u64() {
        s.push_str(&format!("  code {code}"));
    }
    if let Some(t) = c["token_id"].as_i64() {
        s.push_str(&format!("  token #{t}"));
    }
    if let Some(f) = c["fault"].as_str() {
        s.push_str(&format!("  [fault: {f}]"));
    }
    if let Some(n) = c["node"].as_str() {
        s.push_str(&format!("  @{n}"));
    }
    s
}

pub async fn log(global: &Global, id: &str, args: LogArgs) -> Result<()> {
    let creds = credentials(global, id).await?;
    // Where each node's log was read up to.
    let mut since: Vec<u64> = vec![0; args.servers.len()];
    let mut first = true;
    loop {
        let mut calls = Vec::new();
        for (server, after) in args.servers.iter().zip(since.iter_mut()) {
            let edge = format!("test_log?since={after}&limit=500");
            let page = tool(server, &creds, reqwest::Method::GET, &edge, &[]).await?;
            *after = page["next_since"].as_u64().unwrap_or(*after);
            calls.extend(page["data"].as_array().cloned().unwrap_or_default());
        }
        calls.sort_by_key(|c| (c["time"].as_i64(), c["seq"].as_u64()));
        if first {
            let skip = calls.len().saturating_sub(args.last as usize);
            calls.drain(..skip);
            first = false;
        }
        for c in &calls {
            if args.json {
                println!("{c}");
            } else {
                println!("{}", describe_call(c));
            }
        }
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
