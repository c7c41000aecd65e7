//! Media and account insights (`GET /{ig-media-id}/insights`, `GET /{ig-user-id}/insights`;
//! wire protocol §14, docs/insights.md): which metrics each API version allows, how a request
//! is checked, and the values, which follow from the sandbox's own data.
//!
//! Versions: a metric Meta retired is refused from the version that retired it on, and the
//! whole request fails, as on Graph: `(#100) metric[0] must be one of the following values: …`
//! listing what that version allows. A path without a version is read as the newest.

use crate::error::GraphError;

/// A Graph API version's major number: `v21.0` → 21. No version: the newest.
pub fn major(version: Option<&str>) -> u32 {
    version
        .and_then(|v| v.strip_prefix('v')?.split('.').next()?.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A metric, with the versions it exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Refused from this major version on.
    pub retired_in: Option<u32>,
    /// For media: only reels have it. For accounts: only `metric_type=total_value` answers it.
    pub restricted: bool,
}

const fn m(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    retired_in: Option<u32>,
    restricted: bool,
) -> Metric {
    Metric {
        name,
        title,
        description,
        retired_in,
        restricted,
    }
}

/// Media metrics, in the order Graph lists them. `restricted`: reels only.
pub const MEDIA: &[Metric] = &[
    m(
        "comments",
        "Comments",
        "The number of comments on your post.",
        None,
        false,
    ),
    m(
        "follows",
        "Follows",
        "The number of accounts that started following you from this post.",
        None,
        false,
    ),
    m(
        "ig_reels_avg_watch_time",
        "Average watch time",
        "The average time your reel was played.",
        None,
        true,
    ),
    m(
        "ig_reels_video_view_total_time",
        "Total watch time",
        "The total time your reel was played.",
        None,
        true,
    ),
    m(
        "impressions",
        "Impressions",
        "The number of times your post was on screen.",
        Some(22),
        false,
    ),
    m(
        "likes",
        "Likes",
        "The number of likes on your post.",
        None,
        false,
    ),
    m(
        "plays",
        "Plays",
        "The number of times your video or reel started to play.",
        Some(22),
        false,
    ),
    m(
        "profile_activity",
        "Profile activity",
        "Actions people took on your profile after seeing your post.",
        None,
        false,
    ),
    m(
        "profile_visits",
        "Profile visits",
        "The number of times your profile was visited from this post.",
        None,
        false,
    ),
    m(
        "reach",
        "Accounts reached",
        "The number of unique accounts that saw your post at least once.",
        None,
        false,
    ),
    m(
        "saved",
        "Saved",
        "The number of saves of your post.",
        None,
        false,
    ),
    m(
        "shares",
        "Shares",
        "The number of shares of your post.",
        None,
        false,
    ),
    m(
        "total_interactions",
        "Interactions",
        "Likes, saves, comments and shares of your post, less unlikes, unsaves and deleted comments.",
        None,
        false,
    ),
    m(
        "video_views",
        "Video views",
        "The number of times your video was viewed for 3 seconds or more.",
        Some(22),
        false,
    ),
    m(
        "views",
        "Views",
        "The number of times your post was played or displayed.",
        None,
        false,
    ),
];

/// Account metrics, in the order Graph lists them. `restricted`: only with
/// `metric_type=total_value`.
pub const ACCOUNT: &[Metric] = &[
    m(
        "accounts_engaged",
        "Accounts engaged",
        "The number of accounts that interacted with your content.",
        None,
        true,
    ),
    m(
        "comments",
        "Comments",
        "The number of comments on your posts.",
        None,
        true,
    ),
    m(
        "email_contacts",
        "Email contacts",
        "Taps on the email link in your profile.",
        Some(21),
        false,
    ),
    m(
        "follower_count",
        "Follower count",
        "The number of new followers each day.",
        None,
        false,
    ),
    m(
        "get_directions_clicks",
        "Get directions clicks",
        "Taps on the directions link in your profile.",
        Some(21),
        false,
    ),
    m(
        "impressions",
        "Impressions",
        "The number of times your content was on screen.",
        Some(22),
        false,
    ),
    m(
        "likes",
        "Likes",
        "The number of likes on your posts.",
        None,
        true,
    ),
    m(
        "phone_call_clicks",
        "Phone call clicks",
        "Taps on the call link in your profile.",
        Some(21),
        false,
    ),
    m(
        "profile_links_taps",
        "Profile links taps",
        "Taps on the links in your profile.",
        None,
        true,
    ),
    m(
        "profile_views",
        "Profile views",
        "The number of times your profile was visited.",
        Some(21),
        false,
    ),
    m(
        "reach",
        "Accounts reached",
        "The number of unique accounts that saw your content at least once.",
        None,
        false,
    ),
    m(
        "saves",
        "Saves",
        "The number of saves of your posts.",
        None,
        true,
    ),
    m(
        "shares",
        "Shares",
        "The number of shares of your posts.",
        None,
        true,
    ),
    m(
        "text_message_clicks",
        "Text message clicks",
        "Taps on the text message link in your profile.",
        Some(21),
        false,
    ),
    m(
        "total_interactions",
        "Interactions",
        "Likes, saves, comments and shares of your content.",
        None,
        true,
    ),
    m(
        "views",
        "Views",
        "The number of times your content was played or displayed.",
        None,
        true,
    ),
    m(
        "website_clicks",
        "Website clicks",
        "Taps on the website link in your profile.",
        Some(21),
        false,
    ),
];

/// The metrics `version` allows, from `catalog`.
pub fn allowed(catalog: &'static [Metric], version: u32) -> Vec<&'static Metric> {
    catalog
        .iter()
        .filter(|m| m.retired_in.is_none_or(|v| version < v))
        .collect()
}

/// `metric=a,b`: each must be one the version allows. The first that is not fails the whole
/// request, naming its place and every allowed value.
pub fn parse_metrics(
    catalog: &'static [Metric],
    raw: Option<&str>,
    version: u32,
) -> Result<Vec<&'static Metric>, GraphError> {
    let raw = raw
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| GraphError::invalid_parameter("The parameter metric is required"))?;
    let allowed = allowed(catalog, version);
    let mut out: Vec<&'static Metric> = Vec::new();
    for (i, name) in raw.split(',').map(str::trim).enumerate() {
        match allowed.iter().find(|m| m.name == name) {
            Some(m) if !out.contains(m) => out.push(m),
            Some(_) => {}
            None => {
                return Err(GraphError::invalid_parameter(format!(
                    "metric[{i}] must be one of the following values: {}",
                    allowed
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// What a media's metrics are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaCounts {
    pub likes: u64,
    pub comments: u64,
    pub is_video: bool,
}

/// A media metric's lifetime value. Likes and comments are the media's own counts; the rest
/// follow from them (docs/insights.md gives the formulas), so they grow as the sandbox's
/// activity does and two calls give the same answer.
pub fn media_value(metric: &str, c: MediaCounts) -> u64 {
    let saved = c.likes / 10;
    let shares = c.likes / 20;
    let reach = 10 * c.likes + 5 * c.comments;
    let views = 2 * reach;
    match metric {
        "likes" => c.likes,
        "comments" => c.comments,
        "saved" => saved,
        "shares" => shares,
        "total_interactions" => c.likes + c.comments + saved + shares,
        "reach" => reach,
        "views" | "impressions" => views,
        "plays" | "video_views" if c.is_video => views,
        "profile_visits" | "profile_activity" => reach / 10,
        "follows" => reach / 50,
        // Plays of a photo; and milliseconds watched, reels only, which the sandbox has none of.
        _ => 0,
    }
}

/// The media metrics a feed post refuses (reels-only ones), worded as Graph does.
pub fn check_media_metric(metric: &Metric) -> Result<(), GraphError> {
    if metric.restricted {
        return Err(GraphError::invalid_parameter(format!(
            "The Media Insights API does not support the {} metric for this media product type.",
            metric.name
        )));
    }
    Ok(())
}

/// `period` for account insights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Days28,
    Lifetime,
}

impl Period {
    pub fn parse(raw: Option<&str>) -> Result<Self, GraphError> {
        match raw {
            Some("day") => Ok(Self::Day),
            Some("week") => Ok(Self::Week),
            Some("days_28") => Ok(Self::Days28),
            Some("lifetime") => Ok(Self::Lifetime),
            Some(other) => Err(GraphError::invalid_parameter(format!(
                "period must be one of the following values: day, week, days_28, lifetime - got \"{other}\""
            ))),
            None => Err(GraphError::invalid_parameter(
                "The parameter period is required",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Days28 => "days_28",
            Self::Lifetime => "lifetime",
        }
    }
    /// Seconds in one period; lifetime counts as one day per value.
    pub fn secs(self) -> i64 {
        match self {
            Self::Day | Self::Lifetime => 86_400,
            Self::Week => 7 * 86_400,
            Self::Days28 => 28 * 86_400,
        }
    }
}

/// `metric_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    TimeSeries,
    TotalValue,
}

impl MetricType {
    pub fn parse(raw: Option<&str>) -> Result<Self, GraphError> {
        match raw {
            None | Some("time_series") => Ok(Self::TimeSeries),
            Some("total_value") => Ok(Self::TotalValue),
            Some(other) => Err(GraphError::invalid_parameter(format!(
                "metric_type must be one of the following values: time_series, total_value - got \"{other}\""
            ))),
        }
    }
}

/// Account metrics that answer only `total_value`, asked as a time series: Graph's refusal,
/// naming them all.
pub fn check_metric_type(metrics: &[&Metric], kind: MetricType) -> Result<(), GraphError> {
    let needing: Vec<&str> = metrics
        .iter()
        .filter(|m| m.restricted && kind == MetricType::TimeSeries)
        .map(|m| m.name)
        .collect();
    if needing.is_empty() {
        Ok(())
    } else {
        Err(GraphError::invalid_parameter(format!(
            "The following metrics ({}) should be specified with parameter metric_type=total_value",
            needing.join(", ")
        )))
    }
}

/// The longest `since`..`until` account insights take.
pub const MAX_RANGE_SECS: i64 = 30 * 86_400;

/// An account metric's value over the media published in a range, `followers` the account's
/// follower count: the sum of its posts' media values, and for the account-only metrics a
/// share of them (docs/insights.md).
pub fn account_value(metric: &str, posts: &[MediaCounts], followers: u64, days: u64) -> u64 {
    let sum = |name: &str| posts.iter().map(|c| media_value(name, *c)).sum::<u64>();
    match metric {
        "saves" => sum("saved"),
        "accounts_engaged" => sum("total_interactions") / 2,
        "profile_links_taps" | "website_clicks" => sum("profile_visits") / 5,
        "profile_views" => sum("profile_visits"),
        // New followers a day: a steady trickle proportional to the audience.
        "follower_count" => followers / 100 * days.max(1),
        "email_contacts"
        | "phone_call_clicks"
        | "text_message_clicks"
        | "get_directions_clicks" => 0,
        other => sum(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_retire_metrics_and_fail_the_whole_request() {
        assert_eq!(major(Some("v21.0")), 21);
        assert_eq!(major(None), u32::MAX);
        let old = parse_metrics(MEDIA, Some("impressions,reach"), 21).unwrap();
        assert_eq!(
            old.iter().map(|m| m.name).collect::<Vec<_>>(),
            ["impressions", "reach"]
        );
        let e = parse_metrics(MEDIA, Some("reach,impressions"), 22).unwrap_err();
        assert_eq!(e.code, 100);
        assert_eq!(
            e.message,
            "(#100) metric[1] must be one of the following values: comments, follows, ig_reels_avg_watch_time, ig_reels_video_view_total_time, likes, profile_activity, profile_visits, reach, saved, shares, total_interactions, views"
        );
        assert!(parse_metrics(ACCOUNT, Some("profile_views"), 20).is_ok());
        assert!(parse_metrics(ACCOUNT, Some("profile_views"), 21).is_err());
        assert!(parse_metrics(ACCOUNT, None, 22).is_err());
    }

    #[test]
    fn values_follow_the_counts() {
        let c = MediaCounts {
            likes: 40,
            comments: 3,
            is_video: false,
        };
        assert_eq!(media_value("likes", c), 40);
        assert_eq!(media_value("comments", c), 3);
        assert_eq!(media_value("total_interactions", c), 40 + 3 + 4 + 2);
        assert_eq!(media_value("reach", c), 415);
        assert_eq!(media_value("video_views", c), 0);
        let more = MediaCounts { comments: 4, ..c };
        assert!(media_value("reach", more) > media_value("reach", c));
        assert_eq!(account_value("likes", &[c, more], 1000, 1), 80);
        assert_eq!(account_value("saves", &[c], 1000, 1), 4);
        assert_eq!(account_value("follower_count", &[], 1000, 1), 10);
    }

    #[test]
    fn total_value_only_metrics_are_named() {
        let ms = parse_metrics(ACCOUNT, Some("reach,likes,views"), 22).unwrap();
        assert!(check_metric_type(&ms, MetricType::TotalValue).is_ok());
        assert_eq!(
            check_metric_type(&ms, MetricType::TimeSeries)
                .unwrap_err()
                .message,
            "(#100) The following metrics (likes, views) should be specified with parameter metric_type=total_value"
        );
        assert_eq!(Period::parse(Some("days_28")).unwrap().secs(), 28 * 86_400);
        assert!(Period::parse(Some("month")).is_err());
        let reels = parse_metrics(MEDIA, Some("ig_reels_avg_watch_time"), 22).unwrap();
        assert!(check_media_metric(reels[0]).is_err());
    }
}
