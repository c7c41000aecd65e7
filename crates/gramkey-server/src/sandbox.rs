//! The sandbox: on first start (an empty database), a demo app in development mode, three demo
//! users with profiles and media, and the roles that make the development-mode rules visible:
//! `alice` is the app's admin, `bob` a tester, and `carol` has no role (so she is refused).

use gramkey_domain::entropy::random_alnum;
use gramkey_domain::ids::generate_media_id;
use gramkey_domain::{AppMode, ClientSecret, Password, Role};
use gramkey_store::{App, Media, Profile};

use crate::ops::{NewAppInput, OpError, Ops};
use crate::state::AppState;

pub const SANDBOX_CALLBACK_PATH: &str = "/sandbox/callback";
pub const SANDBOX_APP_NAME: &str = "gramkey Sandbox App";

/// What the sandbox seeding created; printed once to the console.
#[derive(Debug)]
pub struct SandboxInfo {
    pub app: App,
    pub secret: ClientSecret,
    pub users: Vec<(String, Password, Option<Role>)>,
}

struct DemoUser {
    name: &'static str,
    full_name: &'static str,
    account_type: &'static str,
    bio: &'static str,
    role: Option<Role>,
    media: usize,
}

const DEMO_USERS: [DemoUser; 3] = [
    DemoUser {
        name: "alice",
        full_name: "Alice Example",
        account_type: "BUSINESS",
        bio: "Coffee roaster. Photos of beans.",
        role: Some(Role::Admin),
        media: 6,
    },
    DemoUser {
        name: "bob",
        full_name: "Bob Example",
        account_type: "MEDIA_CREATOR",
        bio: "Trail runner.",
        role: Some(Role::Tester),
        media: 4,
    },
    DemoUser {
        name: "carol",
        full_name: "Carol Example",
        account_type: "PERSONAL",
        bio: "No role on the sandbox app.",
        role: None,
        media: 2,
    },
];

/// Seeds the sandbox if the database has no apps and no users; `None` otherwise.
pub async fn seed_if_empty(ops: &Ops, public_url: &str) -> Result<Option<SandboxInfo>, OpError> {
    if !ops.store.apps().await?.is_empty() || !ops.store.users().await?.is_empty() {
        return Ok(None);
    }
    let redirect = format!("{public_url}{SANDBOX_CALLBACK_PATH}");
    let (app, secret) = ops
        .create_app(NewAppInput {
            name: SANDBOX_APP_NAME.into(),
            redirect_uris: vec![
                redirect.clone(),
                format!("http://127.0.0.1{SANDBOX_CALLBACK_PATH}"),
            ],
            scopes: gramkey_domain::Scope::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            mode: AppMode::Development,
            refresh_tokens: true,
            deauthorize_url: None,
            data_deletion_url: None,
        })
        .await?;
    let now = ops.clock.now();
    let mut users = Vec::new();
    for demo in DEMO_USERS {
        let password = Password::new(random_alnum(&*ops.entropy, 16));
        let profile = Profile {
            full_name: demo.full_name.into(),
            biography: demo.bio.into(),
            website: format!("https://example.com/{}", demo.name),
            account_type: demo.account_type.into(),
            profile_picture_url: format!("{public_url}/sandbox/media/{}.svg", demo.name.len()),
            followers_count: 120 * demo.media as i64,
            follows_count: 80,
        };
        let user = ops
            .create_user(demo.name, password.clone(), profile)
            .await?;
        if let Some(role) = demo.role {
            ops.store.set_role(&app.id, user.id, role, now).await?;
        }
        for i in 0..demo.media {
            let id = generate_media_id(&*ops.entropy);
            let video = i % 3 == 2;
            ops.store
                .add_media(&Media {
                    media_type: if video { "VIDEO" } else { "IMAGE" }.into(),
                    caption: format!("{}'s post #{} #gramkey", demo.name, i + 1),
                    media_url: format!("{public_url}/sandbox/media/{id}.svg"),
                    permalink: format!("{public_url}/sandbox/p/{id}"),
                    thumbnail_url: video.then(|| format!("{public_url}/sandbox/media/{id}.svg")),
                    created_at: now - 86_400 * (demo.media - i) as i64,
                    like_count: 3 * i as i64,
                    comments_count: 0,
                    user_id: user.id,
                    id,
                })
                .await?;
        }
        users.push((demo.name.to_owned(), password, demo.role));
    }
    Ok(Some(SandboxInfo { app, secret, users }))
}

/// The sandbox app, if this database has one.
pub async fn sandbox_app(ops: &Ops) -> Result<Option<App>, OpError> {
    Ok(ops
        .store
        .apps()
        .await?
        .into_iter()
        .find(|a| a.name == SANDBOX_APP_NAME))
}

/// A ready-to-open authorize URL for the sandbox app.
pub fn authorize_url(public_url: &str, app: &App) -> String {
    let redirect = format!("{public_url}{SANDBOX_CALLBACK_PATH}");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", app.id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", "user_profile,user_media"),
            ("response_type", "code"),
            ("state", "sandbox"),
        ])
        .finish();
    format!("{public_url}/oauth/authorize?{query}")
}

/// The sandbox app's client id, for the callback page's sample command.
pub async fn sandbox_app_id(state: &AppState) -> Option<String> {
    Some(sandbox_app(&state.ops).await.ok()??.id.to_string())
}
