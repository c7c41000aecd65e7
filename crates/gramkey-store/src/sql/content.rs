//! Media, comments and publishing containers.

use async_trait::async_trait;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::graph::publish::{ContainerKind, ContainerStatus};
use gramkey_domain::{AppId, CommentId, ContainerId, MediaId, UnixTime, UserId};

use super::{Conn, Engine, Lock, Row, SqlStore, Value, q, transaction, write};
use crate::records::corrupt;
use crate::{
    Comment, CommentsOf, Container, ContentStore, Media, NewComment, Publication, PublishOutcome,
    Result,
};

const MEDIA_COLUMNS: &str = "id, user_id, media_type, caption, media_url, permalink, \
     thumbnail_url, created_at, like_count, comments_count, parent_id, position";

fn media_from_row(r: &mut Row) -> Result<Media> {
    let media_type: String = r.get(2)?;
    Ok(Media {
        id: r.get(0)?,
        user_id: UserId(r.get(1)?),
        media_type: MediaType::parse(&media_type)
            .ok_or_else(|| corrupt("media type", &media_type))?,
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
const COMMENT_COLUMNS: &str = "a.id, a.media_id, a.user_id, u.username, a.parent_id, \
     a.text, a.created_at, a.like_count, a.hidden";

fn comment_from_row(r: &mut Row) -> Result<Comment> {
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

const CONTAINER_COLUMNS: &str = "id, app_id, user_id, kind, source_url, source_is_video, \
     caption, is_carousel_item, children, status, status_reason, created_at, published_at, media_id";

fn container_from_row(r: &mut Row) -> Result<Container> {
    let app: String = r.get(1)?;
    let kind: String = r.get(3)?;
    let children: String = r.get(8)?;
    let status: String = r.get(9)?;
    Ok(Container {
        id: r.get(0)?,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("containers.app_id", &app))?,
        user_id: UserId(r.get(2)?),
        kind: ContainerKind::parse(&kind).ok_or_else(|| corrupt("containers.kind", &kind))?,
        source_url: r.get(4)?,
        source_is_video: r.get(5)?,
        caption: r.get(6)?,
        is_carousel_item: r.get(7)?,
        children: children
            .split(',')
            .filter(|c| !c.is_empty())
            .map(|c| ContainerId::stored(c.to_owned()))
            .collect(),
        status: ContainerStatus::parse(&status)
            .ok_or_else(|| corrupt("containers.status", &status))?,
        status_reason: r.get(10)?,
        created_at: r.get(11)?,
        published_at: r.get(12)?,
        media_id: r.get(13)?,
    })
}

async fn insert_media(c: &mut impl Conn, m: &Media) -> Result<()> {
    c.execute(
        q(format!(
            "INSERT INTO media ({MEDIA_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&m.id)
        .bind(m.user_id.0)
        .bind(m.media_type.as_str())
        .bind(&m.caption)
        .bind(&m.media_url)
        .bind(&m.permalink)
        .bind(&m.thumbnail_url)
        .bind(m.created_at)
        .bind(m.like_count)
        .bind(m.comments_count)
        .bind(&m.parent_id)
        .bind(m.position),
    )
    .await?;
    Ok(())
}

async fn count_published(c: &mut impl Conn, user: UserId, since: UnixTime) -> Result<u64> {
    c.count(
        q("SELECT COUNT(*) FROM containers
           WHERE user_id = $1 AND published_at >= $2 AND NOT is_carousel_item")
        .bind(user.0)
        .bind(since),
    )
    .await
}

impl<E: Engine> SqlStore<E> {
    /// One page of `select` (which names its table `a`) where `scope` (with `scope_value` as
    /// `$1`) holds. `after` reads older rows newest first; `before` reads newer rows oldest
    /// first, reversed here; a first page has no condition on the cursor.
    async fn page<T>(
        &self,
        select: &str,
        scope: &str,
        scope_value: Value<'_>,
        page: &PageRequest,
        map: fn(&mut Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let (keyset, order, reverse) = if page.before.is_some() {
            ("AND (a.created_at, a.id) > ($5, $6)", "ASC", true)
        } else if page.after.is_some() {
            ("AND (a.created_at, a.id) < ($5, $6)", "DESC", false)
        } else {
            ("", "DESC", false)
        };
        let mut query = q(format!(
            "{select} WHERE {scope} {keyset}
               AND (CAST($2 AS BIGINT) IS NULL OR a.created_at >= $2)
               AND (CAST($3 AS BIGINT) IS NULL OR a.created_at <= $3)
             ORDER BY a.created_at {order}, a.id {order} LIMIT $4"
        ));
        query.args.push(scope_value);
        query = query.bind(page.since).bind(page.until).bind(page.fetch());
        if let Some(p) = page.before.as_ref().or(page.after.as_ref()) {
            query = query.bind(p.at).bind(&p.id);
        }
        let mut c = self.engine.reader().await?;
        let mut rows = c
            .fetch_all(query)
            .await?
            .iter_mut()
            .map(map)
            .collect::<Result<Vec<T>>>()?;
        if reverse {
            rows.reverse();
        }
        Ok(rows)
    }
}

#[async_trait]
impl<E: Engine> ContentStore for SqlStore<E> {
    async fn add_media(&self, media: &Media) -> Result<()> {
        let m = media.clone();
        write!(self, |c| insert_media(c, &m).await).await
    }

    async fn media_count(&self, user: UserId) -> Result<u64> {
        let mut c = self.engine.reader().await?;
        c.count(
            q("SELECT COUNT(*) FROM media WHERE user_id = $1 AND parent_id IS NULL").bind(user.0),
        )
        .await
    }

    async fn media(&self, id: &MediaId) -> Result<Option<Media>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(q(format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1")).bind(id))
            .await?
            .as_mut()
            .map(media_from_row)
            .transpose()
    }

    async fn media_page(&self, user: UserId, page: &PageRequest) -> Result<Vec<Media>> {
        self.page(
            &format!("SELECT {MEDIA_COLUMNS} FROM media a"),
            "a.user_id = $1 AND a.parent_id IS NULL",
            Value::Int(user.0),
            page,
            media_from_row,
        )
        .await
    }

    async fn children(&self, album: &MediaId) -> Result<Vec<Media>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(
            q(format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE parent_id = $1 ORDER BY position"
            ))
            .bind(album),
        )
        .await?
        .iter_mut()
        .map(media_from_row)
        .collect()
    }

    async fn comment(&self, id: &CommentId) -> Result<Option<Comment>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(
            q(format!(
                "SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id WHERE a.id = $1"
            ))
            .bind(id),
        )
        .await?
        .as_mut()
        .map(comment_from_row)
        .transpose()
    }

    async fn comments_page(&self, of: CommentsOf<'_>, page: &PageRequest) -> Result<Vec<Comment>> {
        let (scope, id) = match of {
            CommentsOf::Media(id) => ("a.media_id = $1 AND a.parent_id IS NULL", id.as_str()),
            CommentsOf::Replies(id) => ("a.parent_id = $1", id.as_str()),
        };
        self.page(
            &format!("SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id"),
            scope,
            Value::Text(id.into()),
            page,
            comment_from_row,
        )
        .await
    }

    async fn add_comment(&self, comment: &NewComment) -> Result<bool> {
        let n = comment.clone();
        transaction!(self, |c| {
            if let Some(parent) = &n.parent_id {
                // The parent cannot be deleted until this one is in.
                let share = <E::Conn as Conn>::DIALECT.suffix(" FOR SHARE");
                let media: Option<String> = match c
                    .fetch_optional(
                        q(format!(
                            "SELECT media_id FROM comments WHERE id = $1{share}"
                        ))
                        .bind(parent),
                    )
                    .await?
                {
                    Some(mut r) => Some(r.get(0)?),
                    None => None,
                };
                if media.as_deref() != Some(n.media_id.as_str()) {
                    return Ok(false);
                }
            }
            let counted = c
                .execute(
                    q("UPDATE media SET comments_count = comments_count + 1 WHERE id = $1")
                        .bind(&n.media_id),
                )
                .await?;
            if counted == 0 {
                return Ok(false);
            }
            c.execute(
                q(
                    "INSERT INTO comments (id, media_id, user_id, parent_id, text, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&n.id)
                .bind(&n.media_id)
                .bind(n.user_id.0)
                .bind(&n.parent_id)
                .bind(&n.text)
                .bind(n.created_at),
            )
            .await?;
            super::webhooks::insert_webhooks(c, &n.notifications).await?;
            Ok(true)
        })
        .await
    }

    async fn delete_comment(&self, id: &CommentId) -> Result<u64> {
        let id = id.to_owned();
        transaction!(self, |c| {
            // Locked: a reply being added waits, then finds its parent gone.
            let lock = <E::Conn as Conn>::DIALECT.suffix(" FOR UPDATE");
            let Some(mut found) = c
                .fetch_optional(
                    q(format!("SELECT media_id FROM comments WHERE id = $1{lock}")).bind(&id),
                )
                .await?
            else {
                return Ok(0);
            };
            let media: String = found.get(0)?;
            // Counted first: SQLite's ON DELETE CASCADE removes the replies before the
            // statement's own scan reaches them, so they are not in what it reports.
            let n = c
                .count(q("SELECT COUNT(*) FROM comments WHERE id = $1 OR parent_id = $1").bind(&id))
                .await?;
            c.execute(q("DELETE FROM comments WHERE id = $1").bind(&id))
                .await?;
            c.execute(
                q("UPDATE media SET comments_count = comments_count - $1 WHERE id = $2")
                    .bind(super::int(n))
                    .bind(&media),
            )
            .await?;
            Ok(n)
        })
        .await
    }

    async fn create_container(&self, container: &Container) -> Result<()> {
        let k = container.clone();
        write!(self, |c| {
            c.execute(
                q(format!(
                    "INSERT INTO containers ({CONTAINER_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&k.id)
                .bind(k.app_id.as_str())
                .bind(k.user_id.0)
                .bind(k.kind.as_str())
                .bind(&k.source_url)
                .bind(k.source_is_video)
                .bind(&k.caption)
                .bind(k.is_carousel_item)
                .bind(
                    k.children
                        .iter()
                        .map(ContainerId::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .bind(k.status.as_str())
                .bind(&k.status_reason)
                .bind(k.created_at)
                .bind(k.published_at)
                .bind(&k.media_id),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn container(&self, id: &ContainerId) -> Result<Option<Container>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(
            q(format!(
                "SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = $1"
            ))
            .bind(id),
        )
        .await?
        .as_mut()
        .map(container_from_row)
        .transpose()
    }

    async fn finish_container(
        &self,
        id: &ContainerId,
        outcome: Result<(), String>,
    ) -> Result<bool> {
        let id = id.to_owned();
        let (status, reason) = match outcome {
            Ok(()) => (ContainerStatus::Finished, None),
            Err(r) => (ContainerStatus::Error, Some(r)),
        };
        write!(self, |c| {
            Ok(c.execute(
                q("UPDATE containers SET status = $1, status_reason = $2
                   WHERE id = $3 AND status = 'IN_PROGRESS'")
                .bind(status.as_str())
                .bind(&reason)
                .bind(&id),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn publish_count(&self, user: UserId, since: UnixTime) -> Result<u64> {
        let mut c = self.engine.reader().await?;
        count_published(&mut *c, user, since).await
    }

    async fn publish(&self, p: &Publication) -> Result<PublishOutcome> {
        let p = p.clone();
        transaction!(self, |c| {
            let Some(post) = p.media.first() else {
                return Ok(PublishOutcome::NotPublishable);
            };
            c.lock(Lock::Publishing(p.user_id)).await?;
            if count_published(c, p.user_id, p.quota_since).await? >= p.quota_total {
                return Ok(PublishOutcome::OverQuota);
            }
            let marked = c
                .execute(
                    q("UPDATE containers SET status = 'PUBLISHED', published_at = $1, media_id = $2
                       WHERE id = $3 AND status = 'FINISHED'")
                    .bind(p.now)
                    .bind(&post.id)
                    .bind(&p.container_id),
                )
                .await?;
            if marked == 0 {
                return Ok(PublishOutcome::NotPublishable);
            }
            for m in &p.media {
                insert_media(c, m).await?;
            }
            super::webhooks::insert_webhooks(c, &p.notifications).await?;
            Ok(PublishOutcome::Published)
        })
        .await
    }
}
