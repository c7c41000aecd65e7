//! The sandbox: on first start (an empty database), a demo app in development mode, three demo
//! users with profiles and media, and the roles that make the development-mode rules visible:
//! `alice` is the app's admin, `bob` a tester, and `carol` has no role (so she is refused).

use gramkey_domain::entropy::{SeededEntropy, random_alnum};
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::ids::{generate_comment_id, generate_media_id};
use gramkey_domain::{AppMode, ClientSecret, Entropy, MediaId, Password, Role, UnixTime};
use gramkey_store::{App, Media, NewComment, Profile, User};

use crate::ops::{NewAppInput, OpError, Ops};
use crate::origin::Origin;
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
        .create_app(
            &Origin::LOCAL,
            NewAppInput {
                name: SANDBOX_APP_NAME.into(),
                redirect_uris: vec![
                    redirect.clone(),
                    format!("http://127.0.0.1{SANDBOX_CALLBACK_PATH}"),
                    // `gramkey auth login`'s loopback redirect, on any port.
                    "http://127.0.0.1/callback".into(),
                ],
                scopes: gramkey_domain::Scope::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                mode: AppMode::Development,
                // Instagram never sent refresh tokens; the sandbox answers as Instagram does.
                refresh_tokens: false,
                signed_requests: false,
                // `gramkey auth login --device` works against the sandbox out of the box.
                device_flow: true,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
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
        // Each demo user's own seed, so their media are the same on every first start.
        let content = SeededEntropy::new(demo.name.bytes().fold(7, |h, b| h * 31 + u64::from(b)));
        add_generated_media(ops, &content, &user, demo.media, public_url, now).await?;
        users.push((demo.name.to_owned(), password, demo.role));
    }
    Ok(Some(SandboxInfo { app, secret, users }))
}

const WORDS: &[&str] = &[
    "morning", "light", "coffee", "harbour", "trail", "market", "rain", "studio", "garden",
    "bridge", "sunset", "bakery", "river", "street", "autumn", "ceramics", "bicycle", "library",
];
const TAGS: &[&str] = &[
    "#photooftheday",
    "#travel",
    "#food",
    "#nature",
    "#design",
    "#weekend",
    "#film",
    "#gramkey",
];
const FIRST: &[&str] = &[
    "maya", "tomas", "ines", "kenji", "amara", "lucas", "noor", "felix", "zofia", "omar",
];
const LAST: &[&str] = &[
    "okafor", "silva", "haddad", "tanaka", "novak", "berg", "costa", "rahman", "moreau", "lind",
];
const REMARKS: &[&str] = &[
    "Love this!",
    "Where is this?",
    "Stunning colours",
    "Saving this one",
    "So good",
    "Take me there",
    "The light here",
    "Great shot",
];

/// A number in `0..n` from the entropy source.
fn pick(e: &dyn Entropy, n: usize) -> usize {
    let mut b = [0u8; 4];
    e.fill(&mut b);
    u32::from_le_bytes(b) as usize % n
}

/// A caption of a few words and hashtags.
fn caption(e: &dyn Entropy) -> String {
    let mut words: Vec<&str> = (0..3 + pick(e, 5))
        .map(|_| WORDS[pick(e, WORDS.len())])
        .collect();
    words.extend((0..1 + pick(e, 3)).map(|_| TAGS[pick(e, TAGS.len())]));
    let mut c = words.join(" ");
    if let Some(first) = c.get(..1) {
        c = first.to_uppercase() + &c[1..];
    }
    c
}

/// Adds `count` media to `user`, a day apart and ending a day before `now`: mostly images,
/// every third a video, every fifth an album of 2–4 images. Their URLs are this server's
/// placeholder images, so nothing is fetched from elsewhere. `e` decides ids and words, so a
/// seeded source gives the same media every time.
pub async fn add_generated_media(
    ops: &Ops,
    e: &dyn Entropy,
    user: &User,
    count: usize,
    public_url: &str,
    now: UnixTime,
) -> Result<Vec<Media>, OpError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let created_at = now - 86_400 * (count - i) as i64 - pick(e, 3600) as i64;
        let id = generate_media_id(e, created_at);
        let album = i % 5 == 4;
        let video = !album && i % 3 == 2;
        let url = |id: &MediaId| format!("{public_url}/sandbox/media/{id}.svg");
        let m = Media {
            media_type: if album {
                MediaType::CarouselAlbum
            } else if video {
                MediaType::Video
            } else {
                MediaType::Image
            },
            caption: caption(e),
            media_url: url(&id),
            permalink: format!("{public_url}/p/{id}"),
            thumbnail_url: video.then(|| url(&id)),
            created_at,
            like_count: pick(e, 500) as i64,
            comments_count: 0,
            user_id: user.id,
            parent_id: None,
            position: 0,
            id,
        };
        ops.store.add_media(&m).await?;
        if album {
            for position in 0..2 + pick(e, 3) {
                let child = generate_media_id(e, m.created_at);
                ops.store
                    .add_media(&Media {
                        media_type: MediaType::Image,
                        caption: String::new(),
                        media_url: url(&child),
                        permalink: format!("{public_url}/p/{child}"),
                        thumbnail_url: None,
                        parent_id: Some(m.id.clone()),
                        position: position as i64,
                        id: child,
                        ..m.clone()
                    })
                    .await?;
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// What `gramkey sandbox seed` made.
#[derive(Debug)]
pub struct Seeded {
    pub users: Vec<(String, Password)>,
    pub media: usize,
    pub comments: usize,
}

/// `gramkey sandbox seed`: `users` people with `media` posts each and comments from each
/// other, all decided by `seed` (ids, names, captions, times relative to `now`); passwords are
/// random. Usernames carry the seed, so seeding again with the same seed is a conflict, and
/// with another seed adds a new set.
pub async fn seed(
    ops: &Ops,
    users: usize,
    media: usize,
    seed: u64,
    public_url: &str,
) -> Result<Seeded, OpError> {
    let e = SeededEntropy::new(seed);
    let now = ops.clock.now();
    let mut made: Vec<(User, Vec<Media>)> = Vec::new();
    let mut out = Seeded {
        users: Vec::new(),
        media: 0,
        comments: 0,
    };
    for i in 0..users {
        let (first, last) = (FIRST[pick(&e, FIRST.len())], LAST[pick(&e, LAST.len())]);
        let username = format!("{first}.{last}.{seed}.{i}");
        let password = Password::new(random_alnum(&*ops.entropy, 16));
        let profile = Profile {
            full_name: format!(
                "{}{} {}{}",
                first[..1].to_uppercase(),
                &first[1..],
                last[..1].to_uppercase(),
                &last[1..]
            ),
            biography: caption(&e),
            website: format!("https://example.com/{first}"),
            account_type: ["BUSINESS", "MEDIA_CREATOR", "PERSONAL"][pick(&e, 3)].into(),
            profile_picture_url: format!("{public_url}/sandbox/media/{}.svg", 1 + pick(&e, 9)),
            followers_count: pick(&e, 5000) as i64,
            follows_count: pick(&e, 800) as i64,
        };
        let user = ops
            .create_user(&username, password.clone(), profile)
            .await?;
        let posts = add_generated_media(ops, &e, &user, media, public_url, now).await?;
        out.media += posts.len();
        out.users.push((username, password));
        made.push((user, posts));
    }
    if made.len() > 1 {
        for (i, (_, posts)) in made.iter().enumerate() {
            for m in posts {
                for _ in 0..pick(&e, 4) {
                    let author = &made[(i + 1 + pick(&e, made.len() - 1)) % made.len()].0;
                    ops.store
                        .add_comment(&NewComment {
                            id: generate_comment_id(&e),
                            media_id: m.id.clone(),
                            user_id: author.id,
                            parent_id: None,
                            text: REMARKS[pick(&e, REMARKS.len())].into(),
                            created_at: m.created_at + 60 + pick(&e, 7200) as i64,
                            notifications: Vec::new(),
                        })
                        .await?;
                    out.comments += 1;
                }
            }
        }
    }
    Ok(out)
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

/// `gramkey sandbox comment`: `author` comments on a post (or replies to one of its comments)
/// as someone would in the Instagram app, through the same path as the API: the post's owner's
/// subscribed apps hear of the comment, and every @mentioned account's of the mention.
pub async fn comment(
    ops: &Ops,
    author: &str,
    media: &str,
    reply_to: Option<&str>,
    text: &str,
) -> Result<gramkey_domain::CommentId, OpError> {
    use gramkey_domain::CommentId;
    let text = gramkey_domain::graph::comment::check_message(Some(text))
        .map_err(|e| OpError::Invalid(e.message.trim_start_matches("(#100) ").to_owned()))?;
    let author = ops.user(author).await?;
    let not_found = || OpError::NotFound(format!("no post with id {media}"));
    let post = match MediaId::parse(media) {
        Some(id) => ops.store.media(&id).await?.ok_or_else(not_found)?,
        None => return Err(not_found()),
    };
    let parent = match reply_to {
        Some(raw) => {
            let missing = || OpError::NotFound(format!("no comment with id {raw} on post {media}"));
            let id = CommentId::parse(raw).ok_or_else(missing)?;
            match ops.store.comment(&id).await? {
                Some(c) if c.media_id == post.id && c.parent_id.is_none() => Some(id),
                Some(_) => {
                    return Err(OpError::Invalid(
                        "replies go to a top-level comment of the post, as on Instagram".into(),
                    ));
                }
                None => return Err(missing()),
            }
        }
        None => None,
    };
    ops.add_comment(&author, (&post.id, post.user_id), parent.as_ref(), text)
        .await?
        .ok_or_else(not_found)
}

/// What `gramkey sandbox trigger` makes happen to an app's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Another sandbox user comments on the account's latest post (a `comments` notification).
    Comment,
    /// Another sandbox user @mentions the account in a comment on their own latest post (a
    /// `mentions` notification).
    Mention,
}

/// What a trigger did.
#[derive(Debug)]
pub struct Triggered {
    pub author: String,
    pub media: MediaId,
    pub comment: gramkey_domain::CommentId,
}

/// `gramkey sandbox trigger comment|mention --app APP --user NAME`: a sandbox user (`by`, or
/// the first other one) comments on NAME's latest post, or mentions NAME on their own latest
/// post, through the API's code path; NAME must have authorized the app, so that the app hears
/// of it (its webhook, when subscribed).
pub async fn trigger(
    ops: &Ops,
    app: &str,
    what: Trigger,
    account: &str,
    by: Option<&str>,
) -> Result<Triggered, OpError> {
    let app_id = gramkey_domain::AppId::parse(app)
        .ok_or_else(|| OpError::NotFound(format!("no app {app}")))?;
    ops.store
        .app(&app_id)
        .await?
        .ok_or_else(|| OpError::NotFound(format!("no app {app}")))?;
    let target = ops.user(account).await?;
    if ops.store.grant(&app_id, target.id).await?.is_none() {
        return Err(OpError::Invalid(format!(
            "{account} has not authorized app {app}: the app would hear nothing. Sign in as {account} and consent first"
        )));
    }
    let author = match by {
        Some(name) => ops.user(name).await?,
        None => ops
            .store
            .users()
            .await?
            .into_iter()
            .find(|u| u.id != target.id)
            .ok_or_else(|| {
                OpError::Invalid(
                    "the sandbox has no other user to comment: add one with `gramkey sandbox seed`"
                        .into(),
                )
            })?,
    };
    let (post_owner, text) = match what {
        Trigger::Comment => (&target, "Great post! (gramkey sandbox trigger)".to_owned()),
        Trigger::Mention => (
            &author,
            format!("@{account} have a look (gramkey sandbox trigger)"),
        ),
    };
    let latest = ops
        .store
        .media_page(post_owner.id, &gramkey_domain::graph::paging::PageRequest::first(1))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            OpError::Invalid(format!(
                "{} has no posts to comment on: publish one, or add some with `gramkey sandbox seed`",
                post_owner.username
            ))
        })?;
    let comment = comment(ops, &author.username, latest.id.as_str(), None, &text).await?;
    Ok(Triggered {
        author: author.username,
        media: latest.id,
        comment,
    })
}
