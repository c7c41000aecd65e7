//! Media, comments and publishing containers on PostgreSQL.

use async_trait::async_trait;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::graph::publish::ContainerStatus;
use gramkey_domain::{UnixTime, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row, query};

use super::PgStore;
use crate::records::corrupt;
use crate::sqlite::content::{
    COMMENT_COLUMNS, CONTAINER_COLUMNS, MEDIA_COLUMNS, page_sql, to_container,
};
use crate::{
    Comment, CommentsOf, Container, ContentStore, Media, NewComment, Publication, PublishOutcome,
    Result,
};

fn media_from_row(r: &PgRow) -> Result<Media> {
    Ok(Media {
        id: r.try_get(0)?,
        user_id: UserId(r.try_get(1)?),
        media_type: {
            let t: String = r.try_get(2)?;
            MediaType::parse(&t).ok_or_else(|| corrupt("media type", &t))?
        },
        caption: r.try_get(3)?,
        media_url: r.try_get(4)?,
        permalink: r.try_get(5)?,
        thumbnail_url: r.try_get(6)?,
        created_at: r.try_get(7)?,
        like_count: r.try_get(8)?,
        comments_count: r.try_get(9)?,
        parent_id: r.try_get(10)?,
        position: r.try_get(11)?,
    })
}

fn comment_from_row(r: &PgRow) -> Result<Comment> {
    Ok(Comment {
        id: r.try_get(0)?,
        media_id: r.try_get(1)?,
        user_id: UserId(r.try_get(2)?),
        username: r.try_get(3)?,
        parent_id: r.try_get(4)?,
        text: r.try_get(5)?,
        created_at: r.try_get(6)?,
        like_count: r.try_get(7)?,
        hidden: r.try_get(8)?,
    })
}

fn container_from_row(r: &PgRow) -> Result<Container> {
    to_container((
        (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
        ),
        (
            r.try_get(7)?,
            r.try_get(8)?,
            r.try_get(9)?,
            r.try_get(10)?,
            r.try_get(11)?,
            r.try_get(12)?,
            r.try_get(13)?,
        ),
    ))
}

async fn insert_media(c: &mut PgConnection, m: &Media) -> Result<()> {
    query(&format!(
        "INSERT INTO media ({MEDIA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
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
    .bind(m.position)
    .execute(c)
    .await?;
    Ok(())
}

/// A page's scope value: a user id or an object id.
enum ScopeValue<'a> {
    Int(i64),
    Text(&'a str),
}

impl PgStore {
    /// One page of `select` (which names its table `a`) where `scope` (using `$1`) holds.
    async fn page<T>(
        &self,
        select: &str,
        scope: &str,
        scope_value: ScopeValue<'_>,
        page: &PageRequest,
        map: fn(&PgRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let (keyset, order, reverse) = page_sql(page, "a", "$5", "$6");
        let sql = format!(
            "{select} WHERE {scope} {keyset}
               AND ($2::BIGINT IS NULL OR a.created_at >= $2) AND ($3::BIGINT IS NULL OR a.created_at <= $3)
             ORDER BY {order} LIMIT $4"
        );
        let mut q = match scope_value {
            ScopeValue::Int(v) => query(&sql).bind(v),
            ScopeValue::Text(v) => query(&sql).bind(v),
        }
        .bind(page.since)
        .bind(page.until)
        .bind(i64::from(page.fetch()));
        if let Some(p) = page.before.as_ref().or(page.after.as_ref()) {
            q = q.bind(p.at).bind(p.id.as_str());
        }
        let mut rows = q
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(map)
            .collect::<Result<Vec<T>>>()?;
        if reverse {
            rows.reverse();
        }
        Ok(rows)
    }
}

#[async_trait]
impl ContentStore for PgStore {
    async fn add_media(&self, m: &Media) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        insert_media(&mut c, m).await
    }

    async fn media_count(&self, user: UserId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM media WHERE user_id = $1 AND parent_id IS NULL",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn media(&self, id: &str) -> Result<Option<Media>> {
        query(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(media_from_row)
            .transpose()
    }

    async fn media_page(&self, user: UserId, page: &PageRequest) -> Result<Vec<Media>> {
        self.page(
            &format!("SELECT {MEDIA_COLUMNS} FROM media a"),
            "a.user_id = $1 AND a.parent_id IS NULL",
            ScopeValue::Int(user.0),
            page,
            media_from_row,
        )
        .await
    }

    async fn children(&self, album: &str) -> Result<Vec<Media>> {
        query(&format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE parent_id = $1 ORDER BY position"
        ))
        .bind(album)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(media_from_row)
        .collect()
    }

    async fn comment(&self, id: &str) -> Result<Option<Comment>> {
        query(&format!(
            "SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(comment_from_row)
        .transpose()
    }

    async fn comments_page(&self, of: CommentsOf<'_>, page: &PageRequest) -> Result<Vec<Comment>> {
        let (scope, id) = match of {
            CommentsOf::Media(id) => ("a.media_id = $1 AND a.parent_id IS NULL", id),
            CommentsOf::Replies(id) => ("a.parent_id = $1", id),
        };
        let select =
            format!("SELECT {COMMENT_COLUMNS} FROM comments a JOIN users u ON u.id = a.user_id");
        self.page(&select, scope, ScopeValue::Text(id), page, comment_from_row)
            .await
    }

    async fn add_comment(&self, n: &NewComment) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if let Some(parent) = &n.parent_id {
            let media: Option<String> =
                sqlx::query_scalar("SELECT media_id FROM comments WHERE id = $1 FOR SHARE")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?;
            if media.as_deref() != Some(n.media_id.as_str()) {
                return Ok(false);
            }
        }
        let counted = query("UPDATE media SET comments_count = comments_count + 1 WHERE id = $1")
            .bind(&n.media_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if counted == 0 {
            return Ok(false);
        }
        query(
            "INSERT INTO comments (id, media_id, user_id, parent_id, text, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&n.id)
        .bind(&n.media_id)
        .bind(n.user_id.0)
        .bind(&n.parent_id)
        .bind(&n.text)
        .bind(n.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_comment(&self, id: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let deleted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM comments WHERE id = $1 OR parent_id = $1 RETURNING media_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(media) = deleted.first() {
            query("UPDATE media SET comments_count = comments_count - $1 WHERE id = $2")
                .bind(deleted.len() as i64)
                .bind(media)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(deleted.len() as u64)
    }

    async fn create_container(&self, k: &Container) -> Result<()> {
        query(&format!(
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
        .bind(k.children.join(","))
        .bind(k.status.as_str())
        .bind(&k.status_reason)
        .bind(k.created_at)
        .bind(k.published_at)
        .bind(&k.media_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn container(&self, id: &str) -> Result<Option<Container>> {
        query(&format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(container_from_row)
        .transpose()
    }

    async fn finish_container(&self, id: &str, outcome: Result<(), String>) -> Result<bool> {
        let (status, reason) = match outcome {
            Ok(()) => (ContainerStatus::Finished, None),
            Err(r) => (ContainerStatus::Error, Some(r)),
        };
        let n = query(
            "UPDATE containers SET status = $1, status_reason = $2 WHERE id = $3 AND status = 'IN_PROGRESS'",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn publish_count(&self, user: UserId, since: UnixTime) -> Result<u64> {
        let mut c = self.pool.acquire().await?;
        count_published(&mut c, user, since).await
    }

    async fn publish(&self, p: &Publication) -> Result<PublishOutcome> {
        let Some(post) = p.media.first() else {
            return Ok(PublishOutcome::NotPublishable);
        };
        let mut tx = self.pool.begin().await?;
        // Publications of one user queue on the user's row, so two at the cap cannot both pass.
        query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(p.user_id.0)
            .execute(&mut *tx)
            .await?;
        if count_published(&mut tx, p.user_id, p.quota_since).await? >= p.quota_total {
            return Ok(PublishOutcome::OverQuota);
        }
        let marked = query(
            "UPDATE containers SET status = 'PUBLISHED', published_at = $1, media_id = $2
             WHERE id = $3 AND status = 'FINISHED'",
        )
        .bind(p.now)
        .bind(&post.id)
        .bind(&p.container_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(PublishOutcome::NotPublishable);
        }
        for m in &p.media {
            insert_media(&mut tx, m).await?;
        }
        tx.commit().await?;
        Ok(PublishOutcome::Published)
    }
}

async fn count_published(c: &mut PgConnection, user: UserId, since: UnixTime) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM containers
         WHERE user_id = $1 AND published_at >= $2 AND NOT is_carousel_item",
    )
    .bind(user.0)
    .bind(since)
    .fetch_one(c)
    .await?;
    Ok(u64::try_from(n).unwrap_or_default())
}
