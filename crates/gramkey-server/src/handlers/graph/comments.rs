//! Writing and deleting comments and replies.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::access::Need;
use gramkey_domain::graph::comment::check_message;
use gramkey_domain::{CommentId, MediaId};
use gramkey_store::Comment;
use serde_json::{Value, json};

use super::Ctx;

/// Adds a comment to `media_id` (a reply to `parent`); its id.
pub(super) async fn add_comment(
    ctx: &Ctx<'_>,
    media_id: &MediaId,
    parent: Option<&CommentId>,
) -> Result<Value, GraphResponse> {
    ctx.need(Need::Comments)?;
    let text = check_message(ctx.params.get("message"))?;
    // Ids resolve only to what the token's user owns: the media is theirs.
    let added = ctx
        .state
        .ops
        .add_comment(&ctx.user, (media_id, ctx.user.id), parent, text)
        .await?;
    let Some(id) = added else {
        let gone = parent.map_or(media_id.as_str(), CommentId::as_str);
        return Err(GraphError::not_found(gone, "post").into());
    };
    Ok(json!({ "id": id }))
}

/// Deletes a comment with its replies.
pub(super) async fn delete_comment(ctx: &Ctx<'_>, c: &Comment) -> Result<Value, GraphResponse> {
    ctx.need(Need::Comments)?;
    let n = ctx.store().delete_comment(&c.id).await?;
    tracing::info!(comment_id = %c.id, removed = n, "comment deleted");
    Ok(json!({"success": true}))
}
