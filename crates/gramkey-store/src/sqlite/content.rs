//! Media, comments and publishing containers on SQLite.

use async_trait::async_trait;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::graph::publish::{ContainerKind, ContainerStatus};
use gramkey_domain::{AppId, UnixTime, UserId};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::SqliteStore;
use crate::records::corrupt;
use crate::{
    Comment, CommentsOf, Container, ContentStore, Media, NewComment, Publication, PublishOutcome,
    Result,
};

pub(crate) const MEDIA_COLUMNS: &str = "id, user_id, media_type, caption, media_url, permalink, \
     thumbnail_url, created_at, like_count, comments_count, parent_id, position";

fn media_from_row(r: &Row<'_>) -> rusqlite::Result<Media> {
    Ok(Media {
        id: r.get(0)?,
        user_id: UserId(r.get(1)?),
        media_type: {
            let t: String = r.get(2)?;
            MediaType::parse(&t).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown media type {t:?}").into(),
                )
            })?
        },
        caption: r.get(3)?,
        media_url: r.get(4)?,
        permalink: r.get(5)?,
        thumbnail_url: r.get(6)?,
        created_at: r.get(7)?,
        like_count: r.get(8)?,
        comments_count: r.get(9)?,
        parent_id: r.get(10)?,
        position: r.get(11)?,
    })
}

/// A comment's columns, from `comments a JOIN users u`.
pub(crate) const COMMENT_COLUMNS: &str = "a.id, a.media_id, a.user_id, u.username, a.parent_id, \
     a.text, a.created_at, a.like_count, a.hidden";

fn comment_from_row(r: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: r.get(0)?,
        media_id: r.get(1)?,
        user_id: UserId(r.get(2)?),
        username: r.get(3)?,
        parent_id: r.get(4)?,
        text: r.get(5)?,
        created_at: r.get(6)?,
        like_count: r.get(7)?,
        hidden: r.get(8)?,
    })
}

pub(crate) const CONTAINER_COLUMNS: &str = "id, app_id, user_id, kind, source_url, source_is_video, \
     caption, is_carousel_item, children, status, status_reason, created_at, published_at, media_id";

/// A container row before its text columns are checked; shared with PostgreSQL.
pub(crate) type ContainerRow = (
    (String, String, i64, String, Option<String>, bool, String),
    (
        bool,
        String,
        String,
        Option<String>,
        i64,
        Option<i64>,
        Option<String>,
    ),
);

pub(crate) fn to_container(row: ContainerRow) -> Result<Container> {
    let ((id, app, user, kind, source_url, source_is_video, caption), rest) = row;
    let (is_carousel_item, children, status, status_reason, created_at, published_at, media_id) =
        rest;
    Ok(Container {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("containers.app_id", &app))?,
        user_id: UserId(user),
        kind: ContainerKind::parse(&kind).ok_or_else(|| corrupt("containers.kind", &kind))?,
        source_url,
        source_is_video,
        caption,
        is_carousel_item,
        children: children
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        status: ContainerStatus::parse(&status)
            .ok_or_else(|| corrupt("containers.status", &status))?,
        status_reason,
        created_at,
        published_at,
        media_id,
        id,
    })
}

fn container_row(r: &Row<'_>) -> rusqlite::Result<ContainerRow> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ),
        (
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
        ),
    ))
}

/// The keyset condition (on `{a}.created_at, {a}.id`, with the cursor bound as `?5, ?6`) and the
/// order of a page: `after` reads older rows newest first, `before` newer rows oldest first (the
/// caller reverses them), and a first page has no condition.
pub(crate) fn page_sql(page: &PageRequest, a: &str, p5: &str, p6: &str) -> (String, String, bool) {
    let desc = format!("{a}.created_at DESC, {a}.id DESC");
    if page.before.is_some() {
        (
            format!("AND ({a}.created_at, {a}.id) > ({p5}, {p6})"),
            format!("{a}.created_at ASC, {a}.id ASC"),
            true,
        )
    } else if page.after.is_some() {
        (
            format!("AND ({a}.created_at, {a}.id) < ({p5}, {p6})"),
            desc,
            false,
        )
    } else {
        (String::new(), desc, false)
    }
}

fn insert_media(c: &Connection, m: &Media) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO media ({MEDIA_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        m.id,
        m.user_id.0,
        m.media_type.as_str(),
        m.caption,
        m.media_url,
        m.permalink,
        m.thumbnail_url,
        m.created_at,
        m.like_count,
        m.comments_count,
        m.parent_id,
        m.position
    ])?;
    Ok(())
}

impl SqliteStore {
    /// One page of `select` (which names its table `a`) where `scope` (using `?1`) holds.
    fn page<T>(
        &self,
        select: &str,
        scope: &str,
        scope_value: Value,
        page: &PageRequest,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let (keyset, order, reverse) = page_sql(page, "a", "?5", "?6");
        let sql = format!(
            "{select} WHERE {scope} {keyset}
               AND (?2 IS NULL OR a.created_at >= ?2) AND (?3 IS NULL OR a.created_at <= ?3)
             ORDER BY {order} LIMIT ?4"
        );
        let mut values = vec![
            scope_value,
            page.since.map_or(Value::Null, Value::Integer),
            page.until.map_or(Value::Null, Value::Integer),
            Value::Integer(i64::from(page.fetch())),
        ];
        if let Some(p) = page.before.as_ref().or(page.after.as_ref()) {
            values.push(Value::Integer(p.at));
            values.push(Value::Text(p.id.clone()));
        }
        let mut rows: Vec<T> = self.read(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(values), map)?
                .collect()
        })?;
        if reverse {
            rows.reverse();
        }
        Ok(rows)
    }
}

#[async_trait]
impl ContentStore for SqliteStore {
    async fn add_media(&self, media: &Media) -> Result<()> {
        let m = media.clone();
        self.write(move |c| insert_media(c, &m)).await
    }

    async fn media_count(&self, user: UserId) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM media WHERE user_id = ?1 AND parent_id IS NULL")?
                .query_row([user.0], |r| r.get(0))
        })?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn media(&self, id: &str) -> Result<Option<Media>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = ?1"))?
                .query_row([id], media_from_row)
                .optional()
        })
    }

    async fn media_page(&self, user: UserId, page: &PageRequest) -> Result<Vec<Media>> {
        self.page(
            &format!("SELECT {MEDIA_COLUMNS} FROM media a"),
            "a.user_id = ?1 AND a.parent_id IS NULL",
            Value::Integer(user.0),
            page,
            media_from_row,
        )
    }

    async fn children(&self, album: &str) -> Result<Vec<Media>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE parent_id = ?1 ORDER BY position"
            ))?
            .query_map([album], media_from_row)?
            .collect()
        })
    }

    async fn comment(&self, id: &str) -> Result<Option<Comment>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id WHERE a.id = ?1"
            ))?
            .query_row([id], comment_from_row)
            .optional()
        })
    }

    async fn comments_page(&self, of: CommentsOf<'_>, page: &PageRequest) -> Result<Vec<Comment>> {
        let (scope, id) = match of {
            CommentsOf::Media(id) => ("a.media_id = ?1 AND a.parent_id IS NULL", id),
            CommentsOf::Replies(id) => ("a.parent_id = ?1", id),
        };
        let select =
            format!("SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id");
        self.page(
            &select,
            scope,
            Value::Text(id.to_owned()),
            page,
            comment_from_row,
        )
    }

    async fn add_comment(&self, comment: &NewComment) -> Result<bool> {
        let n = comment.clone();
        self.write(move |c| {
            if let Some(parent) = &n.parent_id {
                let same_media: Option<String> = c
                    .prepare_cached("SELECT media_id FROM comments WHERE id = ?1")?
                    .query_row([parent], |r| r.get(0))
                    .optional()?;
                if same_media.as_deref() != Some(n.media_id.as_str()) {
                    return Ok(false);
                }
            }
            let counted = c
                .prepare_cached(
                    "UPDATE media SET comments_count = comments_count + 1 WHERE id = ?1",
                )?
                .execute([&n.media_id])?;
            if counted == 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "INSERT INTO comments (id, media_id, user_id, parent_id, text, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                n.id,
                n.media_id,
                n.user_id.0,
                n.parent_id,
                n.text,
                n.created_at
            ])?;
            Ok(true)
        })
        .await
    }

    async fn delete_comment(&self, id: &str) -> Result<u64> {
        let id = id.to_owned();
        self.write(move |c| {
            let Some(media): Option<String> = c
                .prepare_cached("SELECT media_id FROM comments WHERE id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?
            else {
                return Ok(0);
            };
            // Counted first: rows removed by the ON DELETE CASCADE are not in SQLite's changes().
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM comments WHERE id = ?1 OR parent_id = ?1")?
                .query_row([&id], |r| r.get(0))?;
            c.prepare_cached("DELETE FROM comments WHERE id = ?1")?
                .execute([&id])?;
            c.prepare_cached(
                "UPDATE media SET comments_count = comments_count - ?1 WHERE id = ?2",
            )?
            .execute(params![n, media])?;
            Ok(u64::try_from(n).unwrap_or_default())
        })
        .await
    }

    async fn create_container(&self, container: &Container) -> Result<()> {
        let k = container.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO containers ({CONTAINER_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?
            .execute(params![
                k.id,
                k.app_id.as_str(),
                k.user_id.0,
                k.kind.as_str(),
                k.source_url,
                k.source_is_video,
                k.caption,
                k.is_carousel_item,
                k.children.join(","),
                k.status.as_str(),
                k.status_reason,
                k.created_at,
                k.published_at,
                k.media_id
            ])?;
            Ok(())
        })
        .await
    }

    async fn container(&self, id: &str) -> Result<Option<Container>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = ?1"
            ))?
            .query_row([id], container_row)
            .optional()
        })?
        .map(to_container)
        .transpose()
    }

    async fn finish_container(&self, id: &str, outcome: Result<(), String>) -> Result<bool> {
        let id = id.to_owned();
        let (status, reason) = match outcome {
            Ok(()) => (ContainerStatus::Finished, None),
            Err(r) => (ContainerStatus::Error, Some(r)),
        };
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE containers SET status = ?1, status_reason = ?2 WHERE id = ?3 AND status = 'IN_PROGRESS'",
            )?
            .execute(params![status.as_str(), reason, id])?
                == 1)
        })
        .await
    }

    async fn publish_count(&self, user: UserId, since: UnixTime) -> Result<u64> {
        let n: i64 = self.read(|c| count_published(c, user, since))?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn publish(&self, p: &Publication) -> Result<PublishOutcome> {
        let p = p.clone();
        self.write(move |c| {
            // The single writer serialises publications, so the count cannot go stale.
            let used =
                u64::try_from(count_published(c, p.user_id, p.quota_since)?).unwrap_or_default();
            if used >= p.quota_total {
                return Ok(PublishOutcome::OverQuota);
            }
            let Some(post) = p.media.first() else {
                return Ok(PublishOutcome::NotPublishable);
            };
            let marked = c
                .prepare_cached(
                    "UPDATE containers SET status = 'PUBLISHED', published_at = ?1, media_id = ?2
                     WHERE id = ?3 AND status = 'FINISHED'",
                )?
                .execute(params![p.now, post.id, p.container_id])?;
            if marked == 0 {
                return Ok(PublishOutcome::NotPublishable);
            }
            for m in &p.media {
                insert_media(c, m)?;
            }
            Ok(PublishOutcome::Published)
        })
        .await
    }
}

fn count_published(c: &Connection, user: UserId, since: UnixTime) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "SELECT COUNT(*) FROM containers
         WHERE user_id = ?1 AND published_at >= ?2 AND is_carousel_item = 0",
    )?
    .query_row(params![user.0, since], |r| r.get(0))
}
