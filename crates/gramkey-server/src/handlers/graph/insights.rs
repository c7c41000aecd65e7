//! `GET /{ig-media-id}/insights` and `GET /{ig-user-id}/insights` (wire protocol §14,
//! docs/insights.md): the metrics the path's API version allows, valued from the sandbox's
//! data by `gramkey_domain::graph::metrics`.

use gramkey_domain::error::GraphError;
use gramkey_domain::graph::access::Need;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::metrics::{
    ACCOUNT, MAX_RANGE_SECS, MEDIA, MediaCounts, Metric, MetricType, Period, account_value,
    check_media_metric, check_metric_type, media_value, parse_metrics,
};
use gramkey_domain::graph::paging::{PageRequest, parse_time};
use gramkey_domain::time::graph_timestamp;
use gramkey_store::Media;
use serde_json::{Value, json};

use super::Ctx;
use crate::wire::graph::GraphResponse;

fn counts(m: &Media) -> MediaCounts {
    MediaCounts {
        likes: u64::try_from(m.like_count).unwrap_or(0),
        comments: u64::try_from(m.comments_count).unwrap_or(0),
        is_video: m.media_type == MediaType::Video,
    }
}

fn entry(id: &str, metric: &Metric, period: &str) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("name".into(), json!(metric.name));
    o.insert("period".into(), json!(period));
    o.insert("title".into(), json!(metric.title));
    o.insert("description".into(), json!(metric.description));
    o.insert(
        "id".into(),
        json!(format!("{id}/insights/{}/{period}", metric.name)),
    );
    o
}

/// A media's lifetime metrics.
pub(super) async fn media_insights(ctx: &Ctx<'_>, m: &Media) -> Result<Value, GraphResponse> {
    ctx.need(Need::Insights)?;
    if m.parent_id.is_some() {
        return Err(GraphError::invalid_parameter(
            "Insights are not available for an album's children: ask the album",
        )
        .into());
    }
    let metrics = parse_metrics(MEDIA, ctx.params.get("metric"), ctx.version)?;
    for metric in &metrics {
        check_media_metric(metric)?;
    }
    let c = counts(m);
    let data: Vec<Value> = metrics
        .iter()
        .map(|metric| {
            let mut o = entry(m.id.as_str(), metric, "lifetime");
            o.insert(
                "values".into(),
                json!([{ "value": media_value(metric.name, c) }]),
            );
            Value::Object(o)
        })
        .collect();
    Ok(json!({ "data": data }))
}

/// The account's metrics over `since`..`until`, by period (`time_series`) or in total
/// (`total_value`), from the posts published in the range.
pub(super) async fn account_insights(ctx: &Ctx<'_>) -> Result<Value, GraphResponse> {
    ctx.need(Need::Insights)?;
    let p = ctx.params;
    let metrics = parse_metrics(ACCOUNT, p.get("metric"), ctx.version)?;
    let period = Period::parse(p.get("period"))?;
    let kind = MetricType::parse(p.get("metric_type"))?;
    check_metric_type(&metrics, kind)?;
    if period == Period::Lifetime && kind == MetricType::TimeSeries {
        return Err(GraphError::invalid_parameter(
            "The lifetime period is supported only with metric_type=total_value",
        )
        .into());
    }
    match (p.get("breakdown"), kind) {
        (None, _) | (Some("media_product_type"), MetricType::TotalValue) => {}
        (Some("media_product_type"), MetricType::TimeSeries) => {
            return Err(GraphError::invalid_parameter(
                "breakdown requires metric_type=total_value",
            )
            .into());
        }
        (Some(other), _) => {
            return Err(GraphError::invalid_parameter(format!(
                "breakdown must be one of the following values: media_product_type - got \"{other}\""
            ))
            .into());
        }
    }
    let now = ctx.now();
    let until = p
        .get("until")
        .map(|u| parse_time("until", u))
        .transpose()?
        .unwrap_or(now);
    let since = match p.get("since") {
        Some(s) => parse_time("since", s)?,
        None if period == Period::Lifetime => ctx.user.created_at,
        None => until - 2 * period.secs(),
    };
    if since >= until {
        return Err(GraphError::invalid_parameter("since must be before until").into());
    }
    if period != Period::Lifetime && until - since > MAX_RANGE_SECS {
        return Err(GraphError::invalid_parameter(format!(
            "There cannot be more than 30 days ({MAX_RANGE_SECS} s) between since and until"
        ))
        .into());
    }
    let posts = posts_between(ctx, since, until).await?;
    let followers = u64::try_from(ctx.user.profile.followers_count).unwrap_or(0);
    let id = ctx.scoped.as_str();
    let in_range = |from: i64, to: i64| -> Vec<MediaCounts> {
        posts
            .iter()
            .filter(|m| m.created_at >= from && m.created_at < to)
            .map(counts)
            .collect()
    };
    let days = |from: i64, to: i64| u64::try_from((to - from).div_euclid(86_400)).unwrap_or(0);
    let data: Vec<Value> = metrics
        .iter()
        .map(|metric| {
            let mut o = entry(id, metric, period.as_str());
            match kind {
                MetricType::TotalValue => {
                    let value = account_value(
                        metric.name,
                        &in_range(since, until),
                        followers,
                        days(since, until),
                    );
                    let mut total = json!({ "value": value });
                    if p.get("breakdown").is_some() {
                        total["breakdowns"] = json!([{
                            "dimension_keys": ["media_product_type"],
                            "results": [{ "dimension_values": ["POST"], "value": value }],
                        }]);
                    }
                    o.insert("total_value".into(), total);
                }
                MetricType::TimeSeries => {
                    let step = period.secs();
                    let mut values = Vec::new();
                    let mut from = since;
                    while from < until {
                        let to = (from + step).min(until);
                        let value = account_value(
                            metric.name,
                            &in_range(from, to),
                            followers,
                            days(from, to).max(1),
                        );
                        values.push(json!({ "value": value, "end_time": graph_timestamp(to) }));
                        from = to;
                    }
                    o.insert("values".into(), json!(values));
                }
            }
            Value::Object(o)
        })
        .collect();
    Ok(json!({ "data": data }))
}

/// The account's posts published in `since`..`until`, every page of them.
async fn posts_between(ctx: &Ctx<'_>, since: i64, until: i64) -> Result<Vec<Media>, GraphResponse> {
    let mut all: Vec<Media> = Vec::new();
    loop {
        let req = PageRequest {
            limit: 100,
            after: all.last().map(Media::place),
            before: None,
            since: Some(since),
            until: Some(until),
        };
        let page = ctx.store().media_page(ctx.user.id, &req).await?;
        let done = page.len() < 100;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}
