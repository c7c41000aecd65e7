//! The platform surface of issue 18 (wire protocol §13, §14). Webhooks: subscriptions verified
//! against a real endpoint, accounts subscribing apps, signed comment and mention
//! notifications, retries, a restart and two nodes, development mode and test deliveries, the
//! outbound guard. Media and account insights, and the publishing limit.

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
pub(super) struct Hook {
    url: String,
    pub(super) verify_token: String,
    pub(super) secrets: Arc<Mutex<Vec<String>>>,
    status: Arc<Mutex<u16>>,
    /// Every notification whose signature verified.
    got: Arc<Mutex<Vec<Value>>>,
    forged: Arc<Mutex<u32>>,
}

impl Hook {
    pub(super) async fn start() -> Self {
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

    pub(super) fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }
}

pub(super) async fn subscribe(
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

pub(super) fn deliverer(t: &TestApp) -> gramkey_server::callbacks::Deliverer {
    gramkey_server::callbacks::Deliverer::new(t.state.ops.clone(), true).unwrap()
}

pub(super) async fn user(t: &TestApp, name: &str) -> gramkey_store::User {
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

    // Bob publishes (through another app) a post whose caption mentions alice: her app hears
    // of the mention, with the media and no comment.
    let publisher = t
        .app(
            "instagram_business_basic,instagram_business_content_publish",
            AppMode::Live,
        )
        .await;
    let bob_token = user_token(
        &t,
        &publisher,
        "instagram_business_basic,instagram_business_content_publish",
        "bob",
    )
    .await;
    let (host, _) = super::resource::media_host().await;
    let (s, container) = call(
        &t,
        Method::POST,
        "/me/media",
        &bob_token,
        &[
            ("image_url", &format!("{host}/now.jpg")),
            ("caption", "with @alice today"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{container}");
    let container = container["id"].as_str().unwrap().to_owned();
    super::resource::wait_status(&t, &bob_token, &container, "FINISHED").await;
    let (s, published) = call(
        &t,
        Method::POST,
        "/me/media_publish",
        &bob_token,
        &[("creation_id", &container)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{published}");
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    let mention = hook.take().remove(0);
    assert_eq!(mention["entry"][0]["id"], alice_scoped.as_str());
    assert_eq!(
        mention["entry"][0]["changes"][0],
        serde_json::json!({"field": "mentions", "value": {"media_id": published["id"]}})
    );

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
    // The admin API: a test delivery, the list, and a retry of one that has not failed.
    let admin = reqwest::Client::new();
    let r = admin
        .post(t.url(&format!("/admin/apps/{}/webhooks/test", dev.client_id)))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"field": "mentions"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(deliver.deliver_due().await.unwrap(), 1);
    assert_eq!(
        hook.take()[0]["entry"][0]["changes"][0]["field"],
        "mentions"
    );
    let listed: Value = admin
        .get(t.url(&format!("/admin/webhooks?app_id={}", dev.client_id)))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = &listed["data"][0];
    assert_eq!(
        (&newest["field"], &newest["state"], &newest["status"]),
        (&"mentions".into(), &"delivered".into(), &200.into())
    );
    assert_eq!(newest["body"]["object"], "instagram");
    let r = admin
        .post(t.url(&format!("/admin/webhooks/{}/retry", newest["id"])))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
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

/// Media and account insights (issue 18): values that follow the sandbox's data, metrics the
/// path's version allows, Graph's errors; and a publishing quota that is configured, reported
/// and enforced as one number.
async fn insights_and_the_publishing_limit(t: TestApp) {
    t.user("alice", "alice-password").await;
    t.user("bob", "bob-password").await;
    let scopes = "instagram_business_basic,instagram_business_manage_insights,instagram_business_content_publish";
    let app = t.app(scopes, AppMode::Live).await;
    let token = user_token(&t, &app, scopes, "alice").await;
    let plain = user_token(&t, &app, "instagram_business_basic", "bob").await;
    let (alice, bob) = (user(&t, "alice").await, user(&t, "bob").await);
    let media = media_row(
        "17900000000000888".into(),
        alice.id,
        START - 60,
        "IMAGE",
        None,
        0,
    );
    t.state.ops.store.add_media(&media).await.unwrap();
    for text in ["one", "two"] {
        t.state
            .ops
            .add_comment(&bob, (&media.id, alice.id), None, text.into())
            .await
            .unwrap()
            .unwrap();
    }
    let id = media.id.as_str();

    // likes 3 (the row's), comments 2: reach 10·3 + 5·2, views twice that.
    let (s, b) = get(
        &t,
        &format!("/v22.0/{id}/insights?metric=likes,comments,reach,views,total_interactions"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let values: Vec<(String, u64)> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["values"][0]["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("likes", 3),
            ("comments", 2),
            ("reach", 40),
            ("views", 80),
            ("total_interactions", 5)
        ]
        .map(|(n, v)| (n.to_owned(), v))
    );
    assert_eq!(b["data"][2]["period"], "lifetime");
    assert_eq!(b["data"][2]["title"], "Accounts reached");
    assert_eq!(b["data"][2]["id"], format!("{id}/insights/reach/lifetime"));

    // A retired metric: allowed before v22.0, refused from it (and with no version), failing
    // the whole request.
    let (s, b) = get(
        &t,
        &format!("/v21.0/{id}/insights?metric=impressions"),
        &token,
    )
    .await;
    assert_eq!(
        (s, b["data"][0]["values"][0]["value"].as_u64()),
        (StatusCode::OK, Some(80))
    );
    for path in [
        format!("/v22.0/{id}/insights?metric=reach,impressions"),
        format!("/{id}/insights?metric=reach,impressions"),
    ] {
        let (s, b) = get(&t, &path, &token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["error"]["code"], 100);
        assert_eq!(
            b["error"]["message"],
            "(#100) metric[1] must be one of the following values: comments, follows, ig_reels_avg_watch_time, ig_reels_video_view_total_time, likes, profile_activity, profile_visits, reach, saved, shares, total_interactions, views"
        );
    }
    let (s, b) = get(
        &t,
        &format!("/{id}/insights?metric=ig_reels_avg_watch_time"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = get(&t, "/me/insights?metric=reach&period=day", &plain).await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(10)),
        "{b}"
    );

    // The account: by day over the last two days (the default range), the post in the second.
    let (s, b) = get(&t, "/v22.0/me/insights?metric=reach&period=day", &token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let series = &b["data"][0];
    assert_eq!(series["period"], "day");
    assert_eq!(
        series["values"],
        serde_json::json!([
            {"value": 0, "end_time": gramkey_domain::time::graph_timestamp(START - 86_400)},
            {"value": 40, "end_time": gramkey_domain::time::graph_timestamp(START)},
        ])
    );
    let (s, b) = get(&t, "/me/insights?metric=likes,comments&period=day", &token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error"]["message"],
        "(#100) The following metrics (likes, comments) should be specified with parameter metric_type=total_value"
    );
    let (s, b) = get(
        &t,
        "/me/insights?metric=likes,comments&period=day&metric_type=total_value&breakdown=media_product_type",
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"][0]["total_value"]["value"], 3);
    assert_eq!(b["data"][1]["total_value"]["value"], 2);
    assert_eq!(
        b["data"][1]["total_value"]["breakdowns"][0]["results"][0],
        serde_json::json!({"dimension_values": ["POST"], "value": 2})
    );
    let (s, _) = get(
        &t,
        "/v20.0/me/insights?metric=profile_views&period=day",
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = get(
        &t,
        "/v21.0/me/insights?metric=profile_views&period=day",
        &token,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(100))
    );
    let (s, b) = get(
        &t,
        &format!(
            "/me/insights?metric=reach&period=day&since={}&until={START}",
            START - 31 * 86_400
        ),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 30 days"),
        "{b}"
    );

    // The publishing quota (2 on this server): reported, then enforced after two posts.
    let (_, limit) = get(
        &t,
        "/me/content_publishing_limit?fields=quota_usage,config",
        &token,
    )
    .await;
    assert_eq!(
        limit,
        serde_json::json!({"data": [{"quota_usage": 0, "config": {"quota_total": 2, "quota_duration": 86400}}]})
    );
    let (host, _) = super::resource::media_host().await;
    let mut published = 0;
    for n in 0..3 {
        let (s, b) = call(
            &t,
            Method::POST,
            "/me/media",
            &token,
            &[
                ("image_url", &format!("{host}/now.jpg")),
                ("caption", "hello"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let container = b["id"].as_str().unwrap().to_owned();
        super::resource::wait_status(&t, &token, &container, "FINISHED").await;
        let (s, b) = call(
            &t,
            Method::POST,
            "/me/media_publish",
            &token,
            &[("creation_id", &container)],
        )
        .await;
        if s == StatusCode::OK {
            published += 1;
        } else {
            assert_eq!((b["error"]["code"].as_u64(), n), (Some(9), 2), "{b}");
        }
    }
    assert_eq!(published, 2);
    let (_, limit) = get(
        &t,
        "/me/content_publishing_limit?fields=quota_usage",
        &token,
    )
    .await;
    assert_eq!(limit, serde_json::json!({"data": [{"quota_usage": 2}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_and_the_publishing_limit_on_sqlite() {
    insights_and_the_publishing_limit(TestApp::sqlite_with(|c| c.publish_quota = 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_and_the_publishing_limit_on_postgres() {
    let Some(url) = postgres_url("insights") else {
        return;
    };
    let store = fresh_postgres(&url).await.unwrap();
    let t = TestApp::start_with(store, None, |c| c.publish_quota = 2).await;
    insights_and_the_publishing_limit(t).await;
}

/// The sandbox's callback page shows the exchange command for the app the code was issued to
/// (any app may redirect there), and reading it does not use the code up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_callback_page_names_the_app_of_the_code() {
    let t = TestApp::sqlite().await;
    t.user("alice", "alice-password").await;
    let app = t.app(SCOPES, AppMode::Live).await;
    let redirect = authorize(
        &t,
        &browser(),
        &authorize_query(&app, SCOPES, &[]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    let code = code_of(&redirect);
    let page = reqwest::get(t.url(&format!("/sandbox/callback?code={code}")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("-F client_id={}", app.client_id)),
        "{page}"
    );
    assert!(page.contains("GRAMKEY_CLIENT_SECRET"), "{page}");
    let (s, b) = exchange(&t, &app, &code, &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
