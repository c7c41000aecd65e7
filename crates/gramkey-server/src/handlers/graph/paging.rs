//! Edges read a page at a time, with Graph's cursors and `next` / `previous` links.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::fields::{self, Field};
use gramkey_domain::graph::paging::{DEFAULT_LIMIT, Page, PageParams, PageRequest, Position};
use gramkey_store::{Comment, CommentsOf, Media};
use serde_json::{Value, json};

use super::expand::{comment_node, media_node};
use super::{Ctx, Fut};

/// One edge listing: where it lives, which page, the fields of its items, and whether it is
/// the request itself (`top_level`: links repeat the request's own parameters) or nested in a
/// node (links carry the edge's fields and limit).
pub(super) struct Listing<'a> {
    pub path: &'a str,
    pub req: &'a PageRequest,
    pub sub: &'a [Field],
    pub top_level: bool,
}

/// The page the request asks for.
pub(super) fn page_request(ctx: &Ctx<'_>) -> Result<PageRequest, GraphError> {
    let p = ctx.params;
    PageRequest::parse(
        PageParams {
            limit: p.get("limit"),
            after: p.get("after"),
            before: p.get("before"),
            since: p.get("since"),
            until: p.get("until"),
        },
        DEFAULT_LIMIT,
    )
}

/// `{"data":[…],"paging":{"cursors":{…},"next":…,"previous":…}}`: the links repeat the listing
/// with a new cursor.
fn paged<T>(
    ctx: &Ctx<'_>,
    listing: &Listing<'_>,
    data: Vec<Value>,
    page: &Page<T>,
    place: fn(&T) -> Position,
) -> Value {
    let mut out = json!({ "data": data });
    let (Some(first), Some(last)) = (page.items.first().map(place), page.items.last().map(place))
    else {
        return out;
    };
    let mut query: Vec<(String, String)> = if listing.top_level {
        ctx.params
            .0
            .iter()
            .filter(|(k, _)| k != "after" && k != "before")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    } else {
        let mut q = vec![
            ("fields".to_owned(), fields::render(listing.sub)),
            ("limit".to_owned(), listing.req.limit.to_string()),
        ];
        if let Some(t) = &ctx.query_token {
            q.push(("access_token".into(), t.clone()));
        }
        q
    };
    let link = |query: &mut Vec<(String, String)>, name: &str, cursor: String| {
        query.push((name.to_owned(), cursor));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter())
            .finish();
        query.pop();
        format!("{}{}?{qs}", ctx.base(), listing.path)
    };
    let mut paging = json!({"cursors": {"before": first.cursor(), "after": last.cursor()}});
    if page.has_next {
        paging["next"] = json!(link(&mut query, "after", last.cursor()));
    }
    if page.has_previous {
        paging["previous"] = json!(link(&mut query, "before", first.cursor()));
    }
    out["paging"] = paging;
    out
}

/// A page of the user's media.
pub(super) async fn media_edge(
    ctx: &Ctx<'_>,
    listing: &Listing<'_>,
) -> Result<Value, GraphResponse> {
    let rows = ctx.store().media_page(ctx.user.id, listing.req).await?;
    let page = Page::cut(rows, listing.req);
    let mut data = Vec::with_capacity(page.items.len());
    for m in &page.items {
        data.push(media_node(ctx, m, listing.sub).await?);
    }
    Ok(paged(ctx, listing, data, &page, Media::place))
}

/// A page of a media's comments or a comment's replies.
pub(super) fn comments_edge<'a>(
    ctx: &'a Ctx<'a>,
    of: CommentsOf<'a>,
    listing: &'a Listing<'a>,
) -> Fut<'a, Value> {
    Box::pin(async move {
        let rows = ctx.store().comments_page(of, listing.req).await?;
        let page = Page::cut(rows, listing.req);
        let mut data = Vec::with_capacity(page.items.len());
        for c in &page.items {
            data.push(comment_node(ctx, c, listing.sub).await?);
        }
        Ok(paged(ctx, listing, data, &page, Comment::place))
    })
}
