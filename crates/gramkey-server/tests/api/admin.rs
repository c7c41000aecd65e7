//! Admin API.

use super::*;

#[tokio::test]
async fn admin_api_manages_apps_and_users() {
    let t = TestApp::sqlite().await;
    let c = reqwest::Client::new();
    let r = c.get(t.url("/admin/apps")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(t.url("/admin/nothing"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["status"], 404);
    let r = c
        .get(t.url("/admin/apps"))
        .bearer_auth("wrong-key-wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let body = serde_json::json!({"name": "Admin App", "redirect_uris": ["https://x.example/cb"], "scopes": ["user_profile"], "mode": "live"});
    let r = c
        .post(t.url("/admin/apps"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);

    let list: Value = c
        .get(t.url("/admin/apps"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(list["data"][0].get("client_secret").is_none() && !list.to_string().contains(&secret));

    let rotated: Value = c
        .post(t.url(&format!("/admin/apps/{id}/rotate-secret")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(rotated["client_secret"], secret.as_str());

    let r = c
        .post(t.url("/admin/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"username": "Dana", "password": "dana-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .post(t.url("/admin/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"username": "dana", "password": "dana-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = c
        .post(t.url("/admin/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"username": "bad name", "password": "dana-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(t.url(&format!("/admin/apps/{id}/roles")))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"username": "dana", "role": "tester"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let shown: Value = c
        .get(t.url(&format!("/admin/apps/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["roles"][0],
        serde_json::json!({"username": "dana", "role": "tester"})
    );

    let bad = serde_json::json!({"name": "X", "redirect_uris": ["http://insecure.example/cb"], "scopes": ["user_profile"]});
    let r = c
        .post(t.url("/admin/apps"))
        .bearer_auth(ADMIN_KEY)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http is allowed only")
    );

    let r = c
        .delete(t.url(&format!("/admin/apps/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .get(t.url(&format!("/admin/apps/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
