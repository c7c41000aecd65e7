//! The PostgreSQL store, for running several stateless gramkey nodes on one database.
//!
//! Each operation is one statement or one short transaction on a pooled connection. Code
//! redemption locks the code row (`SELECT … FOR UPDATE`), so of two nodes redeeming the same
//! code at once, exactly one wins and the other sees it redeemed.

use async_trait::async_trait;
use gramkey_domain::code::CodeChallenge;
use gramkey_domain::error::RevokeReason;
use gramkey_domain::{AppId, AppMode, Role, ScopeSet, ScopedUserId, TokenHash, UnixTime, UserId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, query};

mod access;
mod content;
mod monitor;

use crate::records::{corrupt, join_uris, judge_claim, split_uris, supersede_sql};
use crate::sqlite::{CALLBACK_COLUMNS, CallbackRow, to_callback};
use crate::sqlite::{issued, to_token};
use crate::{
    App, AppStore, CodeClaim, CodeRecord, Derivation, Grant, GrantStore, NewCode, NewToken,
    NewUser, Profile, Redemption, Result, StoreError, TokenRecord, User, UserStore,
};
use crate::{Attempt, Callback, CallbackStore, Purged, Removal, Revoke};
use gramkey_domain::callback::CallbackKind;
use gramkey_domain::retention::Cutoffs;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() || d.is_foreign_key_violation() => {
                StoreError::Conflict(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// How long an operation waits for a pooled connection by default: a down database is a
    /// fast error, not a 30-second hang (sqlx's default).
    pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

    /// Connects to `url` and applies pending migrations. An operation that cannot get a
    /// connection within `acquire_timeout` fails.
    pub async fn connect(url: &str, acquire_timeout: std::time::Duration) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::connect_with(options, acquire_timeout).await
    }

    pub async fn connect_with(
        options: PgConnectOptions,
        acquire_timeout: std::time::Duration,
    ) -> Result<Self> {
        // One direct connection first, so a refused connection or a bad password is reported
        // as itself at once, not as a pool timeout half a minute later.
        sqlx::Connection::close(
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?,
        )
        .await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }
}

/// `apps_of` reads the role after these, at index 14.
const APP_COLUMNS: &str = "id, name, secret_hash, redirect_uris, scopes, mode, created_at, previous_secret_hash, \
     previous_secret_expires_at, refresh_tokens, secret_seed, deauthorize_url, data_deletion_url, \
     signed_requests";

fn app_from_row(row: &PgRow) -> Result<App> {
    let id: String = row.try_get(0)?;
    let mode: String = row.try_get(5)?;
    Ok(App {
        id: AppId::parse(&id).ok_or_else(|| corrupt("app id", &id))?,
        name: row.try_get(1)?,
        secret_hash: row.try_get(2)?,
        redirect_uris: split_uris(row.try_get(3)?),
        scopes: ScopeSet::from_stored(row.try_get(4)?),
        mode: AppMode::parse(&mode).ok_or_else(|| corrupt("app mode", &mode))?,
        created_at: row.try_get(6)?,
        previous_secret: match (
            row.try_get::<Option<Vec<u8>>, _>(7)?,
            row.try_get::<Option<i64>, _>(8)?,
        ) {
            (Some(h), Some(until)) => Some((h, until)),
            _ => None,
        },
        refresh_tokens: row.try_get(9)?,
        secret_seed: row.try_get(10)?,
        deauthorize_url: row.try_get(11)?,
        data_deletion_url: row.try_get(12)?,
        signed_requests: row.try_get(13)?,
    })
}

const USER_COLUMNS: &str = "id, username, password_hash, full_name, biography, website, account_type, \
     profile_picture_url, followers_count, follows_count, created_at";

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: UserId(row.try_get(0)?),
        username: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        profile: Profile {
            full_name: row.try_get(3)?,
            biography: row.try_get(4)?,
            website: row.try_get(5)?,
            account_type: row.try_get(6)?,
            profile_picture_url: row.try_get(7)?,
            followers_count: row.try_get(8)?,
            follows_count: row.try_get(9)?,
        },
        created_at: row.try_get(10)?,
    })
}

fn grant_from_row(row: &PgRow) -> Result<Grant> {
    let app: String = row.try_get(0)?;
    let scoped: String = row.try_get(2)?;
    Ok(Grant {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: UserId(row.try_get(1)?),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        scopes: ScopeSet::from_stored(row.try_get(3)?),
        granted_at: row.try_get(4)?,
    })
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_app(&self, app: &App) -> Result<()> {
        query(&format!(
            "INSERT INTO apps ({APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10, $11, $12)"
        ))
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(&app.secret_hash)
        .bind(join_uris(&app.redirect_uris))
        .bind(app.scopes.to_stored())
        .bind(app.mode.as_str())
        .bind(app.created_at)
        .bind(app.refresh_tokens)
        .bind(&app.secret_seed)
        .bind(&app.deauthorize_url)
        .bind(&app.data_deletion_url)
        .bind(app.signed_requests)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn apps(&self) -> Result<Vec<App>> {
        query(&format!(
            "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(app_from_row)
        .collect()
    }

    async fn set_app_secret(
        &self,
        id: &AppId,
        secret_hash: &[u8],
        secret_seed: &[u8],
        keep_old_until: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let r = query(
            "UPDATE apps SET previous_secret_hash = CASE WHEN $3::BIGINT IS NULL THEN NULL ELSE secret_hash END,
                 previous_secret_expires_at = $3, secret_hash = $1, secret_seed = $4
             WHERE id = $2",
        )
        .bind(secret_hash)
        .bind(id.as_str())
        .bind(keep_old_until)
        .bind(secret_seed)
        .execute(&mut *tx)
        .await?;
        query(
            "UPDATE tokens SET expires_at = LEAST(expires_at, $2)
             WHERE app_id = $1 AND kind = 'app' AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .bind(keep_old_until.unwrap_or(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn update_app(&self, app: &App) -> Result<bool> {
        let r = query(
            "UPDATE apps SET name = $2, redirect_uris = $3, scopes = $4, mode = $5, refresh_tokens = $6,
                 deauthorize_url = $7, data_deletion_url = $8, signed_requests = $9
             WHERE id = $1",
        )
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(join_uris(&app.redirect_uris))
        .bind(app.scopes.to_stored())
        .bind(app.mode.as_str())
        .bind(app.refresh_tokens)
        .bind(&app.deauthorize_url)
        .bind(&app.data_deletion_url)
        .bind(app.signed_requests)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let r = query("DELETE FROM apps WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_role(&self, app: &AppId, user: UserId, role: Role, now: UnixTime) -> Result<()> {
        query(
            "INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(role.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn role(&self, app: &AppId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM app_roles WHERE app_id = $1 AND user_id = $2")
                .bind(app.as_str())
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        role.map(|r| Role::parse(&r).ok_or_else(|| corrupt("role", &r)))
            .transpose()
    }

    async fn roles(&self, app: &AppId) -> Result<Vec<(UserId, Role)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT user_id, role FROM app_roles WHERE app_id = $1 ORDER BY created_at, user_id",
        )
        .bind(app.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(u, r)| {
                Ok((
                    UserId(u),
                    Role::parse(&r).ok_or_else(|| corrupt("role", &r))?,
                ))
            })
            .collect()
    }

    async fn apps_of(&self, user: UserId) -> Result<Vec<(App, Role)>> {
        query(&format!(
            "SELECT {APP_COLUMNS}, (SELECT role FROM app_roles r WHERE r.app_id = apps.id AND r.user_id = $1)
             FROM apps WHERE id IN (SELECT app_id FROM app_roles WHERE user_id = $1)
             ORDER BY created_at, id"
        ))
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let role: String = r.try_get(14)?;
            Ok((
                app_from_row(r)?,
                Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
            ))
        })
        .collect()
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, u: &NewUser, now: UnixTime) -> Result<User> {
        let p = &u.profile;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, full_name, biography, website, account_type,
                 profile_picture_url, followers_count, follows_count, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(&p.full_name)
        .bind(&p.biography)
        .bind(&p.website)
        .bind(&p.account_type)
        .bind(&p.profile_picture_url)
        .bind(p.followers_count)
        .bind(p.follows_count)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(User {
            id: UserId(id),
            username: u.username.clone(),
            password_hash: u.password_hash.clone(),
            profile: u.profile.clone(),
            created_at: now,
        })
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<bool> {
        let r = query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Advisory lock classes: one lock per app and one per user.
///
/// Under READ COMMITTED a revocation that selects many tokens (a family, an app's, a user's)
/// reads them as of its statement's start, so a token derived from one of them (exchange,
/// refresh) whose transaction commits meanwhile would be missed and stay valid (issue 15 found
/// 20 in 300 rounds). So every derivation holds its app's and its user's locks shared, and
/// every revocation beyond one token takes the app's or the user's lock exclusively *before*
/// it reads: a derivation under way finishes first and its token is seen, and one that comes
/// later finds its parent revoked. Derivations don't wait for each other.
const APP_LOCK: i32 = 7001;
const USER_LOCK: i32 = 7002;

/// Holds, until the transaction ends, the shared locks a derivation from `parent` needs.
async fn lock_for_derivation(c: &mut sqlx::PgConnection, parent: &TokenHash) -> Result<()> {
    query(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext(app_id)),
                pg_advisory_xact_lock_shared($2, hashtext(COALESCE(user_id, 0)::TEXT))
         FROM tokens WHERE hash = $3",
    )
    .bind(APP_LOCK)
    .bind(USER_LOCK)
    .bind(&parent.0[..])
    .execute(c)
    .await?;
    Ok(())
}

/// Holds, until the transaction ends, `user`'s lock exclusively.
async fn lock_user(c: &mut sqlx::PgConnection, user: UserId) -> Result<()> {
    query("SELECT pg_advisory_xact_lock($1, hashtext($2::BIGINT::TEXT))")
        .bind(USER_LOCK)
        .bind(user.0)
        .execute(c)
        .await?;
    Ok(())
}

/// Revokes the tokens `which` selects and, for an app, a user or both, burns their unredeemed
/// codes (they would mint fresh tokens after the revocation).
async fn revoke_in(
    c: &mut sqlx::PgConnection,
    which: &Revoke,
    reason: RevokeReason,
    now: UnixTime,
) -> Result<u64> {
    const SET: &str =
        "UPDATE tokens SET revoked_at = $1, revoke_reason = $2 WHERE revoked_at IS NULL AND";
    // Codes not yet redeemed would mint fresh tokens after the revocation: burn them.
    const BURN: &str = "UPDATE auth_codes SET redeemed_at = $1 WHERE redeemed_at IS NULL AND";
    match which {
        Revoke::Token(_) => {}
        Revoke::App(a) => {
            query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(APP_LOCK)
                .bind(a.as_str())
                .execute(&mut *c)
                .await?;
        }
        Revoke::AppUser(_, u) | Revoke::User(u) => lock_user(c, *u).await?,
        Revoke::Family(h) => {
            query(
                "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(user_id, 0)::TEXT))
                 FROM tokens WHERE hash = $2",
            )
            .bind(USER_LOCK)
            .bind(h.0.to_vec())
            .execute(&mut *c)
            .await?;
        }
    }
    let n = match which {
        Revoke::Token(h) => {
            query(&format!("{SET} hash = $3"))
                .bind(now)
                .bind(reason.as_str())
                .bind(h.0.to_vec())
                .execute(&mut *c)
                .await?
        }
        Revoke::App(a) => {
            query(&format!("{BURN} app_id = $2"))
                .bind(now)
                .bind(a.as_str())
                .execute(&mut *c)
                .await?;
            query(&format!("{SET} app_id = $3"))
                .bind(now)
                .bind(reason.as_str())
                .bind(a.as_str())
                .execute(&mut *c)
                .await?
        }
        Revoke::AppUser(a, u) => {
            query(&format!("{BURN} app_id = $2 AND user_id = $3"))
                .bind(now)
                .bind(a.as_str())
                .bind(u.0)
                .execute(&mut *c)
                .await?;
            query(&format!("{SET} app_id = $3 AND user_id = $4"))
                .bind(now)
                .bind(reason.as_str())
                .bind(a.as_str())
                .bind(u.0)
                .execute(&mut *c)
                .await?
        }
        Revoke::Family(h) => {
            let family = format!(
                    "WITH RECURSIVE
                         up(id, parent_id) AS (
                             SELECT id, parent_id FROM tokens WHERE hash = $3
                             UNION SELECT t.id, t.parent_id FROM tokens t JOIN up ON t.id = up.parent_id),
                         down(id) AS (
                             SELECT id FROM up WHERE parent_id IS NULL
                             UNION SELECT t.id FROM tokens t JOIN down ON t.parent_id = down.id)
                     {SET} id IN (SELECT id FROM down)"
                );
            query(&family)
                .bind(now)
                .bind(reason.as_str())
                .bind(h.0.to_vec())
                .execute(&mut *c)
                .await?
        }
        Revoke::User(u) => {
            query(&format!("{BURN} user_id = $2"))
                .bind(now)
                .bind(u.0)
                .execute(&mut *c)
                .await?;
            query(&format!("{SET} user_id = $3"))
                .bind(now)
                .bind(reason.as_str())
                .bind(u.0)
                .execute(&mut *c)
                .await?
        }
    };
    Ok(n.rows_affected())
}

#[async_trait]
impl GrantStore for PgStore {
    async fn grant(&self, app: &AppId, user: UserId) -> Result<Option<Grant>> {
        query("SELECT app_id, user_id, scoped_id, scopes, granted_at FROM grants WHERE app_id = $1 AND user_id = $2")
            .bind(app.as_str())
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    async fn grant_by_scoped_id(
        &self,
        app: &AppId,
        scoped: &ScopedUserId,
    ) -> Result<Option<Grant>> {
        query("SELECT app_id, user_id, scoped_id, scopes, granted_at FROM grants WHERE scoped_id = $1 AND app_id = $2")
            .bind(scoped.as_str())
            .bind(app.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    async fn save_grant(
        &self,
        app: &AppId,
        user: UserId,
        scopes: &ScopeSet,
        new_scoped_id: &ScopedUserId,
        now: UnixTime,
    ) -> Result<Grant> {
        let row = query(
            "INSERT INTO grants (app_id, user_id, scoped_id, scopes, granted_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (app_id, user_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at
             RETURNING app_id, user_id, scoped_id, scopes, granted_at",
        )
        .bind(app.as_str())
        .bind(user.0)
        .bind(new_scoped_id.as_str())
        .bind(scopes.to_stored())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        grant_from_row(&row)
    }

    async fn create_code(&self, code: &NewCode) -> Result<()> {
        query(
            "INSERT INTO auth_codes (hash, app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge,
                 created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.hash.0[..])
        .bind(code.app_id.as_str())
        .bind(code.user_id.0)
        .bind(code.scoped_id.as_str())
        .bind(&code.redirect_uri)
        .bind(code.scopes.to_stored())
        .bind(code.code_challenge.as_ref().map(CodeChallenge::as_str))
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn redeem_code(&self, hash: &TokenHash, claim: &CodeClaim) -> Result<Redemption> {
        let now = claim.now;
        let mut tx = self.pool.begin().await?;
        let row = query(
            "SELECT app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge, created_at, expires_at, redeemed_at,
                 token_id
             FROM auth_codes WHERE hash = $1 FOR UPDATE",
        )
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Redemption::NotFound);
        };
        let redeemed_at: Option<i64> = row.try_get(8)?;
        if redeemed_at.is_some() {
            lock_user(&mut tx, UserId(row.try_get(1)?)).await?;
            let r = query(
                "WITH RECURSIVE family(id) AS (
                     SELECT $2::BIGINT UNION ALL SELECT t.id FROM tokens t JOIN family f ON t.parent_id = f.id
                 )
                 UPDATE tokens SET revoked_at = $1, revoke_reason = 'code_replay'
                 WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(row.try_get::<Option<i64>, _>(9)?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Redemption::Replayed {
                revoked: r.rows_affected(),
            });
        }
        let code = code_from_row(&row, hash)?;
        query("UPDATE auth_codes SET redeemed_at = $1 WHERE hash = $2")
            .bind(now)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        let (rows, issue) = match judge_claim(&code, claim) {
            Ok(granted) => granted,
            Err(refusal) => {
                tx.commit().await?;
                return Ok(Redemption::Refused(refusal));
            }
        };
        let Some((access, children)) = rows.split_first() else {
            return Err(StoreError::Backend("no token to issue".into()));
        };
        let id = insert_token(&mut tx, access, None).await?;
        for child in children {
            insert_token(&mut tx, child, Some(id)).await?;
        }
        query("UPDATE auth_codes SET token_id = $1 WHERE hash = $2")
            .bind(id)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Redemption::Issued {
            record: issued(id, access.clone(), Some(code.scoped_id)),
            token: issue.access,
            refresh: issue.refresh.map(|(t, _)| t),
        })
    }

    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        let row = query(
            "SELECT t.id, t.kind, t.flavour, t.app_id, t.user_id, g.scoped_id, t.scopes, t.issued_at, t.expires_at,
                 t.revoke_reason, t.revoked_at, t.exchanged_at
             FROM tokens t LEFT JOIN grants g ON g.app_id = t.app_id AND g.user_id = t.user_id
             WHERE t.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            to_token(
                (
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                    r.try_get(7)?,
                    r.try_get(8)?,
                    r.try_get(9)?,
                    r.try_get(10)?,
                ),
                r.try_get(11)?,
            )
        })
        .transpose()
    }

    async fn revoke_tokens(
        &self,
        which: Revoke,
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = revoke_in(&mut tx, &which, reason, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn remove_grant(
        &self,
        app: &AppId,
        user: UserId,
        reason: RevokeReason,
        now: UnixTime,
        callbacks: &[CallbackKind],
    ) -> Result<Removal> {
        let mut tx = self.pool.begin().await?;
        let removed: Option<(String, String, i64)> = sqlx::query_as(
            "DELETE FROM grants WHERE app_id = $1 AND user_id = $2 RETURNING scoped_id, scopes, granted_at",
        )
        .bind(app.as_str())
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((scoped, scopes, granted_at)) = &removed {
            query(
                "INSERT INTO grant_removals (app_id, user_id, scoped_id, scopes, granted_at, removed_at,
                     deletion_requested_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (app_id, user_id) DO UPDATE SET scoped_id = excluded.scoped_id,
                     scopes = excluded.scopes, granted_at = excluded.granted_at, removed_at = excluded.removed_at,
                     deletion_requested_at = excluded.deletion_requested_at",
            )
            .bind(app.as_str())
            .bind(user.0)
            .bind(scoped)
            .bind(scopes)
            .bind(granted_at)
            .bind(now)
            .bind(callbacks.contains(&CallbackKind::DataDeletion).then_some(now))
            .execute(&mut *tx)
            .await?;
        }
        let scoped = removed.map(|(scoped, _, _)| scoped);
        for kind in callbacks.iter().filter(|_| scoped.is_some()) {
            query(
                "INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(app.as_str())
            .bind(kind.as_str())
            .bind(user.0)
            .bind(&scoped)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let tokens = revoke_in(&mut tx, &Revoke::AppUser(app.clone(), user), reason, now).await?;
        tx.commit().await?;
        Ok(Removal {
            grant: scoped.is_some(),
            tokens,
        })
    }

    async fn purge(&self, cutoffs: Cutoffs, batch: u32) -> Result<Purged> {
        let mut tx = self.pool.begin().await?;
        let codes = query(
            "DELETE FROM auth_codes WHERE hash IN
                 (SELECT hash FROM auth_codes WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoffs.codes_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A token's networks go with it (ON DELETE CASCADE).
        let tokens = query(
            "DELETE FROM tokens WHERE id IN
                 (SELECT id FROM tokens WHERE expires_at < $1 OR revoked_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoffs.tokens_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let callbacks = query(
            "DELETE FROM callbacks WHERE id IN
                 (SELECT id FROM callbacks WHERE state <> 'pending' AND finished_at < $1 LIMIT $2
                  FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoffs.callbacks_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let audit = query(
            "DELETE FROM audit_log WHERE id IN
                 (SELECT id FROM audit_log WHERE at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoffs.audit_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let removals = query(
            "DELETE FROM grant_removals WHERE (app_id, user_id) IN
                 (SELECT app_id, user_id FROM grant_removals WHERE removed_at < $1 LIMIT $2
                  FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoffs.tokens_before)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // An hour's errors and users go in batches of their own, so each delete is bounded.
        let mut usage = 0;
        for (table, key) in [
            ("app_usage", "app_id, hour"),
            ("app_usage_errors", "app_id, hour, code"),
            ("app_usage_users", "app_id, hour, user_id"),
        ] {
            let n = query(&format!(
                "DELETE FROM {table} WHERE ({key}) IN
                     (SELECT {key} FROM {table} WHERE hour < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ))
            .bind(cutoffs.usage_before)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            usage = usage.max(n);
        }
        tx.commit().await?;
        Ok(Purged {
            codes,
            tokens,
            callbacks,
            audit,
            usage,
            removals,
        })
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let mut conn = self.pool.acquire().await?;
        let id = insert_token(&mut conn, token, None).await?;
        Ok(issued(id, token.clone(), None))
    }

    async fn derive_tokens(
        &self,
        parent: &TokenHash,
        how: Derivation,
        tokens: &[NewToken],
    ) -> Result<Option<Vec<TokenRecord>>> {
        let mut tx = self.pool.begin().await?;
        lock_for_derivation(&mut tx, parent).await?;
        let parent_id: Option<i64> = match how {
            Derivation::Exchange { now } => sqlx::query_scalar(
                "UPDATE tokens SET exchanged_at = $1
                 WHERE hash = $2 AND exchanged_at IS NULL AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(&parent.0[..]),
            Derivation::Refresh {
                parent_expires_at, ..
            } => sqlx::query_scalar(
                "UPDATE tokens SET expires_at = LEAST(expires_at, $1)
                 WHERE hash = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(parent_expires_at)
            .bind(&parent.0[..]),
            Derivation::Attach => {
                sqlx::query_scalar("SELECT id FROM tokens WHERE hash = $1 AND revoked_at IS NULL")
                    .bind(&parent.0[..])
            }
            Derivation::Rotate { now, reusable_since } => sqlx::query_scalar(
                "UPDATE tokens SET exchanged_at = COALESCE(exchanged_at, $1)
                 WHERE hash = $2 AND revoked_at IS NULL AND (exchanged_at IS NULL OR exchanged_at >= $3)
                 RETURNING id",
            )
            .bind(now)
            .bind(&parent.0[..])
            .bind(reusable_since),
        }
        .fetch_optional(&mut *tx)
        .await?;
        let Some(parent_id) = parent_id else {
            return Ok(None);
        };
        if let Derivation::Refresh { now, .. } = how {
            query(&supersede_sql("$1", "$2"))
                .bind(now)
                .bind(parent_id)
                .execute(&mut *tx)
                .await?;
        }
        let mut out = Vec::with_capacity(tokens.len());
        for token in tokens {
            let id = insert_token(&mut tx, token, Some(parent_id)).await?;
            out.push(issued(id, token.clone(), None));
        }
        tx.commit().await?;
        Ok(Some(out))
    }
}

/// A code from the first eight columns of an `auth_codes` row (app, user, scoped id, redirect
/// URI, scopes, challenge, created, expires).
fn code_from_row(row: &PgRow, hash: &TokenHash) -> Result<CodeRecord> {
    let app: String = row.try_get(0)?;
    let scoped: String = row.try_get(2)?;
    let challenge: Option<String> = row.try_get(5)?;
    Ok(CodeRecord {
        hash: *hash,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: UserId(row.try_get(1)?),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        redirect_uri: row.try_get(3)?,
        scopes: ScopeSet::from_stored(row.try_get(4)?),
        code_challenge: challenge.as_deref().map(CodeChallenge::from_stored),
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
    })
}

async fn insert_token(
    tx: &mut sqlx::PgConnection,
    token: &NewToken,
    parent_id: Option<i64>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO tokens (hash, kind, flavour, app_id, user_id, scopes, issued_at, expires_at, parent_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&token.hash.0[..])
    .bind(token.kind.as_str())
    .bind(token.flavour.as_str())
    .bind(token.app_id.as_str())
    .bind(token.user_id.map(|u| u.0))
    .bind(token.scopes.to_stored())
    .bind(token.issued_at)
    .bind(token.expires_at)
    .bind(parent_id)
    .fetch_one(tx)
    .await?)
}

fn callback_from_row(r: &PgRow) -> Result<Callback> {
    let row: CallbackRow = (
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
        i64::from(r.try_get::<i32, _>(7)?),
        r.try_get(8)?,
        r.try_get(9)?,
        r.try_get(10)?,
        r.try_get(11)?,
        r.try_get(12)?,
        r.try_get(13)?,
    );
    to_callback(row)
}

#[async_trait]
impl CallbackStore for PgStore {
    async fn claim_callbacks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        // SKIP LOCKED: nodes claiming at the same moment take different callbacks.
        query(&format!(
            "UPDATE callbacks SET attempts = attempts + 1, next_attempt_at = $2
             WHERE id IN (SELECT id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1
                          ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {CALLBACK_COLUMNS}"
        ))
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(callback_from_row)
        .collect()
    }

    async fn finish_attempt(&self, id: i64, attempt_no: u32, attempt: &Attempt) -> Result<bool> {
        let (state, next, url, error, finished, code, status_url) = attempt.columns();
        let r = query(
            "UPDATE callbacks SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at),
                 url = COALESCE($4, url), last_error = $5, finished_at = $6,
                 confirmation_code = $7, status_url = $8
             WHERE id = $1 AND state = 'pending' AND attempts = $9",
        )
        .bind(id)
        .bind(state)
        .bind(next)
        .bind(url)
        .bind(error)
        .bind(finished)
        .bind(code)
        .bind(status_url)
        .bind(i32::try_from(attempt_no).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn callbacks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Callback>> {
        query(&format!(
            "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE $1::TEXT IS NULL OR app_id = $1
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(app.map(AppId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(callback_from_row)
        .collect()
    }

    async fn retry_callback(&self, id: i64, now: UnixTime) -> Result<bool> {
        let r = query(
            "UPDATE callbacks SET state = 'pending', attempts = 0, next_attempt_at = $2, finished_at = NULL
             WHERE id = $1 AND state = 'failed'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
