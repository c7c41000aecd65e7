//! The `gramkey` binary as a user runs it: app and user commands against a data directory, and
//! `serve` seeding the sandbox and answering on its printed URL.

// Test helpers fail loudly; real processes and sockets wait in real time (the clock rule is for
// the product code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

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
    assert_eq!(ok(&["webhooks", "list"]).trim(), "no webhook notifications");
    let out = gramkey(dir.path())
        .args(["webhooks", "test", &id, "comments"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the app has no webhook subscription"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gramkey(dir.path())
        .args([
            "sandbox",
            "comment",
            "--as",
            "erin",
            "17900000000000001",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no post with id 17900000000000001"));
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
        page.contains("Log in to continue to <bdi>gramkey Sandbox App</bdi>"),
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
    // Instagram never sent refresh tokens: the sandbox app does not opt in to them.
    assert_eq!(apps[0]["refresh_tokens"], false);
    assert_eq!(apps[0]["signed_requests"], false);
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
    start_command(gramkey(dir), args, log)
}

/// Starts `cmd serve …` (a `gramkey` command with its environment set) with `args`.
fn start_command(
    mut cmd: Command,
    args: &[&str],
    log: Option<&std::path::Path>,
) -> (KillOnDrop, String) {
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

// ---------------------------------------------------------------------------------------------
// The developer side: `gramkey auth …` against a real server.

const VAULT_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn auth(vault: &std::path::Path, key: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gramkey"));
    c.env_remove("GRAMKEY_VAULT_KEY")
        .env_remove("GRAMKEY_VAULT_KEY_FILE")
        .env("GRAMKEY_LOG", "warn")
        .args(["auth", "--vault"])
        .arg(vault);
    if let Some(k) = key {
        c.env("GRAMKEY_VAULT_KEY", k);
    }
    c
}

/// A server on `clock` for the developer-side tests, with a live app (device flow on) and
/// alice, who has 30 media; returns (base URL, state, client id, secret).
async fn dev_server(
    clock: std::sync::Arc<gramkey_domain::time::ManualClock>,
    real_now: i64,
) -> (String, gramkey_server::AppState, String, String) {
    use std::sync::Arc;
    let (store, db_dir) = gramkey_store::test_support::fresh_sqlite().unwrap();
    std::mem::forget(db_dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = gramkey_server::AppState::new(
        store,
        clock,
        Arc::new(gramkey_domain::OsEntropy),
        b"cli auth test key",
        gramkey_server::ServerConfig::new(base.clone()),
    );
    let node = gramkey_server::Node::new(state.clone(), listener);
    tokio::spawn(node.run_until(std::future::pending()));
    let (app, secret) = state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            gramkey_server::ops::NewAppInput {
                name: "CLI sign-in".into(),
                redirect_uris: vec!["http://127.0.0.1/callback".into()],
                scopes: "user_profile,user_media".into(),
                mode: gramkey_domain::AppMode::Live,
                refresh_tokens: false,
                signed_requests: false,
                device_flow: true,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await
        .unwrap();
    let alice = state
        .ops
        .create_user(
            "alice",
            gramkey_domain::Password::new("alice-password"),
            gramkey_store::Profile::default(),
        )
        .await
        .unwrap();
    gramkey_server::sandbox::add_generated_media(
        &state.ops,
        &gramkey_domain::OsEntropy,
        &alice,
        30,
        &base,
        real_now - 3 * 86_400,
    )
    .await
    .unwrap();
    (base, state, app.id.to_string(), secret.expose().to_owned())
}

#[test]
fn auth_login_refresh_once_and_a_vault_that_keeps_its_tokens() {
    use std::sync::Arc;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault.json");
    // The server's clock starts two days back, so the token is old enough to refresh once the
    // clock is moved to now.
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let clock = Arc::new(gramkey_domain::time::ManualClock::new(
        real_now - 2 * 86_400,
    ));
    let (base, state, client_id, secret) = rt.block_on(dev_server(clock.clone(), real_now));
    // No key and no --insecure-storage: refused, before anything else.
    let out = auth(&vault, None).args(["status"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no vault key"));

    // Login: the test reads the URL the CLI prints and plays the browser, which lands on the
    // CLI's loopback listener.
    let mut child = KillOnDrop(
        auth(&vault, Some(VAULT_KEY))
            .args([
                "login",
                "--host",
                &base,
                "--client-id",
                &client_id,
                "--no-browser",
            ])
            .env("GRAMKEY_CLIENT_SECRET", &secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("login exited early").unwrap();
        if line.trim_start().starts_with("http") {
            break line.trim().to_owned();
        }
    };
    // A request on the loopback port that is not this sign-in's redirect is turned away, and
    // the CLI keeps waiting.
    let redirect = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let probe = rt.block_on(async {
        reqwest::get(format!("{redirect}?code=AQforged&state=not-this-one"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(probe, reqwest::StatusCode::BAD_REQUEST);
    let landed = rt.block_on(gramkey_server::test_support::sign_in_and_consent(
        &url,
        "alice",
        "alice-password",
    ));
    assert!(landed.starts_with("http://127.0.0.1:"), "{landed}");
    let page = rt.block_on(async { reqwest::get(&landed).await.unwrap().text().await.unwrap() });
    assert!(page.contains("Received"), "{page}");
    let status = child.0.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{rest:?} {err}");
    assert!(
        rest.iter().any(|l| l.contains("Signed in as alice")),
        "{rest:?}"
    );

    // The token works, and the vault holds it only encrypted.
    let token = String::from_utf8(
        auth(&vault, Some(VAULT_KEY))
            .arg("token")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert!(token.starts_with("IGQV"), "{token}");
    let raw = std::fs::read_to_string(&vault).unwrap();
    assert!(
        !raw.contains(&token),
        "the vault file holds the token in clear"
    );
    let status = String::from_utf8(
        auth(&vault, Some(VAULT_KEY))
            .arg("status")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        status.contains("alice") && status.contains("AES-256-GCM"),
        "{status}"
    );

    // A wrong key: a clear error, and the vault is untouched.
    let before = std::fs::read(&vault).unwrap();
    let wrong = "ff".repeat(32);
    for args in [vec!["token"], vec!["refresh", "--all"], vec!["logout"]] {
        let out = auth(&vault, Some(&wrong)).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not open"),
            "{args:?}"
        );
    }
    let out = auth(&vault, None)
        .args(["--insecure-storage", "token"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is encrypted"));
    assert_eq!(
        std::fs::read(&vault).unwrap(),
        before,
        "no token lost or overwritten"
    );

    // A token signed in a moment ago is not due, whatever the threshold: Instagram refreshes
    // none younger than 24 hours.
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["refresh", "--all", "--if-due", "--threshold", "61d"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not due yet"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Single flight: 3 processes and 20 tasks refresh the one token at once; the server sees
    // one refresh. (Two days on, for the server and for the vault's record of the sign-in.)
    clock.advance(2 * 86_400);
    let key = gramkey_client::vault::VaultKey::from_hex(VAULT_KEY).unwrap();
    gramkey_client::vault::Vault::new(&vault, gramkey_client::vault::Protection::Encrypted(key))
        .update(|a| {
            a.list
                .iter_mut()
                .for_each(|acc| acc.issued_at -= 2 * 86_400)
        })
        .unwrap();
    let procs: Vec<_> = (0..3)
        .map(|_| {
            auth(&vault, Some(VAULT_KEY))
                .args(["refresh", "--all", "--if-due", "--threshold", "61d"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    rt.block_on(async {
        let client = gramkey_client::Client::new(gramkey_client::Hosts::gramkey(&base).unwrap());
        let key = gramkey_client::vault::VaultKey::from_hex(VAULT_KEY).unwrap();
        let v = Arc::new(gramkey_client::vault::Vault::new(
            &vault,
            gramkey_client::vault::Protection::Encrypted(key),
        ));
        let policy = gramkey_client::refresh::RefreshPolicy {
            threshold_secs: 61 * 86_400,
            ..Default::default()
        };
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (client, v) = (client.clone(), v.clone());
                tokio::spawn(async move {
                    gramkey_client::refresh::refresh(&client, &v, "alice", &policy, real_now, false)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    let refreshed = rt
        .block_on(state.ops.audit_log(&gramkey_server::audit::AuditFilter {
            event: Some("token_refreshed".into()),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(refreshed.len(), 1, "one refresh reached the server");
    let new_token = String::from_utf8(
        auth(&vault, Some(VAULT_KEY))
            .arg("token")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert_ne!(new_token, token, "the vault holds the refreshed token");

    // The API through the stored token: /me, and every media page.
    let me: Value = serde_json::from_slice(
        &auth(&vault, Some(VAULT_KEY))
            .arg("me")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(me["username"], "alice");
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["media", "--all", "--limit", "7", "--json"])
        .output()
        .unwrap();
    let media: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(media.as_array().unwrap().len(), 30);
    let first_page = auth(&vault, Some(VAULT_KEY))
        .args(["media", "--limit", "7"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(first_page.stdout)
            .unwrap()
            .lines()
            .count(),
        7
    );

    // Export and import, encrypted with their own key; `use` picks the default.
    let export = dir.path().join("export.json");
    let export_key = "ab".repeat(32);
    let out = auth(&vault, Some(VAULT_KEY))
        .arg("export")
        .arg(&export)
        .env("GRAMKEY_EXPORT_KEY", &export_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::fs::read_to_string(&export)
            .unwrap()
            .contains(&new_token)
    );
    let other = dir.path().join("other.json");
    let out = auth(&other, Some(VAULT_KEY))
        .arg("import")
        .arg(&export)
        .env("GRAMKEY_EXPORT_KEY", &export_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = String::from_utf8(
        auth(&other, Some(VAULT_KEY))
            .arg("token")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(imported.trim(), new_token);
    assert!(
        auth(&other, Some(VAULT_KEY))
            .args(["use", "alice"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let listed = auth(&other, Some(VAULT_KEY))
        .arg("accounts")
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("* alice\talice\t"), "{listed}");
    assert_eq!(
        auth(&other, Some(VAULT_KEY))
            .args(["use", "nobody"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(4)
    );

    // Logout --revoke needs the app's secret, and without it forgets nothing; with it, this
    // machine's token is revoked (RFC 7009), then the account forgotten; a token for no
    // account exits 4.
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["logout", "--revoke"])
        .env_remove("GRAMKEY_CLIENT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GRAMKEY_CLIENT_SECRET"));
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["logout", "--revoke"])
        .env("GRAMKEY_CLIENT_SECRET", &secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("this machine's token was revoked"));
    let revoked = rt
        .block_on(state.ops.audit_log(&gramkey_server::audit::AuditFilter {
            event: Some("token_revoked".into()),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let out = auth(&vault, Some(VAULT_KEY)).arg("token").output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    // The token of the imported copy is dead now: the user must sign in again (exit 4).
    let out = auth(&other, Some(VAULT_KEY)).arg("me").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads `child`'s standard output until a line contains `needle`; the lines read.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("no line with {needle:?} in {seen:?}");
}

#[test]
fn auth_without_a_browser_honest_state_and_the_token_conventions() {
    use std::sync::Arc;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault.json");
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let clock = Arc::new(gramkey_domain::time::ManualClock::new(real_now));
    let (base, state, client_id, secret) = rt.block_on(dev_server(clock.clone(), real_now));
    let login = |extra: &[&str]| {
        let mut c = auth(&vault, Some(VAULT_KEY));
        c.args(["login", "--host", &base, "--client-id", &client_id])
            .args(extra)
            .env("GRAMKEY_CLIENT_SECRET", &secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };

    // The vault key: no OS keyring on this machine (CI has none), so the file fallback.
    let keyfile = dir.path().join("vault.key");
    let keyed = dir.path().join("keyed.json");
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        let out = auth(&keyed, None)
            .args(["key", "--keyring"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no OS keyring") && err.contains("--file"),
            "{err}"
        );
    }
    let out = auth(&keyed, None)
        .args(["key", "--file"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = auth(&keyed, None)
        .arg("status")
        .env("GRAMKEY_VAULT_KEY_FILE", &keyfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&auth(&keyed, None).arg("status").output().unwrap().stderr)
        .into_owned();
    assert!(err.contains("gramkey auth key --keyring"), "{err}");
    std::fs::remove_file(&keyfile).unwrap();

    // No display: the CLI says it cannot open a browser and takes the pasted URL instead.
    let mut child = KillOnDrop(
        login(&[])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("BROWSER")
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "Waiting up to 5m");
    let url = seen
        .iter()
        .find(|l| l.trim_start().starts_with("http"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        seen.iter()
            .any(|l| l.contains("Could not open a browser here (no display")),
        "{seen:?}"
    );
    let landed = rt.block_on(gramkey_server::test_support::sign_in_and_consent(
        &url,
        "alice",
        "alice-password",
    ));
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "not a url").unwrap();
    writeln!(stdin, "{landed}").unwrap();
    let status = child.0.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Signed in as alice")),
        "{rest:?}"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("That is not where the browser ended up"),
        "{err}"
    );

    // The device flow: the CLI shows the code, the person enters it on /device. (The same
    // user on the same app: the account's token is replaced.)
    let mut child = KillOnDrop(login(&["--device"]).spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "Waiting up to");
    let complete = seen
        .iter()
        .find_map(|l| l.split("(or open ").nth(1))
        .and_then(|rest| rest.split(", which").next())
        .unwrap_or_else(|| panic!("{seen:?}"))
        .to_owned();
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("open {base}/device on any device"))),
        "{seen:?}"
    );
    let (code, page) = rt.block_on(gramkey_server::test_support::enter_device_code(
        &complete,
        "alice",
        "alice-password",
        true,
    ));
    assert_eq!(code, 200, "{page}");
    let status = child.0.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Signed in as alice")),
        "{rest:?}"
    );

    // Against Instagram there is no device flow, and the CLI says what to do instead.
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["login", "--device", "--client-id", "1"])
        .env_remove("GRAMKEY_HOST")
        .env("GRAMKEY_CLIENT_SECRET", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Instagram has no device flow") && err.contains("--no-browser"),
        "{err}"
    );
    // A missing secret names the variable.
    let out = auth(&vault, Some(VAULT_KEY))
        .args([
            "login",
            "--host",
            &base,
            "--client-id",
            &client_id,
            "--device",
        ])
        .env_remove("GRAMKEY_CLIENT_SECRET")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("GRAMKEY_CLIENT_SECRET"));

    // Honest state: the token stops working on the server (revoked there); the first call
    // that hears 190 marks the account, and `token` and `status` exit 4.
    let token = String::from_utf8(
        auth(&vault, Some(VAULT_KEY))
            .arg("token")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert!(token.starts_with("IGQV"), "{token}");
    rt.block_on(async {
        let c = gramkey_client::Client::new(gramkey_client::Hosts::gramkey(&base).unwrap());
        c.revoke(
            &client_id,
            &secret,
            &gramkey_client::model::AccessToken::new(&token),
        )
        .await
        .unwrap();
    });
    let before = auth(&vault, Some(VAULT_KEY)).arg("token").output().unwrap();
    assert_eq!(before.status.code(), Some(0), "nothing has noticed yet");
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["me", "--account", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`gramkey auth login --account alice`"),
        "{err}"
    );
    let out = auth(&vault, Some(VAULT_KEY)).arg("token").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = auth(&vault, Some(VAULT_KEY))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("NEEDS SIGN-IN: `gramkey auth login --account alice`"),
        "{shown}"
    );
    assert!(
        shown.contains("scopes:    user_profile, user_media"),
        "{shown}"
    );

    // `--with-token`: a token from elsewhere, read from standard input, into another vault.
    let tv = rt.block_on(async {
        let c = gramkey_client::Client::new(gramkey_client::Hosts::gramkey(&base).unwrap());
        let redirect = "http://127.0.0.1/callback";
        let req = gramkey_client::AuthorizeRequest::new(
            &client_id,
            redirect,
            &["user_profile", "user_media"],
        );
        let landed = gramkey_server::test_support::sign_in_and_consent(
            req.url(c.hosts()).as_str(),
            "alice",
            "alice-password",
        )
        .await;
        let code = req.code_from_redirect(&landed).unwrap();
        let short = c
            .exchange_code(&client_id, &secret, redirect, &code, Some(req.verifier()))
            .await
            .unwrap();
        short.access_token.expose().to_owned()
    });
    let other = dir.path().join("other.json");
    let mut c = auth(&other, Some(VAULT_KEY));
    c.args(["login", "--with-token", "--host", &base])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{tv}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signed in as alice"));
    let me: Value = serde_json::from_slice(
        &auth(&other, Some(VAULT_KEY))
            .arg("me")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(me["username"], "alice");
    let mut c = auth(&other, Some(VAULT_KEY));
    let out = c
        .args(["login", "--with-token", "--host", &base])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input, which was empty"));

    // GRAMKEY_TOKEN and GRAMKEY_HOST stand in for the vault: no vault, no key needed.
    let nowhere = dir.path().join("none.json");
    let out = auth(&nowhere, None)
        .arg("me")
        .env("GRAMKEY_TOKEN", &tv)
        .env("GRAMKEY_HOST", &base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["username"], "alice");
    let out = auth(&nowhere, None)
        .arg("token")
        .env("GRAMKEY_TOKEN", &tv)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tv);
    let out = auth(&nowhere, None)
        .arg("logout")
        .env("GRAMKEY_TOKEN", &tv)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unset it to sign out"));
    let out = auth(&nowhere, None)
        .arg("me")
        .env("GRAMKEY_TOKEN", "IGQVJdead-token-of-nobody")
        .env("GRAMKEY_HOST", &base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GRAMKEY_TOKEN no longer works"));
    // GRAMKEY_ACCOUNT picks the account.
    let out = auth(&other, Some(VAULT_KEY))
        .arg("token")
        .env("GRAMKEY_ACCOUNT", "alice")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tv);

    // Export to standard output, import from standard input.
    let export_key = "cd".repeat(32);
    let out = auth(&other, Some(VAULT_KEY))
        .args(["export", "-"])
        .env("GRAMKEY_EXPORT_KEY", &export_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&tv),
        "encrypted"
    );
    let third = dir.path().join("third.json");
    let mut c = auth(&third, Some(VAULT_KEY));
    c.args(["import", "-"])
        .env("GRAMKEY_EXPORT_KEY", &export_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let imported = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&imported.stdout).contains("imported 1 account(s)"));

    // A server that is not there: its host and the cause, and how long it took.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = auth(&nowhere, None)
        .arg("me")
        .env("GRAMKEY_TOKEN", &tv)
        .env("GRAMKEY_HOST", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "could not reach 127.0.0.1:{port}: connection refused"
        )) && err.contains("gave up after"),
        "{err}"
    );

    // Mistakes caught before anyone is sent to sign in, each saying what to do.
    let out = auth(&vault, Some(VAULT_KEY))
        .args([
            "login",
            "--host",
            &base,
            "--client-id",
            &client_id,
            "--no-browser",
        ])
        .env("GRAMKEY_CLIENT_SECRET", "0000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!said.contains("Open this URL"), "{said}");
    assert!(
        err.contains("GRAMKEY_CLIENT_SECRET") && err.contains("invalid_client"),
        "{err}"
    );
    let host = base.trim_start_matches("http://");
    let out = auth(&vault, Some(VAULT_KEY))
        .args(["login", "--host", host, "--client-id", &client_id])
        .env("GRAMKEY_CLIENT_SECRET", &secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage mistake");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("http://{host}")));
    let out = auth(&other, Some(VAULT_KEY))
        .args(["import", "no-such-export.json"])
        .env("GRAMKEY_EXPORT_KEY", &export_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));

    // `--account alice` signs alice in again: bob approving instead is refused, nothing stored.
    rt.block_on(state.ops.create_user(
        "bob",
        gramkey_domain::Password::new("bob-password"),
        gramkey_store::Profile::default(),
    ))
    .unwrap();
    let mut child = KillOnDrop(login(&["--device", "--account", "alice"]).spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "Waiting up to");
    let complete = seen
        .iter()
        .find_map(|l| l.split("(or open ").nth(1))
        .and_then(|rest| rest.split(", which").next())
        .unwrap()
        .to_owned();
    rt.block_on(gramkey_server::test_support::enter_device_code(
        &complete,
        "bob",
        "bob-password",
        true,
    ));
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("signed in as bob, not as alice"), "{err}");
    let accounts = auth(&vault, Some(VAULT_KEY))
        .arg("accounts")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&accounts.stdout).lines().count(), 1);

    // Output piped to a reader that stops early: the command ends quietly.
    let mut child = auth(&other, Some(VAULT_KEY))
        .args(["media", "--all", "--limit", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing but the vaults is left in the directory: no lock files.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["other.json", "third.json", "vault.json"]);
    drop(state);
}

#[test]
fn every_flag_has_help_and_auth_help_shows_no_server_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_gramkey"))
        .args(["auth", "login", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for server_flag in [
        "--database-url",
        "--data-dir",
        "--config",
        "--db-acquire-timeout",
    ] {
        assert!(
            !help.contains(server_flag),
            "{server_flag} in auth help:\n{help}"
        );
    }
    assert!(help.contains("--device") && help.contains("--with-token"));
    // Every flag of every auth command says what it does.
    for cmd in [
        "login", "status", "token", "refresh", "logout", "accounts", "use", "me", "media",
        "export", "import",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gramkey"))
            .args(["auth", cmd, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let options = help.split("Options:").nth(1).unwrap_or_default();
        for line in options.lines().filter(|l| l.trim_start().starts_with('-')) {
            let described = line
                .trim()
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty());
            assert!(described, "`gramkey auth {cmd}`: no help for {line:?}");
        }
    }
}

#[test]
fn shell_completions_are_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_gramkey"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("_gramkey") && script.contains("login"));
}

/// `gramkey webhooks listen`: answers the verification for its token only, prints a signed
/// notification and refuses a forged one.
#[test]
fn webhooks_listen_verifies_and_prints_notifications() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_gramkey"))
            .args([
                "webhooks",
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--verify-token",
                "tok",
            ])
            .env("GRAMKEY_CLIENT_SECRET", "app-secret")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();
    let body = r#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1,"changes":[{"field":"comments","value":{"id":"1","text":"hi"}}]}]}"#;
    let (good, bad, forged) = rt.block_on(async {
        let verify = |token: &'static str| {
            c.get(format!(
                "{url}hook?hub.mode=subscribe&hub.challenge=4242&hub.verify_token={token}"
            ))
            .send()
        };
        let good = verify("tok").await.unwrap().text().await.unwrap();
        let bad = verify("nope").await.unwrap().status();
        let post = |signature: String| {
            c.post(format!("{url}hook"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
        };
        let signed = post(gramkey_client::webhooks::sign(
            "app-secret",
            body.as_bytes(),
        ))
        .await
        .unwrap()
        .status();
        assert_eq!(signed, reqwest::StatusCode::OK);
        let forged = post(gramkey_client::webhooks::sign("other", body.as_bytes()))
            .await
            .unwrap()
            .status();
        (good, bad, forged)
    });
    assert_eq!(good, "4242");
    assert_eq!(bad, reqwest::StatusCode::FORBIDDEN);
    assert_eq!(forged, reqwest::StatusCode::FORBIDDEN);
    // Everything printed up to the forged notification's refusal.
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("refused a notification: the signature does not match");
        printed.push(line);
        if done {
            break;
        }
    }
    assert_eq!(printed[0], "verification: answered the challenge");
    assert!(
        printed[1].starts_with("verification refused"),
        "{printed:?}"
    );
    assert_eq!(
        printed[2],
        "notification: comments for account 17841400000000001 (signature verified)"
    );
    assert!(
        printed.join("\n").contains("\"text\": \"hi\""),
        "{printed:?}"
    );
    assert_eq!(
        printed
            .iter()
            .filter(|l| l.contains("signature verified"))
            .count(),
        1
    );
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (mut child, addr) = start_node(
        dir.path(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--callback-interval",
            "50ms",
        ],
        Some(&log),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ready, reqwest::StatusCode::OK);
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve still running 10 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("shutting down"), "{logged}");
    assert!(logged.contains("stopped"), "{logged}");
}

/// `gramkey check-config`'s lines as key → (value, source).
fn effective(cmd: &mut Command) -> std::collections::BTreeMap<String, (String, String)> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (key, rest) = l.split_once(" = ").unwrap();
            let (value, source) = match rest.rsplit_once("    (") {
                Some((v, s)) => (v.to_owned(), s.trim_end_matches(')').to_owned()),
                None => (rest.to_owned(), "unset".to_owned()),
            };
            (key.trim().to_owned(), (value, source))
        })
        .collect()
}

#[test]
fn configuration_is_layered_defaults_file_environment_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gramkey.toml");
    std::fs::write(
        &file,
        r#"
listen = "127.0.0.1:0"
no-sandbox = true
janitor-interval = "10m"
user-calls = 50
writes-per-hour = 7
admin-user = ["olivia", "oscar"]
redis-url = "redis://:hunter2@127.0.0.1:1/0"
"#,
    )
    .unwrap();
    let secret = dir.path().join("db-url");
    std::fs::write(&secret, "postgres://gk:s3cret@db.internal/gramkey\n").unwrap();
    let got = effective(
        gramkey(dir.path())
            .env("GRAMKEY_CONFIG", &file)
            .env("GRAMKEY_USER_CALLS", "70")
            .env("GRAMKEY_DATABASE_URL_FILE", &secret)
            .args(["check-config", "--writes-per-hour", "9"]),
    );
    let at = |k: &str| {
        got.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {got:?}"))
    };
    let file_name = file.display().to_string();
    assert_eq!(at("janitor-interval"), ("10m".into(), file_name.clone()));
    assert_eq!(at("no-sandbox"), ("true".into(), file_name.clone()));
    assert_eq!(at("admin-user"), ("olivia,oscar".into(), file_name.clone()));
    assert_eq!(
        at("user-calls"),
        ("70".into(), "GRAMKEY_USER_CALLS".into()),
        "env beats the file"
    );
    assert_eq!(
        at("writes-per-hour"),
        ("9".into(), "flag".into()),
        "a flag beats both"
    );
    assert_eq!(at("callback-interval"), ("1s".into(), "default".into()));
    assert_eq!(at("public-url").1, "unset");
    // Secrets: from a *_FILE variable, and never printed.
    let (db, source) = at("database-url");
    assert_eq!(source, "GRAMKEY_DATABASE_URL_FILE");
    assert!(db.contains("db.internal") && !db.contains("s3cret"), "{db}");
    assert!(!at("redis-url").0.contains("hunter2"));

    // The file drives `serve` itself: its listen address and no sandbox.
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nno-sandbox = true\n").unwrap();
    let mut child = KillOnDrop(
        gramkey(dir.path())
            .args(["--config", file.to_str().unwrap(), "serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let printed: Vec<String> = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .take_while(|l| !l.starts_with("gramkey listening on "))
        .collect();
    drop(child);
    assert!(
        !printed.iter().any(|l| l.contains("sandbox created")),
        "{printed:?}"
    );

    // An unknown key, a bad value and a missing file fail, naming what is wrong.
    for (text, expect) in [
        ("lisen = \"127.0.0.1:1\"\n", "unknown key `lisen`"),
        ("janitor-interval = \"ten\"\n", "`janitor-interval` from"),
        ("user-calls = \"many\"\n", "--user-calls"),
        // The outbound guard would refuse it: said at start, not at the first alert.
        (
            "alert-webhook = \"http://169.254.169.254/hook\"\n",
            "--fetch-allow-private",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = gramkey(dir.path())
            .args(["--config", file.to_str().unwrap(), "check-config"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(expect), "{text}: {err}");
    }
    let out = gramkey(dir.path())
        .args(["--config", "/nonexistent/gramkey.toml", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gramkey.toml"));
}

#[test]
fn the_configuration_reference_is_serve_help() {
    // No GRAMKEY_* variables: clap shows their values in the help.
    let out = Command::new(env!("CARGO_BIN_EXE_gramkey"))
        .env_clear()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let reference = format!("```text\n{}\n```", help.trim_end());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- reference: begin -->\n", "\n<!-- reference: end -->");
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(
            &path,
            format!("{}{reference}{}", &doc[..start], &doc[stop..]),
        )
        .unwrap();
        return;
    }
    assert_eq!(
        doc[start..stop].trim(),
        reference,
        "docs/configuration.md differs from `gramkey serve --help`: run this test with UPDATE_DOCS=1"
    );
}

/// Durability under `kill -9` (issue 15): a real `gramkey serve` issuing and revoking app tokens
/// from 8 concurrent clients is killed with SIGKILL three times. Afterwards every token
/// acknowledged with a 200 is valid, and every revocation acknowledged with a 200 holds.
/// Creates a live app with `cmd` (a `gramkey` command with its environment set); its client
/// id and secret.
fn live_app(mut cmd: Command, name: &str) -> (String, String) {
    let created = run_json(cmd.args([
        "app",
        "create",
        "--name",
        name,
        "--redirect-uri",
        "https://live.example/cb",
        "--scopes",
        "user_profile",
        "--mode",
        "live",
        "--json",
    ]));
    (
        created["id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

fn kill_9_loses_nothing_acknowledged(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let with_db = |mut c: Command| {
        if let Some(url) = database_url {
            c.env("GRAMKEY_DATABASE_URL", url);
        }
        c
    };
    let (id, secret) = live_app(with_db(gramkey(dir.path())), "Durable");
    // Limits off: this is about durability, not budgets.
    let start =
        |dir: &std::path::Path| start_command(with_db(gramkey(dir)), &["--no-rate-limits"], None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut issued, mut revoked, mut undecided) = (Vec::new(), Vec::new(), Vec::new());
    for _round in 0..3 {
        let (mut child, addr) = start(dir.path());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|n| {
                let (addr, id, secret, stop) =
                    (addr.clone(), id.clone(), secret.clone(), stop.clone());
                rt.spawn(async move {
                    let c = reqwest::Client::new();
                    let (mut ok, mut gone, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = c
                            .post(format!("http://{addr}/oauth/access_token"))
                            .form(&[
                                ("client_id", id.as_str()),
                                ("client_secret", secret.as_str()),
                                ("grant_type", "client_credentials"),
                            ])
                            .send()
                            .await;
                        let Ok(r) = r else { break };
                        if r.status() != reqwest::StatusCode::OK {
                            continue;
                        }
                        let Ok(body) = r.json::<Value>().await else {
                            break;
                        };
                        let token = body["access_token"].as_str().unwrap().to_owned();
                        // Every fourth token is revoked again. Its revocation counts once
                        // acknowledged; one cut short by the kill may or may not have
                        // happened, so that token is checked neither way.
                        if ok.len() % 4 == n % 4 {
                            let r = c
                                .post(format!("http://{addr}/oauth/revoke"))
                                .basic_auth(&id, Some(&secret))
                                .form(&[("token", token.as_str())])
                                .send()
                                .await;
                            match r {
                                Ok(r) if r.status() == reqwest::StatusCode::OK => {
                                    gone.push(token.clone())
                                }
                                _ => unknown.push(token.clone()),
                            }
                        }
                        ok.push(token);
                    }
                    (ok, gone, unknown)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        // SIGKILL: no shutdown, no flush.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            let (ok, gone, unknown) = rt.block_on(c).unwrap();
            issued.extend(ok);
            revoked.extend(gone);
            undecided.extend(unknown);
        }
    }
    assert!(issued.len() > 100, "only {} tokens issued", issued.len());
    let (_child, addr) = start(dir.path());
    let revoked_set: std::collections::HashSet<String> = revoked.iter().cloned().collect();
    let undecided: std::collections::HashSet<String> = undecided.into_iter().collect();
    issued.retain(|t| !undecided.contains(t));
    let (lost, resurrected) = rt.block_on(async {
        let c = reqwest::Client::new();
        let (mut lost, mut resurrected) = (0, 0);
        for chunk in issued.chunks(64) {
            let mut checks = tokio::task::JoinSet::new();
            for token in chunk {
                let (c, token) = (c.clone(), token.clone());
                let url = format!("http://{addr}/oauth/introspect");
                let (id, secret) = (id.clone(), secret.clone());
                checks.spawn(async move {
                    let r = c
                        .post(url)
                        .basic_auth(&id, Some(&secret))
                        .form(&[("token", token.as_str())])
                        .send()
                        .await
                        .unwrap();
                    let body: Value = r.json().await.unwrap();
                    (token, body["active"] == true)
                });
            }
            while let Some(done) = checks.join_next().await {
                let (token, active) = done.unwrap();
                match (revoked_set.contains(&token), active) {
                    (false, false) => lost += 1,
                    (true, true) => resurrected += 1,
                    _ => {}
                }
            }
        }
        (lost, resurrected)
    });
    eprintln!(
        "kill -9 ×3: {} tokens acknowledged, {} revocations acknowledged; {lost} lost, {resurrected} valid again",
        issued.len(),
        revoked.len()
    );
    assert_eq!((lost, resurrected), (0, 0));
}

#[test]
fn kill_9_under_issuance_loses_nothing_on_sqlite() {
    kill_9_loses_nothing_acknowledged(None);
}

#[test]
fn kill_9_under_issuance_loses_nothing_on_postgres() {
    let Some(url) = gramkey_store::test_support::postgres_url(
        "kill_9_under_issuance_loses_nothing_on_postgres",
    ) else {
        return;
    };
    let db = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(gramkey_store::test_support::fresh_postgres_database(&url))
        .unwrap();
    kill_9_loses_nothing_acknowledged(Some(&db));
}

// ---------------------------------------------------------------------------------------------
// Three nodes on one PostgreSQL database and one Redis, behind HAProxy.

/// HAProxy's binary (Debian's `haproxy` package), or `None` after saying loudly that the
/// cluster test is skipped. Under CI a missing HAProxy is a failure: `.ci/run` installs it.
fn haproxy(test: &str) -> Option<std::path::PathBuf> {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no haproxy, and under CI the cluster test must run"
        );
        eprintln!("!!! SKIPPED {test}: install haproxy (apt-get install haproxy)");
    }
    found
}

/// Whether `token` is active, asked of the node at `addr` (RFC 7662, as the app).
async fn active(c: &reqwest::Client, addr: &str, app: &(String, String), token: &str) -> bool {
    let r = c
        .post(format!("http://{addr}/oauth/introspect"))
        .basic_auth(&app.0, Some(&app.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "introspection on {addr}");
    r.json::<Value>().await.unwrap()["active"] == true
}

/// A receiver for callbacks: every body POSTed to it, in the order they came, and its address.
async fn callback_receiver() -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::net::SocketAddr,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let router = axum::Router::new().route(
        "/deauthorize",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (bodies, addr)
}

/// An app token from the node (or balancer) at `addr`; `None` when it did not answer 200.
async fn issue(c: &reqwest::Client, addr: &str, app: &(String, String)) -> Option<String> {
    let r = c
        .post(format!("http://{addr}/oauth/access_token"))
        .form(&[
            ("client_id", app.0.as_str()),
            ("client_secret", app.1.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .ok()?;
    if r.status() != reqwest::StatusCode::OK {
        return None;
    }
    Some(
        r.json::<Value>().await.ok()?["access_token"]
            .as_str()?
            .to_owned(),
    )
}

#[test]
fn three_postgres_nodes_behind_haproxy_act_as_one() {
    const TEST: &str = "three_postgres_nodes_behind_haproxy_act_as_one";
    let (Some(url), Some(redis), Some(haproxy)) = (
        gramkey_store::test_support::postgres_url(TEST),
        gramkey_store::test_support::redis_url(TEST),
        haproxy(TEST),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(gramkey_store::test_support::fresh_postgres_database(&url))
        .unwrap();
    // One data directory: the nodes share the master key in it, as nodes share a key file.
    let dir = tempfile::tempdir().unwrap();
    let node = || {
        let mut c = gramkey(dir.path());
        c.env("GRAMKEY_DATABASE_URL", &db);
        c
    };
    let app = live_app(node(), "Cluster");
    // The app's deauthorize callback goes to a receiver in this test that counts what arrives.
    let (callbacks, receiver) = rt.block_on(callback_receiver());
    let set = node()
        .args(["app", "set-callbacks", &app.0, "--deauthorize-url"])
        .arg(format!("http://{receiver}/deauthorize"))
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");
    const PEOPLE: usize = 10;
    for i in 0..PEOPLE {
        let made = node()
            .args(["user", "create", "--username", &format!("member{i}")])
            .args(["--password", "member-password"])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    // Every node's janitor runs every 300 ms, and purges a token once it is revoked; every
    // node's deliverer looks for due callbacks every 50 ms.
    let args = [
        "--redis-url",
        redis.as_str(),
        "--no-rate-limits",
        "--janitor-interval",
        "300ms",
        "--retain-tokens",
        "0s",
        "--callback-interval",
        "50ms",
        "--fetch-allow-private",
    ];
    let logs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.log")))
        .collect();
    let (_a, a) = start_command(node(), &args, Some(&logs[0]));
    let (mut b_process, b) = start_command(node(), &args, Some(&logs[1]));
    let (_c, c_addr) = start_command(node(), &args, Some(&logs[2]));
    let nodes = [a.clone(), b.clone(), c_addr.clone()];

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lb = format!("127.0.0.1:{port}");
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 2\n  option redispatch\n\
             frontend gramkey\n  bind {lb}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n  option httpchk GET /readyz\n  \
             default-server inter 200ms fall 2 rise 1\n  \
             server a {a} check\n  server b {b} check\n  server c {c_addr} check\n"
        ),
    )
    .unwrap();
    let _haproxy = KillOnDrop(
        Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    rt.block_on(async {
        let c = reqwest::Client::new();
        // The balancer is up once it answers.
        for _ in 0..100 {
            if c.get(format!("http://{lb}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        // A token issued through the balancer (so by any node) works on every node.
        for _ in 0..12 {
            let token = issue(&c, &lb, &app).await.expect("issued through HAProxy");
            for node in &nodes {
                assert!(active(&c, node, &app, &token).await, "valid on {node}");
            }
        }

        // A revocation on one node is refused on the two others, though they had the token
        // cached (their TTL is 60 s): the nodes tell each other.
        let mut took = Vec::new();
        for n in 0..200 {
            let by = &nodes[n % 3];
            let others: Vec<&String> = nodes.iter().filter(|o| *o != by).collect();
            let token = issue(&c, by, &app).await.unwrap();
            for o in &others {
                assert!(active(&c, o, &app, &token).await);
            }
            let start = std::time::Instant::now();
            let r = c
                .post(format!("http://{by}/oauth/revoke"))
                .basic_auth(&app.0, Some(&app.1))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            for o in &others {
                while active(&c, o, &app, &token).await {
                    assert!(
                        start.elapsed() < std::time::Duration::from_secs(5),
                        "revocation {n} never reached {o}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            took.push(start.elapsed());
        }
        took.sort();
        eprintln!(
            "revocation refused on both other nodes after: p50 {:?}, p99 {:?}, max {:?} (200 trials, from the revoking call)",
            took[100],
            took[198],
            took[199]
        );
    });

    // The three janitors purged the 200 revoked tokens between them, each once, and none of
    // their passes failed: they don't collide.
    let purged = || {
        logs.iter()
            .flat_map(|log| {
                std::fs::read_to_string(log)
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains("janitor purged expired rows"))
                    .filter_map(|l| {
                        l.split("tokens=")
                            .nth(1)?
                            .split(' ')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .collect::<Vec<_>>()
            })
            .sum::<u64>()
    };
    let start = std::time::Instant::now();
    while purged() < 200 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(purged(), 200, "every revoked token purged, once");
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains("janitor pass failed"), "{text}");
    }

    // Ten people authorize the app through the balancer and remove it again: each removal
    // queues one deauthorize callback, which the three nodes' deliverers race to claim. Each
    // arrives exactly once.
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..PEOPLE {
            let authorize = format!(
                "http://{lb}/oauth/authorize?client_id={}&redirect_uri=https://live.example/cb\
                 &scope=user_profile&response_type=code",
                app.0
            );
            let landed = gramkey_server::test_support::sign_in_and_consent(
                &authorize,
                &format!("member{i}"),
                "member-password",
            )
            .await;
            let code = url::Url::parse(&landed)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("no code in {landed}"));
            let token: Value = c
                .post(format!("http://{lb}/oauth/access_token"))
                .form(&[
                    ("client_id", app.0.as_str()),
                    ("client_secret", app.1.as_str()),
                    ("grant_type", "authorization_code"),
                    ("redirect_uri", "https://live.example/cb"),
                    ("code", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = token["access_token"].as_str().expect("a user token");
            let removed = c
                .delete(format!("http://{lb}/me/permissions"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(removed.status(), 200);
        }
        let delivered = || callbacks.lock().unwrap().clone();
        let start = std::time::Instant::now();
        while delivered().len() < PEOPLE {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "callbacks delivered: {:?}",
                delivered()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Many more passes of all three deliverers: nothing arrives twice.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let delivered = delivered();
        assert_eq!(delivered.len(), PEOPLE, "{delivered:?}");
        let mut distinct = delivered.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            PEOPLE,
            "a callback arrived twice: {delivered:?}"
        );
    });
    let by_node: Vec<usize> = logs
        .iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap()
                .matches("callback delivered")
                .count()
        })
        .collect();
    eprintln!("{PEOPLE} deauthorize callbacks, each delivered once; by node A, B, C: {by_node:?}");
    assert_eq!(by_node.iter().sum::<usize>(), PEOPLE);

    // Node B is killed while clients issue through the balancer: nothing acknowledged is lost,
    // and the balancer goes on serving from A and C.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (lb, app, stop, killed) = (lb.clone(), app.clone(), stop.clone(), killed.clone());
            rt.spawn(async move {
                let c = reqwest::Client::new();
                let (mut ok, mut after_kill) = (Vec::new(), 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(token) = issue(&c, &lb, &app).await {
                        if killed.load(std::sync::atomic::Ordering::Relaxed) {
                            after_kill += 1;
                        }
                        ok.push(token);
                    }
                }
                (ok, after_kill)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(800));
    b_process.0.kill().unwrap();
    b_process.0.wait().unwrap();
    killed.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut issued, mut after_kill) = (Vec::new(), 0);
    for client in clients {
        let (ok, after) = rt.block_on(client).unwrap();
        issued.extend(ok);
        after_kill += after;
    }
    let lost = rt.block_on(async {
        let c = reqwest::Client::new();
        let mut lost = 0;
        for token in &issued {
            if !active(&c, &lb, &app, token).await {
                lost += 1;
            }
        }
        lost
    });
    eprintln!(
        "node B killed: {} tokens acknowledged through HAProxy, {after_kill} after the kill, {lost} lost",
        issued.len()
    );
    assert!(after_kill > 0, "the balancer went on serving from A and C");
    assert_eq!(lost, 0);
}

/// `gramkey app clock|faults|log` against a running server, for a development-mode app; a live
/// app is refused with the server's reason.
#[test]
fn the_sandbox_tools_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_node(dir.path(), &[], None);
    let server = format!("http://{addr}");
    let tool = |args: &[&str]| {
        let mut c = gramkey(dir.path());
        c.env("GRAMKEY_SERVER", &server).args(args);
        c
    };
    let created = run_json(gramkey(dir.path()).args([
        "app",
        "create",
        "--name",
        "dev",
        "--redirect-uri",
        "https://dev.example/cb",
        "--scopes",
        "user_profile",
        "--json",
    ]));
    let app = created["id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();

    let clock = run_json(&mut tool(&[
        "app", "clock", &app, "advance", "25h", "--json",
    ]));
    assert_eq!(clock["offset_seconds"], 90_000);
    let shown = tool(&["app", "clock", &app, "show"]).output().unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("1 day 1 hour ahead of real time"), "{shown}");

    let rule = run_json(&mut tool(&[
        "app",
        "faults",
        &app,
        "add",
        "server_error",
        "--path",
        "/debug_token",
        "--count",
        "1",
        "--json",
    ]));
    assert_eq!(rule["remaining"], 1);
    let listed = tool(&["app", "faults", &app, "list"]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("server_error") && listed.contains("/debug_token"),
        "{listed}"
    );
    let bad = tool(&["app", "faults", &app, "add", "boom"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fault must be one of"));

    // Two calls with an app token: the first gets the fault; both are in the log.
    let mut follow = KillOnDrop(
        tool(&["app", "log", &app, "--follow", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let statuses = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let c = reqwest::Client::new();
        let token = issue(&c, &addr, &(app.clone(), secret.clone()))
            .await
            .unwrap();
        let mut statuses = Vec::new();
        for _ in 0..2 {
            let r = c
                .get(format!("{server}/debug_token?input_token={token}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        statuses
    });
    assert_eq!(statuses, [500, 200]);
    let mut lines = BufReader::new(follow.0.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (&first["route"], &first["status"], &first["fault"]),
        (
            &Value::from("/debug_token"),
            &Value::from(500),
            &Value::from("server_error")
        )
    );
    assert_eq!(second["status"], 200);
    assert_eq!(
        second["app_time"].as_i64().unwrap() - second["time"].as_i64().unwrap(),
        90_000
    );
    drop(follow);
    let printed = tool(&["app", "log", &app]).output().unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(
        printed.contains("GET    /debug_token") && printed.contains("[fault: server_error]"),
        "{printed}"
    );

    let cleared = tool(&["app", "faults", &app, "clear"]).output().unwrap();
    assert!(String::from_utf8_lossy(&cleared.stdout).contains("cleared 0 fault rules"));
    let reset = tool(&["app", "clock", &app, "reset"]).output().unwrap();
    assert!(String::from_utf8_lossy(&reset.stdout).contains("runs on real time"));

    // Elsewhere (no database): the secret from the environment, or a message saying so.
    let elsewhere = tempfile::tempdir().unwrap();
    let away = |secret: Option<&str>| {
        let mut c = gramkey(elsewhere.path());
        c.env("GRAMKEY_SERVER", &server)
            .args(["app", "clock", &app, "show"]);
        if let Some(s) = secret {
            c.env("GRAMKEY_CLIENT_SECRET", s);
        }
        c.output().unwrap()
    };
    let lost = away(None);
    assert!(!lost.status.success());
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("no gramkey database at")
            && String::from_utf8_lossy(&lost.stderr).contains("GRAMKEY_CLIENT_SECRET")
    );
    assert!(
        !elsewhere.path().join("gramkey.db").exists(),
        "nothing created"
    );
    assert!(away(Some(&secret)).status.success());
    let back = tool(&["app", "clock", &app, "advance", "-5h"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&back.stderr).contains("only moves forward"));

    let (live, _) = live_app(gramkey(dir.path()), "live");
    let refused = tool(&["app", "clock", &live, "advance", "1h"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only for apps in development mode"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// `gramkey sandbox export|import|reset`: a fixture file moves the sandbox to another data
/// directory, importing twice changes nothing, and a reset asks for --yes.
#[test]
fn sandbox_fixtures_from_the_command_line() {
    let (from, into) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = gramkey(from.path())
        .args(["sandbox", "seed", "--users", "2", "--media", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    live_app(gramkey(from.path()), "fixture app");
    let file = from.path().join("fixture.json");
    let out = gramkey(from.path())
        .args(["sandbox", "export", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 users, 1 apps, 6 media"));
    let imported = run_json(gramkey(into.path()).args([
        "sandbox",
        "import",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(imported["users_created"].as_array().unwrap().len(), 2);
    assert_eq!(imported["apps"][0]["created"], true);
    assert_eq!(imported["media_added"], 6);
    let again = run_json(gramkey(into.path()).args([
        "sandbox",
        "import",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (
            again["media_added"].as_u64(),
            again["apps"][0]["created"].as_bool()
        ),
        (Some(0), Some(false))
    );
    assert_eq!(
        again["apps"][0]["client_secret"],
        imported["apps"][0]["client_secret"]
    );
    let exported = gramkey(into.path())
        .args(["sandbox", "export", "-"])
        .output()
        .unwrap();
    let original = std::fs::read(&file).unwrap();
    assert_eq!(exported.stdout, original, "the same fixture back");

    let refused = gramkey(into.path())
        .args(["sandbox", "reset"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let reset = gramkey(into.path())
        .args(["sandbox", "reset", "--yes"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&reset.stdout).contains("deleted 1 apps and 2 users"));
    let apps = run_json(gramkey(into.path()).args(["app", "list", "--json"]));
    assert_eq!(apps, serde_json::json!([]));
    let broken = from.path().join("broken.json");
    std::fs::write(&broken, r#"{"gramkey_fixture": 1, "apps": [{"id": "12"}]}"#).unwrap();
    let out = gramkey(into.path())
        .args(["sandbox", "import", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a gramkey fixture"));
}
