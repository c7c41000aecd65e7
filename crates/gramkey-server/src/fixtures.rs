//! Sandbox fixtures (`gramkey sandbox export|import|reset`, docs/test-tools.md): users, apps
//! with their roles, media and comments as a readable JSON file that a team keeps in its
//! repository. Importing creates what is missing and keeps what exists, so importing twice
//! gives the same ids. Grants, tokens, codes and deliveries are not fixtures.
//!
//! An app's secret travels as its seed: on a server with the same master key it is the same
//! secret; on another, import derives (and prints) that server's secret. Users travel with
//! their Argon2id hash, or a plain `password` written by hand.

use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::password::hash_password;
use gramkey_domain::{AppId, AppMode, ClientSecret, CommentId, MediaId, Password, Role};
use gramkey_store::{CommentsOf, Media, NewComment, NewUser, Profile, StoreError};
use serde::{Deserialize, Serialize};

use crate::ops::{NewAppInput, OpError, Ops};
use crate::origin::Origin;

/// The format's version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub gramkey_fixture: u32,
    #[serde(default)]
    pub users: Vec<FixtureUser>,
    #[serde(default)]
    pub apps: Vec<FixtureApp>,
    #[serde(default)]
    pub media: Vec<FixtureMedia>,
    #[serde(default)]
    pub comments: Vec<FixtureComment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureUser {
    pub username: String,
    /// A password in clear, for a fixture written by hand (hashed on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The Argon2id hash, as exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub biography: String,
    #[serde(default)]
    pub website: String,
    #[serde(default = "business")]
    pub account_type: String,
    #[serde(default)]
    pub profile_picture_url: String,
    #[serde(default)]
    pub followers_count: i64,
    #[serde(default)]
    pub follows_count: i64,
}

fn business() -> String {
    "BUSINESS".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureApp {
    pub id: String,
    pub name: String,
    /// `development` or `live`.
    pub mode: String,
    pub redirect_uris: Vec<String>,
    /// Comma-separated.
    pub scopes: String,
    #[serde(default)]
    pub refresh_tokens: bool,
    #[serde(default)]
    pub signed_requests: bool,
    #[serde(default)]
    pub device_flow: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deauthorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_deletion_url: Option<String>,
    /// The seed the client secret is derived from (hex); a new one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_seed: Option<String>,
    #[serde(default)]
    pub roles: Vec<FixtureRole>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureRole {
    pub user: String,
    /// `admin`, `developer` or `tester`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureMedia {
    pub id: String,
    pub owner: String,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: String,
    #[serde(default)]
    pub caption: String,
    pub media_url: String,
    pub permalink: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default)]
    pub like_count: i64,
    /// The album this is a child of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub position: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureComment {
    pub id: String,
    pub media: String,
    pub author: String,
    /// The comment this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub text: String,
    pub created_at: i64,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    /// Apps created, with the secret they have on this server.
    pub apps_created: Vec<(AppId, ClientSecret)>,
    /// Apps that existed, with their secret when it can be derived.
    pub apps_kept: Vec<(AppId, Option<ClientSecret>)>,
    pub users_created: Vec<String>,
    pub users_kept: Vec<String>,
    pub media_added: usize,
    pub comments_added: usize,
}

fn invalid(what: impl Into<String>) -> OpError {
    OpError::Invalid(what.into())
}

impl Ops {
    /// The sandbox as a fixture: every user, app (with roles), media and comment.
    pub async fn export_fixture(&self) -> Result<Fixture, OpError> {
        let store = &self.store;
        let users = store.users().await?;
        let name_of = |id: gramkey_domain::UserId| {
            users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.username.clone())
                .unwrap_or_default()
        };
        let mut fixture = Fixture {
            gramkey_fixture: FORMAT,
            users: users
                .iter()
                .map(|u| FixtureUser {
                    username: u.username.clone(),
                    password: None,
                    password_hash: Some(u.password_hash.clone()),
                    full_name: u.profile.full_name.clone(),
                    biography: u.profile.biography.clone(),
                    website: u.profile.website.clone(),
                    account_type: u.profile.account_type.clone(),
                    profile_picture_url: u.profile.profile_picture_url.clone(),
                    followers_count: u.profile.followers_count,
                    follows_count: u.profile.follows_count,
                })
                .collect(),
            apps: Vec::new(),
            media: Vec::new(),
            comments: Vec::new(),
        };
        for app in store.apps().await? {
            let mut roles = Vec::new();
            for (uid, role) in store.roles(&app.id).await? {
                roles.push(FixtureRole {
                    user: name_of(uid),
                    role: role.as_str().to_owned(),
                });
            }
            fixture.apps.push(FixtureApp {
                id: app.id.to_string(),
                name: app.name.clone(),
                mode: app.mode.as_str().to_owned(),
                redirect_uris: app
                    .redirect_uris
                    .iter()
                    .map(|u| u.as_str().to_owned())
                    .collect(),
                scopes: app.scopes.to_stored(),
                refresh_tokens: app.refresh_tokens,
                signed_requests: app.signed_requests,
                device_flow: app.device_flow,
                deauthorize_url: app.deauthorize_url.clone(),
                data_deletion_url: app.data_deletion_url.clone(),
                secret_seed: app.secret_seed.as_deref().map(hex::encode),
                roles,
            });
        }
        for user in &users {
            let mut req = PageRequest::first(100);
            loop {
                let page = store.media_page(user.id, &req).await?;
                let Some(last) = page.last() else { break };
                req = after(last.place());
                for m in &page {
                    let mut all = vec![m.clone()];
                    all.extend(store.children(&m.id).await?);
                    for m in all {
                        self.export_comments(&m.id, &name_of, &mut fixture.comments)
                            .await?;
                        fixture.media.push(media_entry(&m, &user.username));
                    }
                }
            }
        }
        Ok(fixture)
    }

    async fn export_comments(
        &self,
        media: &MediaId,
        name_of: &impl Fn(gramkey_domain::UserId) -> String,
        out: &mut Vec<FixtureComment>,
    ) -> Result<(), StoreError> {
        let store = &self.store;
        let mut req = PageRequest::first(100);
        loop {
            let page = store.comments_page(CommentsOf::Media(media), &req).await?;
            let Some(last) = page.last() else { break };
            req = after(last.place());
            for c in &page {
                out.push(comment_entry(c, &name_of(c.user_id)));
                let mut replies = PageRequest::first(100);
                loop {
                    let page = store
                        .comments_page(CommentsOf::Replies(&c.id), &replies)
                        .await?;
                    let Some(last) = page.last() else { break };
                    replies = after(last.place());
                    for r in &page {
                        out.push(comment_entry(r, &name_of(r.user_id)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates what the fixture holds and this database does not; keeps what exists.
    pub async fn import_fixture(
        &self,
        origin: &Origin,
        fixture: &Fixture,
    ) -> Result<Imported, OpError> {
        if fixture.gramkey_fixture != FORMAT {
            return Err(invalid(format!(
                "this is a version {} fixture; this gramkey reads version {FORMAT}",
                fixture.gramkey_fixture
            )));
        }
        let store = &self.store;
        let mut done = Imported::default();
        for u in &fixture.users {
            if store.user_by_name(&u.username).await?.is_some() {
                done.users_kept.push(u.username.clone());
                continue;
            }
            self.import_user(u).await?;
            done.users_created.push(u.username.clone());
        }
        for a in &fixture.apps {
            let id = AppId::parse(&a.id)
                .ok_or_else(|| invalid(format!("app id {:?} is not 16 digits", a.id)))?;
            match store.app(&id).await? {
                Some(app) => done.apps_kept.push((id.clone(), self.app_secret(&app))),
                None => {
                    let secret = self.import_app(origin, id.clone(), a).await?;
                    done.apps_created.push((id.clone(), secret));
                }
            }
            for r in &a.roles {
                let role = Role::parse(&r.role).ok_or_else(|| {
                    invalid(format!(
                        "role {:?} must be admin, developer or tester",
                        r.role
                    ))
                })?;
                let who = self.fixture_user(&r.user).await?;
                store.set_role(&id, who.id, role, self.clock.now()).await?;
            }
        }
        for m in &fixture.media {
            let id = MediaId::parse(&m.id)
                .ok_or_else(|| invalid(format!("media id {:?} is not 1 to 20 digits", m.id)))?;
            if store.media(&id).await?.is_some() {
                continue;
            }
            let owner = self.fixture_user(&m.owner).await?;
            let parent = m
                .parent
                .as_deref()
                .map(|p| {
                    MediaId::parse(p)
                        .ok_or_else(|| invalid(format!("parent {p:?} is not a media id")))
                })
                .transpose()?;
            store
                .add_media(&Media {
                    id,
                    user_id: owner.id,
                    media_type: MediaType::parse(&m.media_type).ok_or_else(|| {
                        invalid(format!(
                            "media_type {:?} must be IMAGE, VIDEO or CAROUSEL_ALBUM",
                            m.media_type
                        ))
                    })?,
                    caption: m.caption.clone(),
                    media_url: m.media_url.clone(),
                    permalink: m.permalink.clone(),
                    thumbnail_url: m.thumbnail_url.clone(),
                    created_at: m.created_at,
                    like_count: m.like_count,
                    comments_count: 0,
                    parent_id: parent,
                    position: m.position,
                })
                .await?;
            done.media_added += 1;
        }
        for c in &fixture.comments {
            let id = CommentId::parse(&c.id)
                .ok_or_else(|| invalid(format!("comment id {:?} is not 1 to 20 digits", c.id)))?;
            if store.comment(&id).await?.is_some() {
                continue;
            }
            let media = MediaId::parse(&c.media).ok_or_else(|| {
                invalid(format!(
                    "comment {}: media {:?} is not a media id",
                    c.id, c.media
                ))
            })?;
            let author = self.fixture_user(&c.author).await?;
            let parent = c
                .parent
                .as_deref()
                .map(|p| {
                    CommentId::parse(p)
                        .ok_or_else(|| invalid(format!("parent {p:?} is not a comment id")))
                })
                .transpose()?;
            let added = store
                .add_comment(&NewComment {
                    id,
                    media_id: media,
                    user_id: author.id,
                    parent_id: parent,
                    text: c.text.clone(),
                    created_at: c.created_at,
                    // A fixture is the past: nothing is notified of it.
                    notifications: Vec::new(),
                })
                .await?;
            if !added {
                return Err(invalid(format!(
                    "comment {}: its media or parent comment is not in the fixture or this sandbox",
                    c.id
                )));
            }
            done.comments_added += 1;
        }
        Ok(done)
    }

    /// A user a fixture names.
    async fn fixture_user(&self, name: &str) -> Result<gramkey_store::User, OpError> {
        self.store.user_by_name(name).await?.ok_or_else(|| {
            invalid(format!(
                "the fixture names {name}, who is neither among its users nor in this sandbox"
            ))
        })
    }

    async fn import_user(&self, u: &FixtureUser) -> Result<(), OpError> {
        let username = gramkey_domain::user::Username::parse(&u.username)?;
        let password_hash = match (&u.password_hash, &u.password) {
            (Some(h), _) => h.clone(),
            (None, Some(p)) => {
                let password = Password::new(p.clone());
                let entropy = self.entropy.clone();
                tokio::task::spawn_blocking(move || hash_password(&password, &*entropy))
                    .await
                    .map_err(|e| invalid(format!("password hashing failed: {e}")))??
            }
            (None, None) => {
                return Err(invalid(format!(
                    "user {}: give a password (or the password_hash an export wrote)",
                    u.username
                )));
            }
        };
        let profile = Profile {
            full_name: u.full_name.clone(),
            biography: u.biography.clone(),
            website: u.website.clone(),
            account_type: u.account_type.clone(),
            profile_picture_url: u.profile_picture_url.clone(),
            followers_count: u.followers_count,
            follows_count: u.follows_count,
        };
        let new = NewUser {
            username: username.to_string(),
            password_hash,
            profile,
        };
        self.store.create_user(&new, self.clock.now()).await?;
        Ok(())
    }

    async fn import_app(
        &self,
        origin: &Origin,
        id: AppId,
        a: &FixtureApp,
    ) -> Result<ClientSecret, OpError> {
        let mode = AppMode::parse(&a.mode)
            .ok_or_else(|| invalid(format!("app {}: mode must be development or live", a.id)))?;
        let seed = match &a.secret_seed {
            Some(hex_seed) => hex::decode(hex_seed)
                .ok()
                .filter(|s| s.len() == 32)
                .ok_or_else(|| {
                    invalid(format!("app {}: secret_seed must be 64 hex digits", a.id))
                })?,
            None => {
                let mut seed = vec![0u8; 32];
                self.entropy.fill(&mut seed);
                seed
            }
        };
        let input = NewAppInput {
            name: a.name.clone(),
            redirect_uris: a.redirect_uris.clone(),
            scopes: a.scopes.clone(),
            mode,
            refresh_tokens: a.refresh_tokens,
            signed_requests: a.signed_requests,
            device_flow: a.device_flow,
            deauthorize_url: a.deauthorize_url.clone(),
            data_deletion_url: a.data_deletion_url.clone(),
        };
        let detail = "imported from a fixture".to_owned();
        let (_, secret) = self.insert_app(origin, id, &seed, input, detail).await?;
        Ok(secret)
    }

    /// Empties the sandbox: every app and every user goes, with everything issued to them or
    /// theirs. The audit log stays. Returns how many apps and users went.
    pub async fn reset_sandbox(&self, origin: &Origin) -> Result<(usize, usize), OpError> {
        let apps = self.store.apps().await?;
        for app in &apps {
            self.delete_app(origin, app.id.as_str()).await?;
        }
        let users = self.store.users().await?;
        for user in &users {
            self.store.delete_user(user.id).await?;
        }
        Ok((apps.len(), users.len()))
    }
}

/// The page of 100 after `position`.
fn after(position: gramkey_domain::graph::paging::Position) -> PageRequest {
    PageRequest {
        after: Some(position),
        ..PageRequest::first(100)
    }
}

fn media_entry(m: &Media, owner: &str) -> FixtureMedia {
    FixtureMedia {
        id: m.id.to_string(),
        owner: owner.to_owned(),
        media_type: m.media_type.as_str().to_owned(),
        caption: m.caption.clone(),
        media_url: m.media_url.clone(),
        permalink: m.permalink.clone(),
        thumbnail_url: m.thumbnail_url.clone(),
        created_at: m.created_at,
        like_count: m.like_count,
        parent: m.parent_id.as_ref().map(ToString::to_string),
        position: m.position,
    }
}

fn comment_entry(c: &gramkey_store::Comment, author: &str) -> FixtureComment {
    FixtureComment {
        id: c.id.to_string(),
        media: c.media_id.to_string(),
        author: author.to_owned(),
        parent: c.parent_id.as_ref().map(ToString::to_string),
        text: c.text.clone(),
        created_at: c.created_at,
    }
}
