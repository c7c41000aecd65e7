//! The `gramkey` binary as a user runs it: app and user commands against a data directory, and
//! `serve` seeding the sandbox and answering on its printed URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::Value;

fn gramkey(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gramkey"));
    c.env_remove("GRAMKEY_DATABASE_URL")
        .env_remove("GRAMKEY_SECRET_KEY")
        .env_remove("GRAMKEY_SECRET_KEY_FILE")
        .env("GRAMKEY_DATA_DIR", dir)
        .env("GRAMKEY_LOG", "warn");
    c
}

/// Kills the server when the test ends, pass or fail, so no orphan outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn app_and_user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let created = run_json(gramkey(dir.path()).args([
        "app",
        "create",
        "--name",
        "CLI App",
        "--redirect-uri",
        "https://cli.example/cb",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--scopes",
        "user_profile,user_media",
        "--mode",
        "live",
        "--json",
    ]));
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["redirect_uris"].as_array().unwrap().len(), 2);
    assert_eq!(created["mode"], "live");

    let list = run_json(gramkey(dir.path()).args(["app", "list", "--json"]));
    assert_eq!(list[0]["id"], id.as_str());
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once"
    );
    let db = std::fs::read(dir.path().join("gramkey.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is not stored"
    );

    let rotated = run_json(gramkey(dir.path()).args(["app", "rotate-secret", &id, "--json"]));
    assert_ne!(rotated["client_secret"], secret.as_str());

    let mut child = gramkey(dir.path())
        .args([
            "user",
            "create",
            "--username",
            "Erin",
            "--password-stdin",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"erin-password-1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["username"], "erin");

    let out = gramkey(dir.path())
        .args(["app", "add-role", &id, "--user", "erin", "--role", "tester"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = run_json(gramkey(dir.path()).args(["app", "show", &id, "--json"]));
    assert_eq!(shown["roles"][0]["username"], "erin");

    let users = run_json(gramkey(dir.path()).args(["user", "list", "--json"]));
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert!(
        !users.to_string().contains("argon2"),
        "no password hashes in listings"
    );

    // Bad input: clear errors, non-zero exits.
    for args in [
        &[
            "user",
            "create",
            "--username",
            "bad name",
            "--password",
            "long-enough-pw",
        ][..],
        &[
            "user",
            "create",
            "--username",
            "erin",
            "--password",
            "long-enough-pw",
        ],
        &[
            "user",
            "create",
            "--username",
            "frank",
            "--password",
            "short",
        ],
        &[
            "app",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "not a url",
            "--scopes",
            "user_profile",
        ],
        &[
            "app",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "https://x.example/cb",
            "--scopes",
            "bogus",
        ],
        &["app", "show", "12345"],
        &[
            "app",
            "set-callbacks",
            &id,
            "--deauthorize-url",
            "http://x.example/d",
        ],
        &["user", "remove-app", "--username", "erin", "--app", &id],
        &["callbacks", "retry", "999"],
        &["callbacks", "list", "--app", "12345"],
    ] {
        let out = gramkey(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should say why");
    }

    // Callback URLs: set, kept when left out, cleared when empty, shown in listings.
    let ok = |args: &[&str]| {
        let out = gramkey(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&[
        "app",
        "set-callbacks",
        &id,
        "--deauthorize-url",
        "https://cli.example/deauth",
        "--data-deletion-url",
        "http://127.0.0.1:9/delete",
    ]);
    ok(&["app", "set-callbacks", &id, "--deauthorize-url", ""]);
    let shown = run_json(gramkey(dir.path()).args(["app", "show", &id, "--json"]));
    assert_eq!(shown["deauthorize_url"], Value::Null);
    assert_eq!(shown["data_deletion_url"], "http://127.0.0.1:9/delete");
    assert!(ok(&["app", "list"]).contains("data deletion: http://127.0.0.1:9/delete"));
    assert_eq!(ok(&["callbacks", "list"]).trim(), "no callbacks");
    assert_eq!(
        run_json(gramkey(dir.path()).args(["callbacks", "list", "--app", &id, "--json"])),
        serde_json::json!([])
    );
    let out = gramkey(dir.path())
        .args(["user", "remove-app", "--username", "erin", "--app", &id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("erin has not authorized app"));

    let out = gramkey(dir.path())
        .args(["app", "delete", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        run_json(gramkey(dir.path()).args(["app", "list", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn serve_seeds_the_sandbox_and_prints_a_working_authorize_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        gramkey(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let listening = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        printed.push(line.clone());
        if let Some(rest) = line.strip_prefix("gramkey listening on ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    let text = printed.join("\n");
    let authorize_url = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("http://{listening}/oauth/authorize?"))
        })
        .map(|q| format!("http://{listening}/oauth/authorize?{q}"));
    let authorize_url =
        authorize_url.unwrap_or_else(|| panic!("no authorize URL for {listening} in {text}"));
    let page = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(&authorize_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    drop(child);
    assert!(
        page.contains("Log in to continue to gramkey Sandbox App"),
        "{page}"
    );
    assert!(text.contains("client_secret: "), "{text}");
    for user in ["alice", "bob", "carol"] {
        assert!(text.contains(user), "{text}");
    }
    assert!(listening.starts_with("127.0.0.1:"));

    // A second start does not seed again, and does not print secrets again.
    let out = gramkey(dir.path())
        .args(["app", "list", "--json"])
        .output()
        .unwrap();
    let apps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    let users: Value = serde_json::from_slice(
        &gramkey(dir.path())
            .args(["user", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 3);
}

/// Starts `gramkey serve` on `dir` with `args`; returns the process and its address.
fn start_node(
    dir: &std::path::Path,
    args: &[&str],
    log: Option<&std::path::Path>,
) -> (KillOnDrop, String) {
    let mut cmd = gramkey(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-sandbox"])
        .args(args)
        .stdout(Stdio::piped());
    match log {
        Some(path) => {
            cmd.env("GRAMKEY_LOG", "info")
                .stderr(std::fs::File::create(path).unwrap());
        }
        None => {
            cmd.stderr(Stdio::null());
        }
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(rest) = line.strip_prefix("gramkey listening on ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    (child, addr)
}

#[test]
fn two_nodes_share_one_budget_through_redis() {
    let redis = match std::env::var("GRAMKEY_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "GRAMKEY_TEST_REDIS_URL is not set, and under CI Redis tests must run"
            );
            eprintln!(
                "!!! SKIPPED two_nodes_share_one_budget_through_redis: set GRAMKEY_TEST_REDIS_URL"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let created = run_json(gramkey(dir.path()).args([
        "app",
        "create",
        "--name",
        "Shared",
        "--redirect-uri",
        "https://shared.example/cb",
        "--scopes",
        "user_profile",
        "--mode",
        "live",
        "--json",
    ]));
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    // Nobody authorized the app: its pool is one user's worth, 5 calls an hour here.
    let log = dir.path().join("a.log");
    let shared = [
        "--redis-url",
        redis.as_str(),
        "--app-calls-per-user",
        "5",
        "--log-format",
        "json",
    ];
    let (_a, a) = start_node(dir.path(), &shared, Some(&log));
    let (_b, b) = start_node(dir.path(), &shared, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<(String, u16, Value)> = rt.block_on(async {
        let c = reqwest::Client::new();
        let token: Value = c
            .get(format!(
                "http://{a}/oauth/access_token?client_id={id}&client_secret={secret}&grant_type=client_credentials"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        let mut out = Vec::new();
        for node in [&a, &b, &a, &b, &a, &b, &a, &b] {
            let r = c
                .get(format!("http://{node}/debug_token?input_token={token}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let usage = r
                .headers()
                .get("x-app-usage")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            out.push((usage, status, body));
        }
        out
    });
    let ok = statuses.iter().filter(|(_, s, _)| *s == 200).count();
    let summary: Vec<(&str, u16)> = statuses.iter().map(|(u, s, _)| (u.as_str(), *s)).collect();
    assert_eq!(ok, 5, "one budget of 5 across both nodes: {summary:?}");
    assert!(statuses[..5].iter().all(|(_, s, _)| *s == 200));
    for (i, (usage, _, _)) in statuses[..5].iter().enumerate() {
        assert!(
            usage.contains(&format!("\"call_count\":{}", (i + 1) * 20)),
            "call {i}: {usage}"
        );
    }
    for (_, s, body) in &statuses[5..] {
        assert_eq!(*s, 429);
        assert_eq!(body["error"]["code"], 4, "{body}");
    }
    // JSON logs: every line is JSON, and lines logged while serving carry the request id.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let issued = lines
        .iter()
        .find(|l| l["fields"]["message"] == "token issued")
        .unwrap_or_else(|| panic!("no token-issued line in {text}"));
    assert!(
        issued["span"]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{issued}"
    );
    assert!(!text.contains(&secret));

    // The audit log, from the CLI: the app created here, the app token issued by node A.
    let events = run_json(gramkey(dir.path()).args(["audit", "--app", &id, "--json"]));
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"app_created") && kinds.contains(&"token_issued"),
        "{events}"
    );
    assert!(kinds.contains(&"rate_limited"), "{events}");
    let issued = run_json(gramkey(dir.path()).args(["audit", "--event", "token_issued", "--json"]));
    assert_eq!(issued[0]["ip"], "127.0.0.1");
    assert!(!events.to_string().contains(&secret));
    let bad = gramkey(dir.path())
        .args(["audit", "--event", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown event"));
}
