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
