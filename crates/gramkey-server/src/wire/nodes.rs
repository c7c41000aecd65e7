//! Graph nodes as JSON: the scalar fields of users, media, comments and containers. Edges
//! (`media`, `children`, `comments`, `replies`) need the store and are expanded by
//! `handlers::graph`. A field that does not apply (`thumbnail_url` on an image) is left out, as
//! Graph does.

use gramkey_domain::ScopedUserId;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::publish::status;
use gramkey_domain::time::graph_timestamp;
use gramkey_store::{Comment, Container, Media, User};
use serde_json::{Value, json};

/// A user's scalar field; `media_count` is passed in because it costs a query.
pub fn user_field(
    field: &str,
    user: &User,
    scoped: &ScopedUserId,
    media_count: Option<u64>,
) -> Option<Value> {
    let p = &user.profile;
    Some(match field {
        "id" | "user_id" => json!(scoped.as_str()),
        "username" => json!(user.username),
        "account_type" => json!(p.account_type),
        "media_count" => json!(media_count?),
        "name" => json!(p.full_name),
        "profile_picture_url" => json!(p.profile_picture_url),
        "followers_count" => json!(p.followers_count),
        "follows_count" => json!(p.follows_count),
        "biography" => json!(p.biography),
        "website" => json!(p.website),
        _ => return None,
    })
}

pub fn media_field(field: &str, m: &Media, owner: &str) -> Option<Value> {
    Some(match field {
        "id" => json!(m.id),
        "caption" if m.parent_id.is_none() => json!(m.caption),
        "media_type" => json!(m.media_type.as_str()),
        "media_url" => json!(m.media_url),
        "permalink" => json!(m.permalink),
        "thumbnail_url" => json!(m.thumbnail_url.as_ref()?),
        "timestamp" => json!(graph_timestamp(m.created_at)),
        "username" => json!(owner),
        "is_shared_to_feed" if m.media_type == MediaType::Video && m.parent_id.is_none() => {
            json!(true)
        }
        "like_count" => json!(m.like_count),
        "comments_count" => json!(m.comments_count),
        _ => return None,
    })
}

pub fn comment_field(field: &str, c: &Comment) -> Option<Value> {
    Some(match field {
        "id" => json!(c.id),
        "text" => json!(c.text),
        "timestamp" => json!(graph_timestamp(c.created_at)),
        "username" => json!(c.username),
        "like_count" => json!(c.like_count),
        "hidden" => json!(c.hidden),
        "parent_id" => json!(c.parent_id.as_ref()?),
        _ => return None,
    })
}

pub fn container_field(field: &str, c: &Container, now: i64) -> Option<Value> {
    let s = status(c.status, c.created_at, now);
    Some(match field {
        "id" => json!(c.id),
        "status_code" => json!(s.as_str()),
        // Graph's `status` reads like "Finished: Media has been uploaded and it is complete."
        "status" => json!(match (&c.status_reason, s.as_str()) {
            (Some(reason), code) => format!("{}: {reason}", title(code)),
            (None, code) => title(code),
        }),
        _ => return None,
    })
}

fn title(code: &str) -> String {
    let lower = code.replace('_', " ").to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
