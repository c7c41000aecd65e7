//! Writing and deleting comments and replies.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::access::Need;
use gramkey_domain::graph::comment::check_message;
use gramkey_domain::ids::generate_comment_id;
use gramkey_store::{Comment, NewComment};
use serde_json::{Value, json};

use super::Ctx;

/// Adds a comment to `media_id` (a reply to `parent`); its id.
pub(super) async fn add_comment(
    ctx: &Ctx<'_>,
    media_id: &str,
    parent: Option<&str>,
) -> Result<Value, GraphResponse> {
    ctx.need(Need::Comments)?;
    let text = check_message(ctx.params.get("message"))?;
    let id = generate_comment_id(&*ctx.state.ops.entropy);
    let added = ctx
        .store()
        .add_comment(&NewComment {
            id: id.clone(),
            media_id: media_id.to_owned(),
            user_id: ctx.user.id,
            parent_id: parent.map(str::to_owned),
            text,
            created_at: ctx.now(),
        })
        .await?;
    if !added {
        return Err(GraphError::not_found(parent.unwrap_or(media_id), "post").into());
    }
    Ok(json!({ "id": id }))
}

/// Deletes a comment with its replies.
pub(super) async fn delete_comment(ctx: &Ctx<'_>, c: &Comment) -> Result<Value, GraphResponse> {
    ctx.need(Need::Comments)?;
    let n = ctx.store().delete_comment(&c.id).await?;
    tracing::info!(comment_id = %c.id, removed = n, "comment deleted");
    Ok(json!({"success": true}))
}
