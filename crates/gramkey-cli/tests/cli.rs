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
