//! User accounts and profiles.

use std::sync::Arc;

use async_trait::async_trait;
use gramkey_domain::{UnixTime, UserId};

use super::{Conn, Engine, Row, SqlStore, q, write};
use crate::cached::Stale;
use crate::{NewUser, Profile, Result, User, UserStore};

pub(crate) const USER_COLUMNS: &str = "id, username, password_hash, full_name, biography, website, account_type, \
     profile_picture_url, followers_count, follows_count, created_at";

pub(crate) fn user_from_row(r: &mut Row) -> Result<User> {
    Ok(User {
        id: UserId(r.get(0)?),
        username: r.get(1)?,
        password_hash: r.get(2)?,
        profile: Profile {
            full_name: r.get(3)?,
            biography: r.get(4)?,
            website: r.get(5)?,
            account_type: r.get(6)?,
            profile_picture_url: r.get(7)?,
            followers_count: r.get(8)?,
            follows_count: r.get(9)?,
        },
        created_at: r.get(10)?,
    })
}

impl<E: Engine> SqlStore<E> {
    /// `user`, read along with something else after the cache's `generation` was taken:
    /// shared with the user cache, so every cached caller of one person holds one copy.
    pub(crate) fn shared_user(&self, user: User, generation: Option<u64>) -> Arc<User> {
        match (&self.cache, generation) {
            (Some(cache), Some(generation)) => cache.share_user(user, generation),
            _ => Arc::new(user),
        }
    }
}

#[async_trait]
impl<E: Engine> UserStore for SqlStore<E> {
    async fn create_user(&self, user: &NewUser, now: UnixTime) -> Result<User> {
        let u = user.clone();
        write!(self, |c| {
            let p = &u.profile;
            let id: i64 = c
                .fetch_one(
                    q("INSERT INTO users (username, password_hash, full_name, biography, website, account_type,
                           profile_picture_url, followers_count, follows_count, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id")
                    .bind(&u.username)
                    .bind(&u.password_hash)
                    .bind(&p.full_name)
                    .bind(&p.biography)
                    .bind(&p.website)
                    .bind(&p.account_type)
                    .bind(&p.profile_picture_url)
                    .bind(p.followers_count)
                    .bind(p.follows_count)
                    .bind(now),
                )
                .await?
                .get(0)?;
            Ok(User {
                id: UserId(id),
                username: u.username,
                password_hash: u.password_hash,
                profile: u.profile,
                created_at: now,
            })
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<Arc<User>>> {
        self.through(|c| &c.users, id, async {
            let mut c = self.engine.reader().await?;
            c.fetch_optional(
                q(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(id.0),
            )
            .await?
            .as_mut()
            .map(|r| user_from_row(r).map(Arc::new))
            .transpose()
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(
            q(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
            ))
            .bind(username),
        )
        .await?
        .as_mut()
        .map(user_from_row)
        .transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        let mut c = self.engine.reader().await?;
        c.fetch_all(q(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id")))
            .await?
            .iter_mut()
            .map(user_from_row)
            .collect()
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<bool> {
        let hash = password_hash.to_owned();
        write!(self, self.after(move |_| vec![Stale::User(id)]), |c| {
            Ok(c.execute(
                q("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(&hash)
                    .bind(id.0),
            )
            .await?
                == 1)
        })
        .await
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        write!(
            self,
            self.after(move |_| vec![Stale::User(id), Stale::Tokens]),
            |c| Ok(c
                .execute(q("DELETE FROM users WHERE id = $1").bind(id.0))
                .await?
                == 1)
        )
        .await
    }
}
