//! Health: liveness asks nothing; readiness asks the store and the limiter, and recovers.

use super::*;

/// A Redis server of this test's own on a free port, so the shared one is never stopped.
pub(super) struct OwnRedis {
    pub(super) child: std::process::Child,
}

impl OwnRedis {
    pub(super) fn start(port: u16) -> Option<Self> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server could not be started under CI: {e}"
                );
                eprintln!("!!! SKIPPED the Redis outage part of readiness: no redis-server ({e})");
                return None;
            }
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { child });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server on port {port} never answered");
    }
    pub(super) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let resp = reqwest::get(app.url("/readyz")).await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn liveness_and_readiness_follow_the_store_and_the_limiter() {
    let app = TestApp::sqlite().await;
    let live = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(header(live.headers(), "cache-control"), "no-store");
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["limiter"]["kind"], "memory");

    if let Some(pg) = TestApp::postgres("readiness").await {
        let (status, body) = readiness(&pg).await;
        assert_eq!(
            (status, &body["store"]["ok"]),
            (StatusCode::OK, &Value::Bool(true))
        );
    }

    // Redis down: not ready, but alive; back up on the same port: ready again, no restart.
    let port = free_port();
    let Some(redis) = OwnRedis::start(port) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let backend = gramkey_server::limits::redis::RedisBackend::connect(&url)
        .await
        .unwrap();
    let (store, dir) = fresh_sqlite().unwrap();
    let start = Start {
        limiter: Some(Arc::new(backend)),
        ..Start::default()
    };
    let app = TestApp::start_on(store, Some(dir), |_| {}, start).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(
        (status, &body["limiter"]["kind"]),
        (StatusCode::OK, &Value::from("redis"))
    );
    redis.stop();
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["limiter"]["ok"], false);
    assert_eq!(body["store"]["ok"], true);
    let live = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK, "liveness does not ask Redis");
    let redis = OwnRedis::start(port).unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if readiness(&app).await.0 == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    redis.stop();
    assert!(ready, "ready again once Redis is back, without a restart");
}

/// A PostgreSQL server of this test's own (initdb in a temporary directory, a free port), so
/// the shared one is never stopped. Run as the `postgres` user when the test runs as root,
/// since PostgreSQL refuses to run as root.
pub(super) struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    pub(super) port: u16,
}

impl OwnPostgres {
    fn as_owner(&self, program: &str) -> std::process::Command {
        as_postgres(&self.bin.join(program))
    }

    pub(super) fn start() -> Option<Self> {
        let bin = match postgres_bin() {
            Some(bin) => bin,
            None => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "PostgreSQL's server binaries (initdb, pg_ctl) are missing under CI"
                );
                eprintln!("!!! SKIPPED the PostgreSQL outage test: no initdb/pg_ctl");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("chmod")
            .args(["0777", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let pg = Self {
            dir,
            bin,
            port: free_port(),
        };
        let data = pg.dir.path().join("data");
        let out = pg
            .as_owner("initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        Some(pg)
    }

    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub(super) fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .as_owner("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-o", &options, "-w", "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(super) fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = self
            .as_owner("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else Debian's versioned directory.
fn postgres_bin() -> Option<std::path::PathBuf> {
    let from_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max());
    [from_config, debian]
        .into_iter()
        .flatten()
        .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
}

fn as_postgres(program: &std::path::Path) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// PostgreSQL goes down under a running node: requests fail fast and clearly (not after
/// sqlx's 30 s), readiness says so, and when it comes back the node serves again without a
/// restart, with every token it acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_fast_and_recovers_without_a_restart() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let store = gramkey_store::postgres::PgStore::connect(
        &pg.url(),
        std::time::Duration::from_millis(1500),
    )
    .await
    .unwrap()
    .cached(super::CACHE);
    let t = TestApp::start(Arc::new(store), None).await;
    let app = t.app("user_profile", AppMode::Live).await;
    let (s, token) = super::limits::app_token_request(&t, &app, &app.secret).await;
    assert_eq!(s, StatusCode::OK, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();

    pg.stop();
    // A generous bound, only to tell a fast error from the 30 s hang this replaced.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .post(t.url("/oauth/access_token"))
            .form(&[
                ("client_id", app.client_id.as_str()),
                ("client_secret", app.secret.as_str()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("an answer while the database is down, not a hang");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], "server_error", "{b}");
    }
    let (status, body) = readiness(&t).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["store"]["ok"], false);
    assert_eq!(
        reqwest::get(t.url("/healthz")).await.unwrap().status(),
        StatusCode::OK,
        "liveness does not ask the database"
    );

    pg.start_again();
    let mut back = false;
    for _ in 0..50 {
        if readiness(&t).await.0 == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "ready again once PostgreSQL is back, without a restart"
    );
    let r = client
        .post(t.url("/oauth/introspect"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["active"], true,
        "the token acknowledged before the outage: {b}"
    );
    let (s, b) = super::limits::app_token_request(&t, &app, &app.secret).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
