//! Id resolution: an id resolves only to what the token's user owns (their app-scoped id, their
//! media and its comments, the containers this app made for them); anything else is Graph's
//! one "does not exist" answer, so ids leak nothing.

use axum::http::Method;
use gramkey_domain::error::GraphError;
use gramkey_domain::{CommentId, ContainerId, MediaId};

use crate::wire::graph::GraphResponse;

use super::{Ctx, Target};

/// What `segment` (an id, or `me`) names for this caller.
pub(super) async fn resolve(
    ctx: &Ctx<'_>,
    segment: &str,
    method: &Method,
) -> Result<Target, GraphResponse> {
    if segment == "me" || segment == ctx.scoped.as_str() {
        return Ok(Target::User);
    }
    let missing = || GraphError::not_found(segment, &method.as_str().to_ascii_lowercase());
    // The same digits may name a media, a comment or a container.
    let (Some(media), Some(comment), Some(container)) = (
        MediaId::parse(segment),
        CommentId::parse(segment),
        ContainerId::parse(segment),
    ) else {
        return Err(missing().into());
    };
    let store = ctx.store();
    if let Some(m) = store.media(&media).await? {
        return if m.user_id == ctx.user.id {
            Ok(Target::Media(m))
        } else {
            Err(missing().into())
        };
    }
    if let Some(c) = store.comment(&comment).await? {
        let owner = store.media(&c.media_id).await?.map(|m| m.user_id);
        return if owner == Some(ctx.user.id) {
            Ok(Target::Comment(c))
        } else {
            Err(missing().into())
        };
    }
    if let Some(k) = store.container(&container).await? {
        return if k.user_id == ctx.user.id && k.app_id == ctx.token.app_id {
            Ok(Target::Container(k))
        } else {
            Err(missing().into())
        };
    }
    Err(missing().into())
}
