//! The SDK against a real gramkey server over HTTP: the loopback authorization flow with PKCE
//! (the test plays the browser), the code exchange, the long-lived exchange, a refresh on an
//! injected clock, paging, writes, rate limits and revocation.

// Test helpers outside #[test] functions fail loudly too; real processes wait in real time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;

use gramkey_client::model::AccessToken;
use gramkey_client::{AuthorizeRequest, Client, Failure, Hosts, RetryPolicy};
use gramkey_domain::time::ManualClock;
use gramkey_domain::{AppMode, Clock, OsEntropy, Password};
use gramkey_server::ops::NewAppInput;
use gramkey_server::test_support::sign_in_and_consent;
use gramkey_server::{AppState, ServerConfig};
use gramkey_store::Profile;
use gramkey_store::test_support::fresh_sqlite;

const START: i64 = 1_800_000_000;
/// A loopback redirect registered without a port: any port is accepted (RFC 8252 §7.3).
const REDIRECT: &str = "http://127.0.0.1/callback";

struct Server {
    base: String,
    state: AppState,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn server(tune: impl FnOnce(&mut ServerConfig)) -> Server {
    let (store, dir) = fresh_sqlite().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock = Arc::new(ManualClock::new(START));
    let mut config = ServerConfig::new(base.clone());
    config.fetch_media = false;
    tune(&mut config);
    let state = AppState::new(
        store,
        clock.clone(),
        Arc::new(OsEntropy),
        b"sdk test key",
        config,
    );
    let node = gramkey_server::Node::new(state.clone(), listener);
    tokio::spawn(node.run_until(std::future::pending()));
    Server {
        base,
        state,
        clock,
        _dir: dir,
    }
}

/// Registers an app and a user with some media; returns (client id, secret).
async fn app_and_user(s: &Server, scopes: &str, media: usize) -> (String, String) {
    let (app, secret) = s
        .state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "SDK test".into(),
                redirect_uris: vec![REDIRECT.into()],
                scopes: scopes.into(),
                mode: AppMode::Live,
                refresh_tokens: false,
                signed_requests: false,
                device_flow: true,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await
        .unwrap();
    let user = s
        .state
        .ops
        .create_user("alice", Password::new("alice-password"), Profile::default())
        .await
        .unwrap();
    gramkey_server::sandbox::add_generated_media(
        &s.state.ops,
        &OsEntropy,
        &user,
        media,
        &s.base,
        START - 10_000,
    )
    .await
    .unwrap();
    (app.id.to_string(), secret.expose().to_owned())
}

/// Plays the browser: signs in, consents, and returns where the server sent it.
async fn browser_flow(url: &str, user: &str, password: &str) -> url::Url {
    url::Url::parse(&sign_in_and_consent(url, user, password).await).unwrap()
}

/// The whole authorization flow as alice, with PKCE: the code-exchange answer.
async fn sign_in(
    client: &Client,
    client_id: &str,
    secret: &str,
    redirect: &str,
    scopes: &[&str],
) -> gramkey_client::model::CodeToken {
    let req = AuthorizeRequest::new(client_id, redirect, scopes);
    let landed = browser_flow(req.url(client.hosts()).as_str(), "alice", "alice-password").await;
    let code = req.code_from_redirect(landed.as_str()).unwrap();
    let app = gramkey_client::AppCredentials::new(client_id, secret);
    client.exchange(&app, &req, &code).await.unwrap()
}

#[tokio::test]
async fn the_whole_token_lifecycle_and_the_resource_api() {
    let s = server(|_| {}).await;
    let (client_id, secret) = app_and_user(&s, "user_profile,user_media", 30).await;
    let client = Client::new(Hosts::gramkey(&s.base).unwrap());

    // The loopback flow: a redirect to 127.0.0.1 on an ephemeral port, with state and PKCE.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr().unwrap().port()
    );
    let req = AuthorizeRequest::new(&client_id, &redirect, &["user_profile", "user_media"]);
    let landed = browser_flow(req.url(client.hosts()).as_str(), "alice", "alice-password").await;
    assert_eq!(landed.port(), listener.local_addr().ok().map(|a| a.port()));
    let q: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
    assert_eq!(q["state"], req.state(), "the state comes back");
    let code = &q["code"];

    // Without the verifier the code is refused (and burned); a fresh flow with it works.
    let refused = client
        .exchange_code(&client_id, &secret, &redirect, code, None)
        .await
        .unwrap_err();
    assert_eq!(refused.failure(), Failure::Refused);
    let short = sign_in(
        &client,
        &client_id,
        &secret,
        &redirect,
        &["user_profile", "user_media"],
    )
    .await;
    assert!(short.user_id.is_some());
    assert!(short.access_token.expose().starts_with("IGQV"));

    // Long-lived, then /me.
    let long = client
        .long_lived(&secret, &short.access_token)
        .await
        .unwrap();
    assert_eq!(long.expires_in, Some(60 * 24 * 3600));
    let me = client
        .me(&long.access_token, &["id", "username", "media_count"])
        .await
        .unwrap();
    assert_eq!(me.username.as_deref(), Some("alice"));
    assert_eq!(me.media_count, Some(30));

    // Paging: 30 media in pages of 7, each once, newest first.
    let mut pager = client.media(&long.access_token, &["id", "timestamp", "media_type"], 7);
    let mut pages = 0;
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        pages += 1;
        seen.extend(page.into_iter().map(|m| (m.timestamp.unwrap(), m.id)));
    }
    assert_eq!((pages, seen.len()), (5, 30));
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
    let all = client
        .media(&long.access_token, &["id"], 100)
        .all()
        .await
        .unwrap();
    assert_eq!(all.len(), 30);

    // A refresh is refused before the token is 24 hours old, then works on the moved clock.
    let early = client.refresh(&long.access_token).await.unwrap_err();
    assert_eq!(early.failure(), Failure::Refused, "{early}");
    s.clock.advance(2 * 24 * 3600);
    let fresh = client.refresh(&long.access_token).await.unwrap();
    assert_ne!(fresh.access_token, long.access_token);
    assert!(client.me(&fresh.access_token, &["id"]).await.is_ok());

    // Past its 60 days, a token needs the user again.
    s.clock.advance(61 * 24 * 3600);
    let expired = client.me(&fresh.access_token, &["id"]).await.unwrap_err();
    assert_eq!(expired.failure(), Failure::Expired, "{expired}");
    assert!(expired.needs_reauthorization());
}

#[tokio::test]
async fn rate_limits_are_reported_not_slept_through_and_revocation_ends_a_token() {
    let s = server(|c| c.limits.app_calls_per_user = 3).await;
    let (client_id, secret) = app_and_user(&s, "user_profile,user_media", 1).await;
    let client = Client::new(Hosts::gramkey(&s.base).unwrap()).with_retry(RetryPolicy {
        max_wait: std::time::Duration::from_secs(5),
        ..RetryPolicy::default()
    });
    let token = sign_in(&client, &client_id, &secret, REDIRECT, &["user_profile"])
        .await
        .access_token;
    for _ in 0..3 {
        client.me(&token, &["id"]).await.unwrap();
    }
    // The pool is spent for most of an hour: longer than max_wait, so the error comes back at
    // once, with the server's wait.
    let started = std::time::Instant::now();
    let limited = client.me(&token, &["id"]).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(limited.failure(), Failure::RateLimited);
    let gramkey_client::Error::Api(e) = &limited else {
        panic!("{limited}")
    };
    assert_eq!(
        (e.code, e.retry_after.map(|d| d.as_secs())),
        (Some(4), Some(3600))
    );

    // Revocation (RFC 7009 on gramkey), then the token is dead.
    s.clock.advance(3600);
    client.revoke(&client_id, &secret, &token).await.unwrap();
    let dead = client.me(&token, &["id"]).await.unwrap_err();
    assert!(dead.needs_reauthorization(), "{dead}");
    let bad = client
        .revoke(&client_id, "wrong-secret", &AccessToken::new("x"))
        .await
        .unwrap_err();
    assert_eq!(bad.failure(), Failure::Refused);
}

#[tokio::test]
async fn the_refresher_renews_due_tokens_and_calls_the_hook_when_the_user_is_needed() {
    use gramkey_client::refresh::{RefreshPolicy, Refreshed, Refresher};
    use gramkey_client::vault::{Account, Protection, Vault, VaultKey};
    use std::sync::Mutex;

    let s = server(|_| {}).await;
    let (client_id, secret) = app_and_user(&s, "user_profile", 0).await;
    let client = Client::new(Hosts::gramkey(&s.base).unwrap());
    let short = sign_in(&client, &client_id, &secret, REDIRECT, &["user_profile"]).await;
    let long = client
        .long_lived(&secret, &short.access_token)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(Vault::new(
        dir.path().join("vault.json"),
        Protection::Encrypted(VaultKey::from_hex(&"7a".repeat(32)).unwrap()),
    ));
    let now = s.clock.now();
    vault
        .update(|a| {
            a.upsert(Account {
                host: client.hosts().graph.to_string(),
                app_id: client_id.clone(),
                user_id: short.user_id.clone().unwrap(),
                username: Some("alice".into()),
                alias: "alice".into(),
                scopes: vec!["user_profile".into()],
                issued_at: now,
                expires_at: now + long.expires_in.unwrap(),
                last_refreshed_at: None,
                last_refresh_error: None,
                needs_reauthorization: false,
                token: Some(long.access_token.clone()),
            })
        })
        .unwrap();
    let called: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = called.clone();
    let refresher = Refresher::new(client.clone(), vault.clone(), RefreshPolicy::default())
        .on_reauth(Arc::new(move |alias, _| {
            seen.lock().unwrap().push(alias.to_owned())
        }));

    // 50 days on, 10 are left: under the 14-day threshold, so it is renewed.
    s.clock.advance(50 * 86_400);
    let out = refresher.refresh_due(s.clock.now()).await.unwrap();
    assert!(matches!(out[0].1, Ok(Refreshed::Now { .. })), "{out:?}");
    let renewed = vault.load().unwrap().list[0].token().unwrap().clone();
    assert_ne!(renewed, long.access_token);
    // At once, or a minute later: not due (refreshed less than 24 hours ago), even forced.
    let out = refresher.refresh_due(s.clock.now() + 60).await.unwrap();
    assert!(matches!(out[0].1, Ok(Refreshed::NotDue)), "{out:?}");
    let forced = gramkey_client::refresh::refresh(
        &client,
        &vault,
        "alice",
        &RefreshPolicy::default(),
        s.clock.now(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(forced, Refreshed::NotDue);

    // The user removes the app: the next refresh needs them, the hook is called once, and the
    // token is kept (not overwritten by the failure).
    client.remove_app(&renewed).await.unwrap();
    s.clock.advance(50 * 86_400);
    let out = refresher.refresh_due(s.clock.now()).await.unwrap();
    assert!(
        out[0].1.as_ref().is_err_and(|e| e.needs_reauthorization()),
        "{out:?}"
    );
    assert_eq!(*called.lock().unwrap(), vec!["alice".to_owned()]);
    let kept = vault.load().unwrap();
    assert_eq!(kept.list[0].token(), Some(&renewed));
    assert!(kept.list[0].needs_reauthorization);
    assert!(
        kept.list[0]
            .last_refresh_error
            .as_deref()
            .unwrap()
            .contains("190")
    );
    // Accounts that need the user are not tried again.
    assert!(
        refresher
            .refresh_due(s.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Webhooks and insights through the SDK: the app subscribes an endpoint that answers the
/// challenge with `webhooks::answer_verification`, the account subscribes the app, a comment's
/// notification is verified and parsed with `webhooks::Notification`, and insights are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_subscribed_verified_and_parsed_and_insights_read() {
    use gramkey_client::webhooks::{Notification, answer_verification};
    let s = server(|c| c.fetch_allow_private = true).await;
    let scopes = "instagram_business_basic,instagram_business_manage_comments,instagram_business_manage_insights";
    let (client_id, secret) = app_and_user(&s, scopes, 2).await;
    let client = Client::new(Hosts::gramkey(&s.base).unwrap());

    // The app's endpoint: the raw body and signature of every POST.
    type Got = Arc<std::sync::Mutex<Vec<(String, axum::body::Bytes)>>>;
    let got: Got = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/ig", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route(
            "/ig",
            axum::routing::get(
                |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    answer_verification(&q.unwrap_or_default(), "my-verify-token")
                        .ok_or(axum::http::StatusCode::FORBIDDEN)
                },
            )
            .post(
                |axum::extract::State(got): axum::extract::State<Got>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let sig = headers["x-hub-signature-256"].to_str().unwrap().to_owned();
                    got.lock().unwrap().push((sig, body));
                },
            ),
        )
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let app_token = AccessToken::new(format!("{client_id}|{secret}"));
    let refused = client
        .subscribe_webhooks(&app_token, &client_id, &endpoint, &["comments"], "wrong")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, gramkey_client::Error::Api(e) if e.code == Some(2200)),
        "{refused}"
    );
    client
        .subscribe_webhooks(
            &app_token,
            &client_id,
            &endpoint,
            &["comments"],
            "my-verify-token",
        )
        .await
        .unwrap();
    let subs = client
        .webhook_subscriptions(&app_token, &client_id)
        .await
        .unwrap();
    assert_eq!(
        (
            subs[0].callback_url.as_str(),
            subs[0].fields[0].name.as_str()
        ),
        (endpoint.as_str(), "comments")
    );

    let scopes: Vec<&str> = scopes.split(',').collect();
    let token = AccessToken::new(
        sign_in(&client, &client_id, &secret, REDIRECT, &scopes)
            .await
            .access_token
            .expose(),
    );
    client
        .subscribe_account(&token, &["comments"])
        .await
        .unwrap();
    let media = client.media(&token, &["id"], 10).all().await.unwrap();
    s.state
        .ops
        .create_user("bob", Password::new("bob-password"), Profile::default())
        .await
        .unwrap();
    gramkey_server::sandbox::comment(&s.state.ops, "bob", &media[0].id, None, "hello")
        .await
        .unwrap();
    let deliverer = gramkey_server::callbacks::Deliverer::new(s.state.ops.clone(), true).unwrap();
    assert_eq!(deliverer.deliver_due().await.unwrap(), 1);
    let (sig, body) = got.lock().unwrap().remove(0);
    assert!(Notification::verify(&body, &sig, "not the secret").is_err());
    let n = Notification::verify(&body, &sig, &secret).unwrap();
    let comment = n.entry[0].changes[0].comment().unwrap();
    assert_eq!(
        (comment.from.username.as_str(), comment.text.as_str()),
        ("bob", "hello")
    );
    assert_eq!(comment.media.id, media[0].id);

    let insights = client
        .media_insights(&token, &media[0].id, &["comments", "reach"])
        .await
        .unwrap();
    let stored = s
        .state
        .ops
        .store
        .media(&gramkey_domain::MediaId::parse(&media[0].id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.comments_count >= 1);
    assert_eq!(insights[0].number(), Some(stored.comments_count));
    assert_eq!(
        insights[1].number(),
        Some(10 * stored.like_count + 5 * stored.comments_count)
    );
    let totals = client
        .account_insights(&token, &["comments"], "day", true)
        .await
        .unwrap();
    assert_eq!(totals[0].name, "comments");
    assert!(totals[0].total_value.is_some());
}

#[tokio::test]
async fn the_device_flow_app_tokens_introspection_and_the_generic_calls() {
    use futures_util::TryStreamExt;
    use gramkey_client::DevicePoll;

    let s = server(|_| {}).await;
    let (client_id, secret) = app_and_user(&s, "user_profile,user_media", 12).await;
    let client = Client::new(Hosts::gramkey(&s.base).unwrap());

    // The device flow: codes, waiting, too soon, then the user approves on /device.
    let mut codes = client
        .device_code(&client_id, &secret, &["user_profile", "user_media"])
        .await
        .unwrap();
    assert_eq!(codes.verification_uri, format!("{}/device", s.base));
    assert!(matches!(
        client
            .poll_device(&client_id, &secret, &codes)
            .await
            .unwrap(),
        DevicePoll::Pending
    ));
    assert!(matches!(
        client
            .poll_device(&client_id, &secret, &codes)
            .await
            .unwrap(),
        DevicePoll::SlowDown
    ));
    let (status, page) = gramkey_server::test_support::enter_device_code(
        codes.verification_uri_complete.as_deref().unwrap(),
        "alice",
        "alice-password",
        true,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    codes.interval = Some(1);
    let token = client
        .device_token(&client_id, &secret, &codes)
        .await
        .unwrap();
    assert_eq!(token.scope.as_deref(), Some("user_profile user_media"));
    let t = token.access_token;

    // Cancelled, or expired: an error of that kind.
    let denied = client
        .device_code(&client_id, &secret, &["user_profile"])
        .await
        .unwrap();
    gramkey_server::test_support::enter_device_code(
        denied.verification_uri_complete.as_deref().unwrap(),
        "alice",
        "alice-password",
        false,
    )
    .await;
    match client.poll_device(&client_id, &secret, &denied).await {
        Err(gramkey_client::Error::Api(e)) => assert_eq!(e.kind, "access_denied"),
        other => panic!("access_denied expected: {other:?}"),
    }

    // The generic GET keeps the token in the header and answers JSON.
    let me = client
        .get(&t, "me", &[("fields", "id,username")])
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");

    // A pager as a stream: every item, across pages.
    let all: Vec<_> = client
        .media(&t, &["id"], 5)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 12);

    // App tokens, debug_token and introspection.
    let app_token = client.app_token(&client_id, &secret).await.unwrap();
    let debug = client.debug_token(&app_token, &t).await.unwrap();
    assert!(debug.is_valid);
    assert_eq!(debug.app_id.as_deref(), Some(client_id.as_str()));
    assert!(
        debug
            .scopes
            .iter()
            .any(|s| s == "instagram_graph_user_profile"),
        "{debug:?}"
    );
    let seen = client.introspect(&client_id, &secret, &t).await.unwrap();
    assert!(seen.active);
    assert_eq!(seen.username.as_deref(), Some("alice"));
    let garbage = AccessToken::new("IGQVJnot-a-real-token-at-all");
    assert!(
        !client
            .introspect(&client_id, &secret, &garbage)
            .await
            .unwrap()
            .active
    );

    // The refresh_token grant, for an app that opted in: every use rotates it.
    let (rotating, rotating_secret) = s
        .state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "Rotating".into(),
                redirect_uris: vec![REDIRECT.into()],
                scopes: "user_profile".into(),
                mode: AppMode::Live,
                refresh_tokens: true,
                signed_requests: false,
                device_flow: false,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await
        .unwrap();
    let (rotating, rotating_secret) =
        (rotating.id.to_string(), rotating_secret.expose().to_owned());
    let first = sign_in(
        &client,
        &rotating,
        &rotating_secret,
        REDIRECT,
        &["user_profile"],
    )
    .await;
    let refresh = first
        .refresh_token
        .expect("a refresh token for an app that opted in");
    let second = client
        .refresh_with(&rotating, &rotating_secret, &refresh)
        .await
        .unwrap();
    assert_ne!(second.access_token, first.access_token);
    let rotated = second.refresh_token.expect("rotated");
    assert_ne!(rotated, refresh);
    assert!(client.me(&second.access_token, &["id"]).await.is_ok());
    assert!(
        client
            .refresh_with(&client_id, &secret, &rotated)
            .await
            .is_err(),
        "another app's refresh token"
    );

    // A server that is not there: the host and the cause, at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = Client::new(Hosts::gramkey(&format!("http://127.0.0.1:{port}")).unwrap())
        .with_retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        });
    let e = nobody.me(&t, &["id"]).await.unwrap_err();
    assert_eq!(e.failure(), Failure::Transient);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "could not reach 127.0.0.1:{port}: connection refused"
        )),
        "{text}"
    );
}
