//! Content publishing on the Graph host: parameters in, the publishing service
//! ([`crate::publishing`]) called, ids out.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::access::Need;
use gramkey_domain::graph::fields::{self, plain};
use gramkey_domain::graph::publish::{ContainerParams, QUOTA_DURATION};
use serde_json::{Map, Value, json};

use super::Ctx;

/// `POST /{user}/media`.
pub(super) async fn create_container(ctx: &Ctx<'_>) -> Result<Value, GraphResponse> {
    ctx.need(Need::Publish)?;
    let p = ctx.params;
    let params = ContainerParams {
        media_type: p.get("media_type"),
        image_url: p.get("image_url"),
        video_url: p.get("video_url"),
        caption: p.get("caption"),
        is_carousel_item: p.get("is_carousel_item"),
        children: p.get("children"),
    };
    let id = ctx
        .state
        .publishing()
        .create_container(ctx.publisher(), params)
        .await?;
    Ok(json!({ "id": id }))
}

/// `POST /{user}/media_publish`.
pub(super) async fn publish(ctx: &Ctx<'_>) -> Result<Value, GraphResponse> {
    ctx.need(Need::Publish)?;
    let id = ctx
        .params
        .get("creation_id")
        .ok_or_else(|| GraphError::invalid_parameter("The parameter creation_id is required."))?;
    let media = ctx.state.publishing().publish(ctx.publisher(), id).await?;
    Ok(json!({ "id": media }))
}

/// `GET /{user}/content_publishing_limit`.
pub(super) async fn publishing_limit(ctx: &Ctx<'_>) -> Result<Value, GraphResponse> {
    ctx.need(Need::Publish)?;
    let fields = match ctx.params.get("fields") {
        Some(raw) => fields::parse(raw)?,
        None => plain(&["quota_usage"]),
    };
    let usage = ctx.state.publishing().quota_usage(ctx.publisher()).await?;
    let mut row = Map::new();
    for f in &fields {
        match (f.name.as_str(), &f.sub) {
            ("quota_usage", None) => row.insert(f.name.clone(), json!(usage)),
            ("config", None) => row.insert(
                f.name.clone(),
                json!({"quota_total": ctx.state.config.publish_quota, "quota_duration": QUOTA_DURATION}),
            ),
            _ => {
                return Err(
                    GraphError::nonexisting_field(&f.name, "ContentPublishingLimit").into(),
                );
            }
        };
    }
    Ok(json!({ "data": [row] }))
}
