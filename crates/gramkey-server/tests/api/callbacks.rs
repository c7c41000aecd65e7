//! Deauthorize and data-deletion callbacks (issue 3, wire protocol §8).

use super::*;

/// What the receiver does with the next callbacks.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Answer {
    Ok,
    Unavailable,
    /// A data-deletion answer without the JSON Meta requires.
    NoConfirmation,
}

/// An app's callback endpoints: checks every signed request with the SDK helper and the app
/// secret it is told, and records what arrived.
#[derive(Clone)]
pub(super) struct Receiver {
    pub(super) base: String,
    pub(super) secret: Arc<Mutex<String>>,
    pub(super) answer: Arc<Mutex<Answer>>,
    /// (path, user_id) of every callback with a valid signature.
    pub(super) got: Arc<Mutex<Vec<(String, String)>>>,
    /// Callbacks and webhook notifications whose signature did not verify.
    pub(super) forged: Arc<Mutex<u32>>,
    /// Webhook notifications (at `/hook`, verify token `browser-verify`) with a valid signature.
    pub(super) hooks: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub(super) async fn start() -> Self {
        use axum::extract::{Form, OriginalUri, State};
        use std::collections::HashMap;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            secret: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Ok)),
            got: Arc::default(),
            forged: Arc::default(),
            hooks: Arc::default(),
        };
        async fn handle(
            State(r): State<Receiver>,
            OriginalUri(uri): OriginalUri,
            Form(form): Form<HashMap<String, String>>,
        ) -> (axum::http::StatusCode, String) {
            use gramkey_client::signed_request::SignedRequest;
            let secret = r.secret.lock().unwrap().clone();
            let raw = form.get("signed_request").cloned().unwrap_or_default();
            let Ok(req) = SignedRequest::verify(&raw, &secret) else {
                *r.forged.lock().unwrap() += 1;
                return (axum::http::StatusCode::FORBIDDEN, "bad signature".into());
            };
            let answer = *r.answer.lock().unwrap();
            if answer == Answer::Unavailable {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
            }
            let path = uri.path().to_owned();
            r.got
                .lock()
                .unwrap()
                .push((path.clone(), req.user_id.clone()));
            let body = if path == "/delete" && answer == Answer::Ok {
                format!(
                    r#"{{"url":"https://app.example/deletion?id={0}","confirmation_code":"del-{0}"}}"#,
                    req.user_id
                )
            } else {
                "ok".into()
            };
            (axum::http::StatusCode::OK, body)
        }
        // For the browser test: where the app's redirect lands, and how the script tells the
        // receiver the secret it read off the dashboard and asks what has arrived.
        async fn landing() -> &'static str {
            "signed in"
        }
        async fn set_secret(State(r): State<Receiver>, secret: String) {
            r.set_secret(&secret);
        }
        async fn arrived(State(r): State<Receiver>) -> axum::Json<Vec<(String, String)>> {
            axum::Json(r.got.lock().unwrap().clone())
        }
        async fn verify_hook(
            axum::extract::RawQuery(q): axum::extract::RawQuery,
        ) -> (axum::http::StatusCode, String) {
            match gramkey_client::webhooks::answer_verification(
                &q.unwrap_or_default(),
                "browser-verify",
            ) {
                Some(challenge) => (axum::http::StatusCode::OK, challenge),
                None => (axum::http::StatusCode::FORBIDDEN, String::new()),
            }
        }
        async fn hook(
            State(r): State<Receiver>,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::http::StatusCode {
            use gramkey_client::webhooks::Notification;
            let secret = r.secret.lock().unwrap().clone();
            let signature = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if Notification::verify(&body, signature, &secret).is_err() {
                *r.forged.lock().unwrap() += 1;
                return axum::http::StatusCode::FORBIDDEN;
            }
            r.hooks
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            axum::http::StatusCode::OK
        }
        async fn hooks(State(r): State<Receiver>) -> axum::Json<Vec<Value>> {
            axum::Json(r.hooks.lock().unwrap().clone())
        }
        let app = axum::Router::new()
            .route("/deauth", axum::routing::post(handle))
            .route("/delete", axum::routing::post(handle))
            .route("/cb", axum::routing::get(landing))
            .route("/test/secret", axum::routing::post(set_secret))
            .route("/test/arrived", axum::routing::get(arrived))
            .route("/hook", axum::routing::get(verify_hook).post(hook))
            .route("/test/hooks", axum::routing::get(hooks))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub(super) fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_owned();
    }

    pub(super) fn set_answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    pub(super) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// A live app whose callback URLs point at `rx`, and alice.
pub(super) async fn callback_app(t: &TestApp, rx: &Receiver) -> Registered {
    let redirect_uri = "https://app.example/cb".to_owned();
    let (app, secret) = t
        .state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "Callback App".into(),
                redirect_uris: vec![redirect_uri.clone()],
                scopes: "user_profile,user_media".into(),
                mode: AppMode::Live,
                refresh_tokens: false,
                signed_requests: false,
                device_flow: false,
                deauthorize_url: Some(format!("{}/deauth", rx.base)),
                data_deletion_url: Some(format!("{}/delete", rx.base)),
            },
        )
        .await
        .unwrap();
    rx.set_secret(secret.expose());
    Registered {
        client_id: app.id.to_string(),
        secret: secret.expose().to_owned(),
        redirect_uri,
    }
}

pub(super) async fn admin_callbacks(t: &TestApp, app: &Registered) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(t.url(&format!("/admin/callbacks?app_id={}", app.client_id)))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["data"]
        .as_array()
        .unwrap()
        .clone()
}

pub(super) async fn remove_by_admin(
    t: &TestApp,
    app: &Registered,
    delete_data: bool,
) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .delete(t.url(&format!(
            "/admin/users/alice/apps/{}?delete_data={delete_data}",
            app.client_id
        )))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

pub(super) async fn callbacks(t: TestApp) {
    use gramkey_server::callbacks::Deliverer;
    let rx = Receiver::start().await;
    let app = callback_app(&t, &rx).await;
    t.user("alice", "alice-password").await;
    let deliver = Deliverer::new(t.state.ops.clone(), true).unwrap();

    // The app removes itself for alice (DELETE /me/permissions): one deauthorize callback,
    // signed with the app secret, naming the id the app knows her by.
    let token = short_lived(&t, &app, &browser(), true).await;
    let my_id = me(&t, &token, "id").await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = reqwest::Client::new()
        .delete(t.url("/me/permissions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        graph_code(&me(&t, &token, "id").await.1),
        (Some(190), Some(458))
    );
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(rx.take(), vec![("/deauth".to_owned(), my_id.clone())]);
    let listed = admin_callbacks(&t, &app).await;
    assert_eq!(listed[0]["state"], "delivered", "{listed:?}");
    assert_eq!(listed[0]["kind"], "deauthorize");
    assert_eq!(listed[0]["user_id"], my_id.as_str());
    assert_eq!(deliver.deliver_due().await.unwrap(), 0, "delivered once");

    // Alice removes the app and asks for deletion: both callbacks; the confirmation code the
    // app answers is kept.
    let token = short_lived(&t, &app, &browser(), true).await;
    let again_id = me(&t, &token, "id").await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = remove_by_admin(&t, &app, true).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["revoked_tokens"], 1);
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    let mut got = rx.take();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/deauth".to_owned(), again_id.clone()),
            ("/delete".to_owned(), again_id.clone())
        ]
    );
    let listed = admin_callbacks(&t, &app).await;
    let deletion = listed
        .iter()
        .find(|c| c["kind"] == "data_deletion")
        .unwrap();
    assert_eq!(deletion["state"], "delivered");
    assert_eq!(deletion["confirmation_code"], format!("del-{again_id}"));
    assert_eq!(
        deletion["status_url"],
        format!("https://app.example/deletion?id={again_id}")
    );
    // Nothing left to remove: a clear 404, and nothing queued.
    let (s, b) = remove_by_admin(&t, &app, true).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not authorized")
    );
    assert_eq!(deliver.deliver_due().await.unwrap(), 0);

    // The app is down: the attempt is recorded and retried with backoff, not before.
    short_lived(&t, &app, &browser(), true).await;
    rx.set_answer(Answer::Unavailable);
    remove_by_admin(&t, &app, false).await;
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let pending = &admin_callbacks(&t, &app).await[0];
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["attempts"], 1);
    assert_eq!(pending["last_error"], "the app answered HTTP 503");
    let due = pending["next_attempt_at"].as_i64().unwrap() - gramkey_domain::Clock::now(&*t.clock);
    assert!(
        (54..=60).contains(&due),
        "first retry after about a minute: {due}"
    );
    assert_eq!(deliver.deliver_due().await.unwrap(), 0, "not due yet");
    rx.set_answer(Answer::Ok);
    t.clock.advance(61);
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let done = &admin_callbacks(&t, &app).await[0];
    assert_eq!(done["state"], "delivered", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(rx.take().len(), 1);

    // A data-deletion answer without the confirmation JSON is a failed attempt, said clearly.
    short_lived(&t, &app, &browser(), true).await;
    rx.set_answer(Answer::NoConfirmation);
    remove_by_admin(&t, &app, true).await;
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    let listed = admin_callbacks(&t, &app).await;
    let deletion = listed
        .iter()
        .find(|c| c["kind"] == "data_deletion")
        .unwrap();
    assert_eq!(deletion["state"], "pending");
    assert!(
        deletion["last_error"]
            .as_str()
            .unwrap()
            .contains("confirmation_code"),
        "{deletion}"
    );
    rx.set_answer(Answer::Ok);
    rx.take();

    // After a secret rotation, callbacks are signed with the new secret.
    let rotated = t
        .state
        .ops
        .rotate_secret(
            &gramkey_server::origin::Origin::LOCAL,
            &app.client_id,
            Some(3600),
        )
        .await
        .unwrap();
    rx.set_secret(rotated.expose());
    t.clock.advance(3600);
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(rx.take().len(), 1);
    assert_eq!(*rx.forged.lock().unwrap(), 0);

    // Without a callback URL nothing is queued.
    let r = reqwest::Client::new()
        .patch(t.url(&format!("/admin/apps/{}", app.client_id)))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"deauthorize_url": "", "data_deletion_url": "http://evil.example/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "http only on loopback");
    let r = reqwest::Client::new()
        .patch(t.url(&format!("/admin/apps/{}", app.client_id)))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"deauthorize_url": ""}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["deauthorize_url"], Value::Null, "{body}");
    assert_eq!(body["data_deletion_url"], format!("{}/delete", rx.base));
    let before = admin_callbacks(&t, &app).await.len();
    let app = Registered {
        secret: rotated.expose().to_owned(),
        ..app
    };
    short_lived(&t, &app, &browser(), true).await;
    remove_by_admin(&t, &app, false).await;
    assert_eq!(admin_callbacks(&t, &app).await.len(), before);
}

#[tokio::test]
async fn callbacks_are_signed_delivered_and_retried_on_sqlite() {
    callbacks(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn callbacks_are_signed_delivered_and_retried_on_postgres() {
    if let Some(t) = TestApp::postgres("callbacks").await {
        callbacks(t).await;
    }
}

#[tokio::test]
async fn callbacks_the_server_cannot_sign_fail_until_the_secret_is_rotated() {
    use gramkey_server::callbacks::Deliverer;
    let t = TestApp::sqlite().await;
    let rx = Receiver::start().await;
    let app = callback_app(&t, &rx).await;
    t.user("alice", "alice-password").await;
    // An app from before secrets were derived: the database has no seed for it.
    let id = gramkey_domain::AppId::parse(&app.client_id).unwrap();
    let mut stored = t.state.ops.store.app(&id).await.unwrap().unwrap();
    t.state.ops.store.delete_app(&id).await.unwrap();
    stored.secret_seed = None;
    t.state.ops.store.create_app(&stored).await.unwrap();
    short_lived(&t, &app, &browser(), true).await;
    remove_by_admin(&t, &app, false).await;
    let deliver = Deliverer::new(t.state.ops.clone(), true).unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let failed = admin_callbacks(&t, &app).await[0].clone();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("rotate the secret")
    );
    assert!(rx.take().is_empty(), "nothing unsigned is sent");

    let secret = t
        .state
        .ops
        .rotate_secret(&gramkey_server::origin::Origin::LOCAL, &app.client_id, None)
        .await
        .unwrap();
    rx.set_secret(secret.expose());
    let id = failed["id"].as_i64().unwrap();
    let r = reqwest::Client::new()
        .post(t.url(&format!("/admin/callbacks/{id}/retry")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(admin_callbacks(&t, &app).await[0]["state"], "delivered");
    assert_eq!(rx.take().len(), 1);
    let r = reqwest::Client::new()
        .post(t.url(&format!("/admin/callbacks/{id}/retry")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a delivered callback is not sent again"
    );
    let r = reqwest::Client::new()
        .post(t.url("/admin/callbacks/abc/retry"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], 404, "admin error shape: {body}");
}

#[tokio::test]
async fn callback_delivery_survives_a_restart() {
    use gramkey_server::callbacks::Deliverer;
    let first = TestApp::sqlite().await;
    let rx = Receiver::start().await;
    let app = callback_app(&first, &rx).await;
    first.user("alice", "alice-password").await;
    let token = short_lived(&first, &app, &browser(), true).await;
    let my_id = me(&first, &token, "id").await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    rx.set_answer(Answer::Unavailable);
    remove_by_admin(&first, &app, true).await;
    let deliver = Deliverer::new(first.state.ops.clone(), true).unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);

    // A new server on the same database file, with the same master key, a little later.
    let path = first._dir.as_ref().unwrap().path().join("gramkey.db");
    let second = TestApp::start(
        Arc::new(
            gramkey_store::sqlite::SqliteStore::open(&path)
                .unwrap()
                .cached(super::CACHE),
        ),
        None,
    )
    .await;
    second.clock.advance(120);
    rx.set_answer(Answer::Ok);
    let deliver = Deliverer::new(second.state.ops.clone(), true).unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    let mut got = rx.take();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/deauth".to_owned(), my_id.clone()),
            ("/delete".to_owned(), my_id)
        ]
    );
    for c in admin_callbacks(&second, &app).await {
        assert_eq!(c["state"], "delivered", "{c}");
        assert_eq!(c["attempts"], 2, "{c}");
    }
}
