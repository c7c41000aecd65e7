//! The web pages in a real browser: headless Chromium, driven by `pages.mjs` with
//! playwright-core, against the real server. The script registers an app on the dashboard (its
//! name an XSS probe), invites a tester who accepts, authorizes it through login and consent,
//! calls the API, reads the usage chart, removes the app in "Apps and Websites", and checks the
//! token is refused and the callbacks delivered; subscribes a webhook and sends a test
//! notification from the dashboard; then the admin console. Every page is
//! screenshotted into `docs/screenshots/`.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `GRAMKEY_TEST_CHROMIUM`) and `npm ci` in this
//! folder; `.ci/run` installs both. Without them the test says loudly it was skipped, and under
//! CI it fails.

use std::path::{Path, PathBuf};

use super::{Receiver, Start, TestApp, fresh_sqlite};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Chromium and playwright-core, or why the test cannot run.
fn prerequisites() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("GRAMKEY_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (install Debian's chromium, or set GRAMKEY_TEST_CHROMIUM)",
            chromium.display()
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed: run npm ci in {}",
            browser_dir().display()
        ));
    }
    Ok(chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_work_in_a_real_browser() {
    let chromium = match prerequisites() {
        Ok(c) => c,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the_pages_work_in_a_real_browser: {why}; under CI the browser tests must run"
            );
            eprintln!("!!! SKIPPED the_pages_work_in_a_real_browser: {why}");
            return;
        }
    };
    let (store, dir) = fresh_sqlite().unwrap();
    let start = Start {
        callbacks: Some(std::time::Duration::from_millis(200)),
        ..Start::default()
    };
    let t = TestApp::start_on(
        store,
        Some(dir),
        |c| c.admin_users = vec!["olivia".into()],
        start,
    )
    .await;
    for (name, password) in [
        ("devon", "devon-password"),
        ("tess", "tess-password"),
        ("olivia", "olivia-password"),
    ] {
        t.user(name, password).await;
    }
    let rx = Receiver::start().await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("pages.mjs"))
        .env("GRAMKEY_URL", &t.base)
        .env("RECEIVER_URL", &rx.base)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    // A hung browser must not hang CI: the whole script gets five minutes.
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("the browser script finished within five minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // What the script saw, checked from this side too: both callbacks arrived, signed with
    // the secret the dashboard showed, and nothing forged.
    let mut got: Vec<String> = rx.take().into_iter().map(|(path, _)| path).collect();
    got.sort();
    assert_eq!(got, vec!["/deauth", "/delete"]);
    // The test notification sent from the dashboard, signed with the same secret.
    assert_eq!(rx.hooks.lock().unwrap().len(), 1);
    assert_eq!(*rx.forged.lock().unwrap(), 0);
}
