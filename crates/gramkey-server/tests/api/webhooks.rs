//! Webhooks (issue 18, wire protocol §13): subscriptions verified against a real endpoint,
//! accounts subscribing apps, signed comment and mention notifications, retries, a restart and
//! two nodes, development mode and test deliveries, the outbound guard.

use super::resource::{call, get, media_row, user_token};
use super::*;
use gramkey_client::webhooks::{Notification, answer_verification};
use gramkey_server::ops::Ops;
use reqwest::Method;

const SCOPES: &str = "instagram_business_basic,instagram_business_manage_comments";

/// An app's webhook endpoint: answers the verification for one verify token, checks every
/// notification's signature with the SDK against the secrets it knows, and answers with the
/// status it is told.
#[derive(Clone)]
struct Hook {
    url: String,
    verify_token: String,
    secrets: Arc<Mutex<Vec<String>>>,
    status: Arc<Mutex<u16>>,
    /// Every notification whose signature verified.
    got: Arc<Mutex<Vec<Value>>>,
    forged: Arc<Mutex<u32>>,
}

impl Hook {
    async fn start() -> Self {
        use axum::extract::{RawQuery, State};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            verify_token: "my verify token".into(),
            secrets: Arc::default(),
            status: Arc::new(Mutex::new(200)),
            got: Arc::default(),
            forged: Arc::default(),
        };
        async fn verify(State(h): State<Hook>, RawQuery(q): RawQuery) -> (StatusCode, String) {
            match answer_verification(&q.unwrap_or_default(), &h.verify_token) {
                Some(challenge) => (StatusCode::OK, challenge),
                None => (StatusCode::FORBIDDEN, String::new()),
            }
        }
        async fn notify(
            State(h): State<Hook>,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let header = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let secrets = h.secrets.lock().unwrap().clone();
            if !secrets
                .iter()
                .any(|s| Notification::verify(&body, header, s).is_ok())
            {
                *h.forged.lock().unwrap() += 1;
                return StatusCode::FORBIDDEN;
            }
            assert_eq!(headers["content-type"], "application/json");
            h.got
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            StatusCode::from_u16(*h.status.lock().unwrap()).unwrap()
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::get(verify).post(notify))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        hook
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }
}

async fn subscribe(
    t: &TestApp,
    app: &Registered,
    hook: &Hook,
    fields: &str,
    verify_token: &str,
) -> (StatusCode, Value) {
    call(
        t,
        Method::POST,
        &format!("/v22.0/{}/subscriptions", app.client_id),
        &format!("{}|{}", app.client_id, app.secret),
        &[
            ("object", "instagram"),
            ("callback_url", &hook.url),
            ("fields", fields),
            ("verify_token", verify_token),
        ],
    )
    .await
}

fn deliverer(t: &TestApp) -> gramkey_server::callbacks::Deliverer {
    gramkey_server::callbacks::Deliverer::new(t.state.ops.clone(), true).unwrap()
}

async fn user(t: &TestApp, name: &str) -> gramkey_store::User {
    t.state.ops.store.user_by_name(name).await.unwrap().unwrap()
}

/// `other` is a second handle on `t`'s database, as another node (or the same node after a
/// restart) would open it.
async fn webhooks(t: TestApp, other: Arc<dyn Store>) {
    let hook = Hook::start().await;
    for name in ["alice", "bob", "carol"] {
        t.user(name, &format!("{name}-password")).await;
    }
    let app = t.app(SCOPES, AppMode::Live).await;
    hook.secrets.lock().unwrap().push(app.secret.clone());
    let alice_token = user_token(&t, &app, SCOPES, "alice").await;
    let (_, me) = get(&t, "/me?fields=id", &alice_token).await;
    let alice_scoped = me["id"].as_str().unwrap().to_owned();
    let (alice, bob) = (user(&t, "alice").await, user(&t, "bob").await);
    let media = media_row(
        "17900000000000777".into(),
        alice.id,
        START - 60,
        "IMAGE",
        None,
        0,
    );
    t.state.ops.store.add_media(&media).await.unwrap();
    let post = (&media.id, alice.id);
    let deliver = deliverer(&t);
    let app_token = format!("{}|{}", app.client_id, app.secret);
    let subscriptions = format!("/v22.0/{}/subscriptions", app.client_id);

    // The endpoint must echo the challenge for the verify token given: a wrong one is refused
    // with Graph's 2200, and nothing is subscribed.
    let (s, b) = subscribe(&t, &app, &hook, "comments", "not my token").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], 2200);
    assert_eq!(
        b["error"]["message"],
        "(#2200) Callback verification failed with the following errors: HTTP Status Code = 403; HTTP Message = Forbidden"
    );
    assert_eq!(
        get(&t, &subscriptions, &app_token).await.1,
        serde_json::json!({"data": []})
    );
    let (s, b) = subscribe(&t, &app, &hook, "comments,likes", &hook.verify_token).await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(100)),
        "{b}"
    );
    // A user's token cannot manage the app's subscriptions.
    let (s, _) = call(
        &t,
        Method::POST,
        &subscriptions,
        &alice_token,
        &[("object", "instagram")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, b) = subscribe(&t, &app, &hook, "comments", &hook.verify_token).await;
    assert_eq!(
        (s, &b),
        (StatusCode::OK, &serde_json::json!({"success": true}))
    );
    let (s, b) = subscribe(&t, &app, &hook, "mentions", &hook.verify_token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, listed) = get(&t, &subscriptions, &app_token).await;
    assert_eq!(
        listed,
        serde_json::json!({"data": [{"object": "instagram", "callback_url": hook.url, "active": true,
            "fields": [{"name": "comments", "version": "v22.0"}, {"name": "mentions", "version": "v22.0"}]}]})
    );

    // The account has not subscribed the app: a comment sends nothing.
    t.state
        .ops
        .add_comment(&bob, post, None, "first!".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 0);

    // A token without the field's permission cannot subscribe its account to it.
    let carol_token = user_token(&t, &app, "instagram_business_basic", "carol").await;
    let (s, b) = call(
        &t,
        Method::POST,
        "/me/subscribed_apps",
        &carol_token,
        &[("subscribed_fields", "comments")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error"]["message"],
        "(#200) To subscribe to the comments field, one of these permissions is needed: instagram_business_manage_comments"
    );
    let (s, b) = call(
        &t,
        Method::POST,
        &format!("/v22.0/{alice_scoped}/subscribed_apps?subscribed_fields=comments,mentions"),
        &alice_token,
        &[],
    )
    .await;
    assert_eq!(
        (s, &b),
        (StatusCode::OK, &serde_json::json!({"success": true}))
    );
    let (_, b) = get(&t, "/me/subscribed_apps", &alice_token).await;
    assert_eq!(b["data"][0]["id"], app.client_id.as_str());
    assert_eq!(
        b["data"][0]["subscribed_fields"],
        serde_json::json!(["comments", "mentions"])
    );

    // Bob's comment mentions alice and carol: alice's app hears of the comment and of the
    // mention; carol subscribed nothing. One signed POST each.
    // (`gramkey sandbox comment`: a sandbox user comments as in the Instagram app.)
    let comment = gramkey_server::sandbox::comment(
        &t.state.ops,
        "bob",
        media.id.as_str(),
        None,
        "nice @Alice, and @carol",
    )
    .await
    .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    assert_eq!(deliver.deliver_due().await.unwrap(), 0, "delivered once");
    let mut got = hook.take();
    got.sort_by_key(|n| {
        n["entry"][0]["changes"][0]["field"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    assert_eq!(got.len(), 2, "{got:?}");
    let (comments, mentions) = (&got[0], &got[1]);
    assert_eq!(comments["object"], "instagram");
    assert_eq!(comments["entry"][0]["id"], alice_scoped.as_str());
    assert_eq!(comments["entry"][0]["time"], START);
    let value = &comments["entry"][0]["changes"][0]["value"];
    assert_eq!(value["id"], comment.as_str());
    assert_eq!(value["text"], "nice @Alice, and @carol");
    assert_eq!(value["from"]["username"], "bob");
    assert_eq!(value["from"]["id"].as_str().unwrap().len(), 17, "{value}");
    assert_eq!(
        value["media"],
        serde_json::json!({"id": media.id.as_str(), "media_product_type": "FEED"})
    );
    assert_eq!(mentions["entry"][0]["id"], alice_scoped.as_str());
    assert_eq!(
        mentions["entry"][0]["changes"][0],
        serde_json::json!({"field": "mentions", "value": {"media_id": media.id.as_str(), "comment_id": comment.as_str()}})
    );

    // Alice replying over Graph is a comment on her media too, from her own id.
    let (s, b) = call(
        &t,
        Method::POST,
        &format!("/{comment}/replies"),
        &alice_token,
        &[("message", "thanks")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let reply = hook.take().remove(0);
    let value = &reply["entry"][0]["changes"][0]["value"];
    assert_eq!(value["from"]["id"], alice_scoped.as_str());
    assert_eq!(value["parent_id"], comment.as_str());
    assert_eq!(value["id"], b["id"]);

    // A reply to a reply is refused, as on Instagram; nothing is queued.
    let nested = gramkey_server::sandbox::comment(
        &t.state.ops,
        "bob",
        media.id.as_str(),
        b["id"].as_str(),
        "deeper",
    )
    .await
    .unwrap_err();
    assert!(nested.to_string().contains("top-level comment"), "{nested}");
    assert_eq!(deliver.deliver_due().await.unwrap(), 0);

    // The endpoint fails: the delivery stays pending, with the answer, and is retried later.
    hook.answer(500);
    t.state
        .ops
        .add_comment(&bob, post, None, "again".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(hook.take().len(), 1);
    let last = &t.state.ops.store.webhooks(None, 1).await.unwrap()[0];
    assert_eq!(
        (last.state.as_str(), last.status, last.attempts),
        ("pending", Some(500), 1)
    );
    assert_eq!(
        last.last_error.as_deref(),
        Some("the endpoint answered HTTP 500")
    );
    assert_eq!(deliver.deliver_due().await.unwrap(), 0, "not due yet");

    // After a restart (a new node on the same database), it is delivered, by one node only.
    hook.answer(200);
    drop(deliver);
    t.clock.advance(600);
    let restarted = Ops {
        store: other,
        ..t.state.ops.clone()
    };
    let (a, b) = (
        deliverer(&t),
        gramkey_server::callbacks::Deliverer::new(restarted, true).unwrap(),
    );
    let (na, nb) = tokio::join!(a.deliver_due(), b.deliver_due());
    assert_eq!(na.unwrap() + nb.unwrap(), 1);
    assert_eq!(hook.take().len(), 1);
    let last = &t.state.ops.store.webhooks(None, 1).await.unwrap()[0];
    assert_eq!(
        (last.state.as_str(), last.status, last.attempts),
        ("delivered", Some(200), 2)
    );
    let deliver = a;

    // A development-mode app receives test deliveries only, whatever its users do.
    let dev = t.app(SCOPES, AppMode::Development).await;
    t.role(&dev, "alice", Role::Tester).await;
    hook.secrets.lock().unwrap().push(dev.secret.clone());
    let dev_token = user_token(&t, &dev, SCOPES, "alice").await;
    assert_eq!(
        subscribe(&t, &dev, &hook, "comments", &hook.verify_token)
            .await
            .0,
        StatusCode::OK
    );
    let (s, _) = call(
        &t,
        Method::POST,
        "/me/subscribed_apps?subscribed_fields=comments",
        &dev_token,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    t.state
        .ops
        .add_comment(&bob, post, None, "live app only".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(
        hook.take()[0]["entry"][0]["id"],
        alice_scoped.as_str(),
        "the live app's"
    );
    t.state
        .ops
        .send_test_webhook(&dev.client_id, "comments")
        .await
        .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let test = hook.take().remove(0);
    assert_eq!(test["entry"][0]["id"], "0");
    assert_eq!(
        test["entry"][0]["changes"][0]["value"]["text"],
        "This is an example."
    );
    let listed = t
        .state
        .ops
        .webhook_deliveries(Some(&dev.client_id), 10)
        .await
        .unwrap();
    assert_eq!((listed.len(), listed[0].test), (1, true));
    assert_eq!(*hook.forged.lock().unwrap(), 0);

    // Unsubscribing: the account first, then the app's fields, then the app.
    let (s, b) = call(&t, Method::DELETE, "/me/subscribed_apps", &alice_token, &[]).await;
    assert_eq!(
        (s, &b),
        (StatusCode::OK, &serde_json::json!({"success": true}))
    );
    assert_eq!(
        get(&t, "/me/subscribed_apps", &alice_token).await.1,
        serde_json::json!({"data": []})
    );
    t.state
        .ops
        .add_comment(&bob, post, None, "unheard".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 0);
    let (s, _) = call(
        &t,
        Method::DELETE,
        &format!("{subscriptions}?object=instagram&fields=mentions"),
        &app_token,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        get(&t, &subscriptions, &app_token).await.1["data"][0]["fields"],
        serde_json::json!([{"name": "comments", "version": "v22.0"}])
    );
    let (s, _) = call(&t, Method::DELETE, &subscriptions, &app_token, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        get(&t, &subscriptions, &app_token).await.1,
        serde_json::json!({"data": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_signed_retried_and_delivered_once_on_sqlite() {
    let (store, dir) = fresh_sqlite().unwrap();
    let other = gramkey_store::sqlite::SqliteStore::open(&dir.path().join("gramkey.db")).unwrap();
    webhooks(TestApp::start(store, Some(dir)).await, Arc::new(other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_signed_retried_and_delivered_once_on_postgres() {
    let Some(url) = postgres_url("webhooks") else {
        return;
    };
    let (_, mut nodes) = gramkey_store::test_support::postgres_nodes(&url, &[CACHE, CACHE])
        .await
        .unwrap();
    let (other, store) = (nodes.pop().unwrap(), nodes.pop().unwrap());
    webhooks(TestApp::start(store, None).await, other).await;
}

/// The callback URL goes through the outbound guard: without `--fetch-allow-private`, a
/// loopback endpoint is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_endpoint_on_a_private_address_is_refused() {
    let t = TestApp::sqlite_with(|c| c.fetch_allow_private = false).await;
    let hook = Hook::start().await;
    let app = t.app(SCOPES, AppMode::Live).await;
    let (s, b) = subscribe(&t, &app, &hook, "comments", &hook.verify_token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["code"], 2200);
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused by the outbound policy"),
        "{message}"
    );
}
