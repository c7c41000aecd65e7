//! Content publishing: containers, their states, and the 24-hour cap.
//!
//! `POST /{ig-user-id}/media` makes a container, `IN_PROGRESS` until its media has been fetched
//! and checked, then `FINISHED` (or `ERROR`, with a reason). `POST /{ig-user-id}/media_publish`
//! turns a finished container into media. A container not published within 24 hours is
//! `EXPIRED`. An account may publish [`QUOTA_TOTAL`] posts in any [`QUOTA_DURATION`] (a
//! carousel counts once).

use crate::error::GraphError;
use crate::ids::ContainerId;
use crate::time::UnixTime;

/// The default cap; `gramkey serve --publish-quota` sets another.
pub const QUOTA_TOTAL: u64 = 100;
pub const QUOTA_DURATION: i64 = 24 * 3600;
pub const CONTAINER_TTL: i64 = 24 * 3600;
pub const CAPTION_MAX_CHARS: usize = 2200;
pub const CAPTION_MAX_HASHTAGS: usize = 30;
pub const CAPTION_MAX_MENTIONS: usize = 20;
pub const CAROUSEL_MIN: usize = 2;
pub const CAROUSEL_MAX: usize = 10;
pub const URL_MAX: usize = 2048;

/// What a container will become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Image,
    Video,
    Reels,
    Stories,
    Carousel,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Image => "IMAGE",
            ContainerKind::Video => "VIDEO",
            ContainerKind::Reels => "REELS",
            ContainerKind::Stories => "STORIES",
            ContainerKind::Carousel => "CAROUSEL",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IMAGE" => ContainerKind::Image,
            "VIDEO" => ContainerKind::Video,
            "REELS" => ContainerKind::Reels,
            "STORIES" => ContainerKind::Stories,
            "CAROUSEL" => ContainerKind::Carousel,
            _ => return None,
        })
    }
    /// Whether the source is a video (fetched content must be `video/*`).
    pub fn is_video(self, source_is_video: bool) -> bool {
        match self {
            ContainerKind::Video | ContainerKind::Reels => true,
            ContainerKind::Stories => source_is_video,
            ContainerKind::Image | ContainerKind::Carousel => false,
        }
    }
}

/// A container's stored state. `EXPIRED` is not stored: see [`status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    InProgress,
    Finished,
    Error,
    Published,
    Expired,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::InProgress => "IN_PROGRESS",
            ContainerStatus::Finished => "FINISHED",
            ContainerStatus::Error => "ERROR",
            ContainerStatus::Published => "PUBLISHED",
            ContainerStatus::Expired => "EXPIRED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IN_PROGRESS" => ContainerStatus::InProgress,
            "FINISHED" => ContainerStatus::Finished,
            "ERROR" => ContainerStatus::Error,
            "PUBLISHED" => ContainerStatus::Published,
            "EXPIRED" => ContainerStatus::Expired,
            _ => return None,
        })
    }
}

/// The status a client sees: an unpublished container expires 24 hours after it was made.
pub fn status(stored: ContainerStatus, created_at: UnixTime, now: UnixTime) -> ContainerStatus {
    match stored {
        ContainerStatus::InProgress | ContainerStatus::Finished
            if now >= created_at + CONTAINER_TTL =>
        {
            ContainerStatus::Expired
        }
        s => s,
    }
}

/// The parameters of `POST /{ig-user-id}/media`, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContainerParams<'a> {
    pub media_type: Option<&'a str>,
    pub image_url: Option<&'a str>,
    pub video_url: Option<&'a str>,
    pub caption: Option<&'a str>,
    pub is_carousel_item: Option<&'a str>,
    pub children: Option<&'a str>,
}

/// A valid container request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub kind: ContainerKind,
    /// The image or video to fetch; `None` for a carousel.
    pub source_url: Option<String>,
    pub source_is_video: bool,
    pub caption: String,
    pub is_carousel_item: bool,
    /// Child container ids, for a carousel, in order.
    pub children: Vec<ContainerId>,
}

fn bad(msg: impl Into<String>) -> GraphError {
    GraphError::invalid_parameter(msg)
}

fn check_url(name: &str, raw: &str) -> Result<String, GraphError> {
    let ok = raw.len() <= URL_MAX
        && url::Url::parse(raw)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(bad(format!(
            "The parameter {name} must be an absolute http(s) URL"
        )))
    }
}

/// Validates a caption against Instagram's limits.
pub fn check_caption(caption: &str) -> Result<(), GraphError> {
    if caption.chars().count() > CAPTION_MAX_CHARS {
        return Err(bad(format!(
            "The caption is longer than {CAPTION_MAX_CHARS} characters"
        )));
    }
    let words = || caption.split_whitespace();
    if words().filter(|w| w.starts_with('#')).count() > CAPTION_MAX_HASHTAGS {
        return Err(bad(format!(
            "The caption has more than {CAPTION_MAX_HASHTAGS} hashtags"
        )));
    }
    if words().filter(|w| w.starts_with('@')).count() > CAPTION_MAX_MENTIONS {
        return Err(bad(format!(
            "The caption has more than {CAPTION_MAX_MENTIONS} @mentions"
        )));
    }
    Ok(())
}

impl ContainerSpec {
    pub fn parse(p: ContainerParams<'_>) -> Result<Self, GraphError> {
        let is_carousel_item = match p.is_carousel_item {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad(format!(
                    "is_carousel_item must be true or false, not {other:?}"
                )));
            }
        };
        let kind = match p.media_type {
            Some(t) => ContainerKind::parse(t).ok_or_else(|| {
                bad(format!(
                    "media_type must be one of IMAGE, VIDEO, REELS, STORIES, CAROUSEL, not {t:?}"
                ))
            })?,
            None if p.video_url.is_some() => ContainerKind::Video,
            None => ContainerKind::Image,
        };
        let caption = p.caption.unwrap_or_default();
        check_caption(caption)?;
        if kind == ContainerKind::Carousel {
            if p.image_url.is_some() || p.video_url.is_some() {
                return Err(bad(
                    "A CAROUSEL container takes children, not image_url or video_url",
                ));
            }
            if is_carousel_item {
                return Err(bad("A carousel cannot be an item of another carousel"));
            }
            let raw = p
                .children
                .ok_or_else(|| bad("The parameter children is required"))?;
            let children: Vec<ContainerId> = raw
                .split(',')
                .map(|c| ContainerId::parse(c.trim()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    bad(format!(
                        "children must be comma-separated container ids, not {raw:?}"
                    ))
                })?;
            let mut unique = children.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != children.len() {
                return Err(bad("children lists a container more than once"));
            }
            if !(CAROUSEL_MIN..=CAROUSEL_MAX).contains(&children.len()) {
                return Err(bad(format!(
                    "A carousel has {CAROUSEL_MIN} to {CAROUSEL_MAX} children, not {}",
                    children.len()
                )));
            }
            return Ok(Self {
                kind,
                source_url: None,
                source_is_video: false,
                caption: caption.to_owned(),
                is_carousel_item,
                children,
            });
        }
        if p.children.is_some() {
            return Err(bad("children is only for media_type=CAROUSEL"));
        }
        let (source, is_video) = match (kind, p.image_url, p.video_url) {
            (_, Some(_), Some(_)) => return Err(bad("Send image_url or video_url, not both")),
            (ContainerKind::Image, Some(u), None) => (check_url("image_url", u)?, false),
            (ContainerKind::Image, None, _) => {
                return Err(bad("The parameter image_url is required."));
            }
            (ContainerKind::Video | ContainerKind::Reels, None, Some(u)) => {
                (check_url("video_url", u)?, true)
            }
            (ContainerKind::Video | ContainerKind::Reels, _, None) => {
                return Err(bad("The parameter video_url is required."));
            }
            (ContainerKind::Stories, Some(u), None) => (check_url("image_url", u)?, false),
            (ContainerKind::Stories, None, Some(u)) => (check_url("video_url", u)?, true),
            (ContainerKind::Stories, None, None) => {
                return Err(bad("The parameter image_url or video_url is required."));
            }
            // Carousels were handled above.
            (ContainerKind::Carousel, ..) => {
                return Err(bad("A CAROUSEL container takes children"));
            }
        };
        if is_carousel_item && !matches!(kind, ContainerKind::Image | ContainerKind::Video) {
            return Err(bad("Only IMAGE and VIDEO containers can be carousel items"));
        }
        Ok(Self {
            kind,
            source_url: Some(source),
            source_is_video: is_video,
            caption: caption.to_owned(),
            is_carousel_item,
            children: Vec::new(),
        })
    }
}

/// Whether a child container may go into a carousel: a finished carousel item.
pub fn check_child(
    id: &ContainerId,
    is_carousel_item: bool,
    status: ContainerStatus,
) -> Result<(), GraphError> {
    if !is_carousel_item {
        return Err(bad(format!(
            "Container {id} was not created with is_carousel_item=true"
        )));
    }
    match status {
        ContainerStatus::Finished => Ok(()),
        ContainerStatus::InProgress => Err(GraphError::not_ready()),
        other => Err(bad(format!("Container {id} is {}", other.as_str()))),
    }
}

/// Whether a container may be published now.
pub fn check_publishable(
    status: ContainerStatus,
    is_carousel_item: bool,
) -> Result<(), GraphError> {
    if is_carousel_item {
        return Err(bad("A carousel item is published through its carousel"));
    }
    match status {
        ContainerStatus::Finished => Ok(()),
        ContainerStatus::InProgress => Err(GraphError::not_ready()),
        ContainerStatus::Published => Err(bad("This container has already been published")),
        ContainerStatus::Expired => Err(bad(
            "This container has expired: containers must be published within 24 hours",
        )),
        ContainerStatus::Error => Err(bad(
            "This container failed processing and cannot be published",
        )),
    }
}

/// Whether the fetched content fits the container: `image/*` for images, `video/*` for
/// videos.
/// The reason an `ERROR` container shows, whatever went wrong fetching its media: Instagram's
/// 2207052. The detail (refused address, HTTP status, Content-Type) goes to the server's log
/// only, so a container cannot be used to probe what answers where.
pub const FETCH_FAILED: &str = "The media could not be fetched from this URI (2207052)";

pub fn check_content_type(is_video: bool, content_type: Option<&str>) -> Result<(), String> {
    let want = if is_video { "video/" } else { "image/" };
    match content_type {
        Some(ct) if ct.trim().to_ascii_lowercase().starts_with(want) => Ok(()),
        Some(ct) => Err(format!("The media at this URL is {ct}, not {want}*")),
        None => Err(format!(
            "The media at this URL has no Content-Type; expected {want}*"
        )),
    }
}

/// What a post counts against the cap: `usage` posts in the last 24 hours, of `total`.
pub fn check_quota(usage: u64, total: u64) -> Result<(), GraphError> {
    if usage >= total {
        Err(GraphError::publish_limit())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(f: impl FnOnce(&mut ContainerParams<'a>)) -> ContainerParams<'a> {
        let mut x = ContainerParams::default();
        f(&mut x);
        x
    }

    #[test]
    fn specs() {
        let img = ContainerSpec::parse(p(|x| x.image_url = Some("https://e.com/a.jpg"))).unwrap();
        assert_eq!(img.kind, ContainerKind::Image);
        let vid =
            ContainerSpec::parse(p(|x| x.video_url = Some("http://127.0.0.1:9/v.mp4"))).unwrap();
        assert_eq!(
            (vid.kind, vid.source_is_video),
            (ContainerKind::Video, true)
        );
        let car = ContainerSpec::parse(p(|x| {
            x.media_type = Some("CAROUSEL");
            x.children = Some("1,2,3");
        }))
        .unwrap();
        assert_eq!(
            car.children
                .iter()
                .map(ContainerId::as_str)
                .collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        for bad in [
            p(|_| {}),
            p(|x| x.image_url = Some("ftp://e.com/a")),
            p(|x| x.image_url = Some("not a url")),
            p(|x| {
                x.image_url = Some("https://e.com/a");
                x.video_url = Some("https://e.com/b");
            }),
            p(|x| {
                x.media_type = Some("VIDEO");
                x.image_url = Some("https://e.com/a");
            }),
            p(|x| {
                x.media_type = Some("CAROUSEL");
                x.children = Some("1");
            }),
            p(|x| {
                x.media_type = Some("CAROUSEL");
                x.children = Some("1,1");
            }),
            p(|x| {
                x.media_type = Some("CAROUSEL");
                x.children = Some("1,x");
            }),
            p(|x| x.media_type = Some("GIF")),
            p(|x| {
                x.image_url = Some("https://e.com/a");
                x.is_carousel_item = Some("yes");
            }),
            p(|x| {
                x.image_url = Some("https://e.com/a");
                x.children = Some("1,2");
            }),
        ] {
            assert_eq!(ContainerSpec::parse(bad).unwrap_err().code, 100, "{bad:?}");
        }
        let long = "x".repeat(CAPTION_MAX_CHARS + 1);
        assert!(check_caption(&long).is_err());
        assert!(check_caption(&"#a ".repeat(31)).is_err());
        assert!(check_caption("fine #one @two").is_ok());
    }

    #[test]
    fn states_and_quota() {
        assert_eq!(
            status(ContainerStatus::Finished, 0, CONTAINER_TTL - 1),
            ContainerStatus::Finished
        );
        assert_eq!(
            status(ContainerStatus::Finished, 0, CONTAINER_TTL),
            ContainerStatus::Expired
        );
        assert_eq!(
            status(ContainerStatus::Published, 0, 10 * CONTAINER_TTL),
            ContainerStatus::Published
        );
        assert_eq!(
            check_publishable(ContainerStatus::InProgress, false)
                .unwrap_err()
                .code,
            9007
        );
        assert!(check_publishable(ContainerStatus::Finished, false).is_ok());
        assert!(check_publishable(ContainerStatus::Finished, true).is_err());
        assert!(check_quota(QUOTA_TOTAL - 1, QUOTA_TOTAL).is_ok());
        assert_eq!(check_quota(QUOTA_TOTAL, QUOTA_TOTAL).unwrap_err().code, 9);
        assert!(check_quota(25, 25).is_err());
        assert!(check_content_type(false, Some("image/jpeg")).is_ok());
        assert!(check_content_type(false, Some("text/html")).is_err());
        assert!(check_content_type(true, None).is_err());
    }
}
