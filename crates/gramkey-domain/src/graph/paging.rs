//! Cursor paging over lists kept newest first: media of a user, comments of a media.
//!
//! An item's place is its [`Position`], `(created_at, id)`; lists are ordered by it,
//! descending. Cursors encode a position, so they stay valid while items are added: a forward
//! walk (`after`) never sees an item twice or skips one, whatever is published meanwhile.
//!
//! - `limit`: default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`] (larger values are lowered to it,
//!   as Graph does); `0`, negatives and non-numbers are code 100.
//! - `after` / `before`: cursors from an earlier page; not both at once.
//! - `since` / `until`: inclusive bounds on `created_at`, as Unix seconds, `YYYY-MM-DD` (UTC
//!   midnight) or RFC 3339.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::GraphError;
use crate::time::UnixTime;

pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 100;

/// Where an item sits in its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub at: UnixTime,
    pub id: String,
}

/// Cursors start `QVFI`, like Graph's: the base64 of this prefix.
const CURSOR_PREFIX: &str = "AQH";

impl Position {
    pub fn cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}:{}", self.at, self.id))
    }

    /// Parses a cursor strictly; `None` for anything this server did not make.
    pub fn from_cursor(cursor: &str) -> Option<Self> {
        if cursor.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim_end_matches('=')).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.strip_prefix(CURSOR_PREFIX)?.split_once(':')?;
        let at: UnixTime = at.parse().ok().filter(|t| *t >= 0)?;
        valid_id(id).then(|| Self {
            at,
            id: id.to_owned(),
        })
    }
}

pub use crate::ids::valid_id;

/// What page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Items after (older than) this one.
    pub after: Option<Position>,
    /// Items before (newer than) this one. Never set together with `after`.
    pub before: Option<Position>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
}

/// The paging parameters of a request, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageParams<'a> {
    pub limit: Option<&'a str>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            after: None,
            before: None,
            since: None,
            until: None,
        }
    }

    pub fn parse(p: PageParams<'_>, default_limit: u32) -> Result<Self, GraphError> {
        let limit = match p.limit {
            None => default_limit,
            Some(raw) => parse_limit(raw)?,
        };
        let cursor = |name: &str, raw: Option<&str>| {
            raw.map(|c| {
                Position::from_cursor(c).ok_or_else(|| {
                    GraphError::invalid_parameter(format!("The {name} cursor is invalid: {c:?}"))
                })
            })
            .transpose()
        };
        let after = cursor("after", p.after)?;
        let before = cursor("before", p.before)?;
        if after.is_some() && before.is_some() {
            return Err(GraphError::invalid_parameter(
                "Use the after cursor or the before cursor, not both",
            ));
        }
        let since = p.since.map(|s| parse_time("since", s)).transpose()?;
        let until = p.until.map(|s| parse_time("until", s)).transpose()?;
        Ok(Self {
            limit,
            after,
            before,
            since,
            until,
        })
    }

    /// How many rows a store should read: one more than the page, to tell whether there is more.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }
}

/// `limit`: a positive integer, lowered to [`MAX_LIMIT`].
pub fn parse_limit(raw: &str) -> Result<u32, GraphError> {
    match raw.parse::<u64>() {
        Ok(0) | Err(_) => Err(GraphError::invalid_parameter(format!(
            "limit must be a positive integer, not {raw:?}"
        ))),
        Ok(n) => Ok(u32::try_from(n.min(u64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT)),
    }
}

/// `since` / `until`: Unix seconds, `YYYY-MM-DD`, or RFC 3339.
pub fn parse_time(name: &str, raw: &str) -> Result<UnixTime, GraphError> {
    use ::time::format_description::well_known::Rfc3339;
    use ::time::macros::format_description;
    use ::time::{Date, OffsetDateTime};
    if let Some(t) = raw.parse::<i64>().ok().filter(|t| *t >= 0) {
        return Ok(t);
    }
    if let Ok(d) = Date::parse(raw, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    Err(GraphError::invalid_parameter(format!(
        "{name} must be a Unix timestamp, YYYY-MM-DD or an RFC 3339 time, not {raw:?}"
    )))
}

/// One page cut from the rows a store returned (`fetch()` of them at most, in display order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// There are older items: link `next`.
    pub has_next: bool,
    /// There are newer items: link `previous`.
    pub has_previous: bool,
}

impl<T> Page<T> {
    /// Going forward the extra row is the last; going backward (`before`) it is the first.
    pub fn cut(mut rows: Vec<T>, req: &PageRequest) -> Self {
        let limit = req.limit as usize;
        let more = rows.len() > limit;
        if req.before.is_some() {
            if more {
                rows.drain(..rows.len() - limit);
            }
            Page {
                items: rows,
                has_next: true,
                has_previous: more,
            }
        } else {
            rows.truncate(limit);
            Page {
                items: rows,
                has_next: more,
                has_previous: req.after.is_some(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(at: i64, id: &str) -> Position {
        Position { at, id: id.into() }
    }

    #[test]
    fn cursors_round_trip_and_look_like_graphs() {
        let p = pos(1_504_203_000, "17900000000000001");
        let c = p.cursor();
        assert!(c.starts_with("QVFI"), "{c}");
        assert_eq!(Position::from_cursor(&c), Some(p));
        for bad in ["", "QVFI", "xyz", "QVFIMTI6YWJj", &"Q".repeat(200)] {
            assert_eq!(Position::from_cursor(bad), None, "{bad}");
        }
        // A well-formed base64 of something else.
        assert_eq!(
            Position::from_cursor(&URL_SAFE_NO_PAD.encode("AQH-1:5")),
            None
        );
    }

    #[test]
    fn params_are_strict() {
        let ok = PageRequest::parse(
            PageParams {
                limit: Some("500"),
                since: Some("2017-08-31"),
                until: Some("1504300000"),
                ..Default::default()
            },
            DEFAULT_LIMIT,
        )
        .unwrap();
        assert_eq!(ok.limit, MAX_LIMIT);
        assert_eq!(ok.since, Some(1_504_137_600));
        assert_eq!(ok.until, Some(1_504_300_000));
        assert_eq!(
            parse_time("since", "2017-08-31T18:10:00Z").unwrap(),
            1_504_203_000
        );
        let c = pos(1, "2").cursor();
        for bad in [
            PageParams {
                limit: Some("0"),
                ..Default::default()
            },
            PageParams {
                limit: Some("-3"),
                ..Default::default()
            },
            PageParams {
                limit: Some("ten"),
                ..Default::default()
            },
            PageParams {
                after: Some("nope"),
                ..Default::default()
            },
            PageParams {
                after: Some(&c),
                before: Some(&c),
                ..Default::default()
            },
            PageParams {
                since: Some("yesterday"),
                ..Default::default()
            },
        ] {
            assert_eq!(
                PageRequest::parse(bad, DEFAULT_LIMIT).unwrap_err().code,
                100
            );
        }
    }

    #[test]
    fn cutting_pages() {
        let first = PageRequest::first(2);
        let p = Page::cut(vec![1, 2, 3], &first);
        assert_eq!(
            (p.items, p.has_next, p.has_previous),
            (vec![1, 2], true, false)
        );
        let p = Page::cut(vec![1, 2], &first);
        assert_eq!(
            (p.items, p.has_next, p.has_previous),
            (vec![1, 2], false, false)
        );
        let after = PageRequest {
            after: Some(pos(1, "1")),
            ..first.clone()
        };
        let p = Page::cut(vec![3], &after);
        assert_eq!(
            (p.items, p.has_next, p.has_previous),
            (vec![3], false, true)
        );
        let before = PageRequest {
            before: Some(pos(1, "1")),
            ..first
        };
        let p = Page::cut(vec![7, 8, 9], &before);
        assert_eq!(
            (p.items, p.has_next, p.has_previous),
            (vec![8, 9], true, true)
        );
    }
}
