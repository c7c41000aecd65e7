//! Field expansion (wire protocol §4): the `fields` of a request checked against the node
//! type, and users, media and comments rendered field by field, with nested edges.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::access::Node;
use gramkey_domain::graph::fields::{self, Field, plain};
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::{DEFAULT_LIMIT, MAX_LIMIT, PageRequest};
use gramkey_store::{Comment, CommentsOf, Media};
use serde_json::{Map, Value, json};

use super::paging::{Listing, comments_edge, media_edge};
use super::{Ctx, Fut};
use crate::wire::nodes;

/// The `fields` of the request, checked against the node type: only `id` when absent (the
/// default of the node's edge listing for edges).
pub(super) fn requested(ctx: &Ctx<'_>, node: Node) -> Result<Vec<Field>, GraphResponse> {
    let f = match ctx.params.get("fields") {
        Some(raw) => fields::parse(raw)?,
        None => plain(node.default_fields()),
    };
    node.check(&f, &ctx.token.scopes, ctx.flavour())?;
    Ok(f)
}

pub(super) async fn user_node(ctx: &Ctx<'_>, fields: &[Field]) -> Result<Value, GraphResponse> {
    let media_count = if fields.iter().any(|f| f.name == "media_count") {
        Some(ctx.store().media_count(ctx.user.id).await?)
    } else {
        None
    };
    let mut out = Map::new();
    for f in fields {
        if f.name == "media" {
            let (sub, page) = nested(f, Node::Media);
            let path = format!("/{}/media", ctx.scoped);
            out.insert(
                f.name.clone(),
                media_edge(ctx, &nested_listing(&path, &page, &sub)).await?,
            );
        } else if let Some(v) = nodes::user_field(&f.name, &ctx.user, &ctx.scoped, media_count) {
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// A nested edge's selection (its node type's defaults when none is given) and first page.
pub(super) fn nested(f: &Field, node: Node) -> (Vec<Field>, PageRequest) {
    let sub = f
        .sub
        .clone()
        .unwrap_or_else(|| plain(node.default_fields()));
    let limit = f.limit.map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
    (sub, PageRequest::first(limit))
}

fn nested_listing<'a>(path: &'a str, req: &'a PageRequest, sub: &'a [Field]) -> Listing<'a> {
    Listing {
        path,
        req,
        sub,
        top_level: false,
    }
}

pub(super) fn media_node<'a>(
    ctx: &'a Ctx<'a>,
    m: &'a Media,
    fields: &'a [Field],
) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut out = Map::new();
        for f in fields {
            match f.name.as_str() {
                "children" => {
                    if m.media_type == MediaType::CarouselAlbum {
                        let (sub, _) = nested(f, Node::Media);
                        out.insert(f.name.clone(), children_edge(ctx, m, &sub).await?);
                    }
                }
                "comments" => {
                    let (sub, page) = nested(f, Node::Comment);
                    let path = format!("/{}/comments", m.id);
                    out.insert(
                        f.name.clone(),
                        comments_edge(
                            ctx,
                            CommentsOf::Media(&m.id),
                            &nested_listing(&path, &page, &sub),
                        )
                        .await?,
                    );
                }
                name => {
                    if let Some(v) = nodes::media_field(name, m, &ctx.user.username) {
                        out.insert(f.name.clone(), v);
                    }
                }
            }
        }
        Ok(Value::Object(out))
    })
}

pub(super) fn comment_node<'a>(
    ctx: &'a Ctx<'a>,
    c: &'a Comment,
    fields: &'a [Field],
) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut out = Map::new();
        for f in fields {
            if f.name == "replies" {
                let (sub, page) = nested(f, Node::Comment);
                let path = format!("/{}/replies", c.id);
                out.insert(
                    f.name.clone(),
                    comments_edge(
                        ctx,
                        CommentsOf::Replies(&c.id),
                        &nested_listing(&path, &page, &sub),
                    )
                    .await?,
                );
            } else if let Some(v) = nodes::comment_field(&f.name, c) {
                out.insert(f.name.clone(), v);
            }
        }
        Ok(Value::Object(out))
    })
}

pub(super) async fn children_edge(
    ctx: &Ctx<'_>,
    album: &Media,
    sub: &[Field],
) -> Result<Value, GraphResponse> {
    if album.media_type != MediaType::CarouselAlbum {
        return Err(GraphError::invalid_parameter(format!(
            "Media {} is not an album and has no children",
            album.id
        ))
        .into());
    }
    let mut data = Vec::new();
    for child in ctx.store().children(&album.id).await? {
        data.push(media_node(ctx, &child, sub).await?);
    }
    Ok(json!({ "data": data }))
}
