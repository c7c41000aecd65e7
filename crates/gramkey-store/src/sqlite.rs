//! The embedded SQLite store, the default.
//!
//! - **Writes** go to one writer thread that owns the only writing connection. It takes every
//!   write waiting in its queue (up to [`MAX_BATCH`]), runs each in its own savepoint inside one
//!   transaction, commits once, and only then answers each caller. With `synchronous=FULL` every
//!   answered write is on disk, yet a burst of concurrent token requests costs one fsync, not one
//!   each (group commit). A write that fails rolls back its own savepoint only.
//! - **Reads** use a pool of read-only connections and run inline on the calling task: an
//!   indexed lookup takes microseconds, less than a hop to a blocking thread would. WAL mode lets
//!   them run while the writer commits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use async_trait::async_trait;
use gramkey_domain::code::CodeChallenge;
use gramkey_domain::error::RevokeReason;
use gramkey_domain::{
    AppId, AppMode, Flavour, Role, ScopeSet, ScopedUserId, TokenHash, TokenKind, UnixTime, UserId,
};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

pub(crate) mod access;
pub(crate) mod content;
pub(crate) mod monitor;

use crate::records::{corrupt, join_uris, judge_claim, split_uris, supersede_sql};
use crate::{
    App, AppStore, CodeClaim, CodeRecord, Derivation, Grant, GrantStore, NewCode, NewToken,
    NewUser, Profile, Redemption, Result, StoreError, TokenRecord, User, UserStore,
};
use crate::{Attempt, Callback, CallbackStore, Purged, Removal, Revoke};
use gramkey_domain::callback::{CallbackKind, CallbackState, Confirmation};
use gramkey_domain::retention::Cutoffs;

/// The most writes committed in one transaction.
pub const MAX_BATCH: usize = 512;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_token_lineage.sql"),
    include_str!("../migrations/sqlite/0003_secret_grace.sql"),
    include_str!("../migrations/sqlite/0004_refresh_tokens.sql"),
    include_str!("../migrations/sqlite/0005_callbacks.sql"),
    include_str!("../migrations/sqlite/0006_content.sql"),
    include_str!("../migrations/sqlite/0007_monitoring.sql"),
    include_str!("../migrations/sqlite/0008_access.sql"),
    include_str!("../migrations/sqlite/0009_signed_requests.sql"),
];

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// One queued write.
trait Job: Send {
    /// Runs inside the batch transaction, in a savepoint of its own.
    fn run(&mut self, conn: &Connection);
    /// Answers the caller once the batch has committed (or failed to).
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(in_savepoint(conn, work));
        }
    }
    fn finish(self: Box<Self>, commit: Result<()>) {
        let this = *self;
        let outcome = commit.and_then(|()| {
            this.result
                .unwrap_or_else(|| Err(StoreError::Backend("write was not run".into())))
        });
        // The caller may have gone away (its request was cancelled); nothing to do then.
        let _ = this.reply.send(outcome);
    }
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

fn writer_loop(conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, writes = batch.len(), "SQLite batch commit failed");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    for job in batch.iter_mut() {
        job.run(conn);
        // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O
        // error, out of memory). Then nothing of this batch will commit: stop, and every
        // caller is told so, rather than running the rest in autocommit.
        if conn.is_autocommit() {
            return Err(StoreError::Backend(
                "SQLite rolled the batch transaction back".into(),
            ));
        }
    }
    let commit = conn
        .prepare_cached("COMMIT")?
        .execute([])
        .map(|_| ())
        .map_err(StoreError::from);
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    commit
}

/// Memory-mapped reads for every connection: token and code lookups are random B-tree probes,
/// and reading mapped pages instead of calling `pread` matters at tens of thousands of requests
/// per second.
const TUNING: &str = "PRAGMA mmap_size = 268435456;";

/// The SQLite store. Cheap to share behind an `Arc`; dropping the last handle stops the writer.
pub struct SqliteStore {
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// Applies the migrations this database lacks, each in an `IMMEDIATE` transaction that reads
/// the schema version after taking the write lock. Two processes opening a fresh database at
/// once (`gramkey serve` and a CLI command) apply each migration once: the second waits for
/// the first (busy timeout), then finds the version moved on.
fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "the database has schema version {current}, newer than this gramkey ({}); upgrade gramkey",
                MIGRATIONS.len()
            )));
        }
        let Some(sql) = MIGRATIONS.get(current) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
        tracing::info!(version = current + 1, "applied SQLite migration");
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;",
        )?;
        conn.execute_batch(TUNING)?;
        migrate(&mut conn)?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.execute_batch(
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;",
            )?;
            c.execute_batch(TUNING)
        });
        // No liveness test on checkout: a local file connection does not go stale, and the
        // test would cost a statement per read.
        let readers = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .build(manager)?;
        let (writer, queue) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("gramkey-sqlite-writer".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { readers, writer })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        Ok(f(&conn)?)
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer thread dropped a write".into()))?
    }
}

/// `apps_of` reads the role after these, at index 14.
const APP_COLUMNS: &str = "id, name, secret_hash, redirect_uris, scopes, mode, created_at, previous_secret_hash, \
     previous_secret_expires_at, refresh_tokens, secret_seed, deauthorize_url, data_deletion_url, \
     signed_requests";

fn app_from_row(row: &Row<'_>) -> rusqlite::Result<std::result::Result<App, StoreError>> {
    let id: String = row.get(0)?;
    let mode: String = row.get(5)?;
    let scopes: String = row.get(4)?;
    let uris: String = row.get(3)?;
    Ok((|| {
        Ok(App {
            id: AppId::parse(&id).ok_or_else(|| corrupt("app id", &id))?,
            name: row.get(1).map_err(StoreError::from)?,
            secret_hash: row.get(2).map_err(StoreError::from)?,
            redirect_uris: split_uris(&uris),
            scopes: ScopeSet::from_stored(&scopes),
            mode: AppMode::parse(&mode).ok_or_else(|| corrupt("app mode", &mode))?,
            created_at: row.get(6).map_err(StoreError::from)?,
            previous_secret: match (
                row.get::<_, Option<Vec<u8>>>(7).map_err(StoreError::from)?,
                row.get::<_, Option<i64>>(8).map_err(StoreError::from)?,
            ) {
                (Some(h), Some(until)) => Some((h, until)),
                _ => None,
            },
            refresh_tokens: row.get(9).map_err(StoreError::from)?,
            secret_seed: row.get(10).map_err(StoreError::from)?,
            deauthorize_url: row.get(11).map_err(StoreError::from)?,
            data_deletion_url: row.get(12).map_err(StoreError::from)?,
            signed_requests: row.get(13).map_err(StoreError::from)?,
        })
    })())
}

const USER_COLUMNS: &str = "id, username, password_hash, full_name, biography, website, account_type, \
     profile_picture_url, followers_count, follows_count, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId(row.get(0)?),
        username: row.get(1)?,
        password_hash: row.get(2)?,
        profile: Profile {
            full_name: row.get(3)?,
            biography: row.get(4)?,
            website: row.get(5)?,
            account_type: row.get(6)?,
            profile_picture_url: row.get(7)?,
            followers_count: row.get(8)?,
            follows_count: row.get(9)?,
        },
        created_at: row.get(10)?,
    })
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, app: &App) -> Result<()> {
        let app = app.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO apps ({APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                app.id.as_str(),
                app.name,
                app.secret_hash,
                join_uris(&app.redirect_uris),
                app.scopes.to_stored(),
                app.mode.as_str(),
                app.created_at,
                app.refresh_tokens,
                app.secret_seed,
                app.deauthorize_url,
                app.data_deletion_url,
                app.signed_requests
            ])?;
            Ok(())
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"))?
                .query_row([id.as_str()], app_from_row)
                .optional()
        })?
        .transpose()
    }

    async fn apps(&self) -> Result<Vec<App>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, id"
            ))?
            .query_map([], app_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?
        .into_iter()
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
        let (id, hash, seed) = (id.clone(), secret_hash.to_vec(), secret_seed.to_vec());
        self.write(move |c| {
            // The right-hand sides see the row as it was: the old secret becomes the previous one.
            let found = c
                .prepare_cached(
                    "UPDATE apps SET previous_secret_hash = CASE WHEN ?3 IS NULL THEN NULL ELSE secret_hash END,
                         previous_secret_expires_at = ?3, secret_hash = ?1, secret_seed = ?4
                     WHERE id = ?2",
                )?
                .execute(params![hash, id.as_str(), keep_old_until, seed])?
                == 1;
            c.prepare_cached(
                "UPDATE tokens SET expires_at = MIN(expires_at, ?2)
                 WHERE app_id = ?1 AND kind = 'app' AND revoked_at IS NULL",
            )?
            .execute(params![id.as_str(), keep_old_until.unwrap_or(now)])?;
            Ok(found)
        })
        .await
    }

    async fn update_app(&self, app: &App) -> Result<bool> {
        let app = app.clone();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE apps SET name = ?2, redirect_uris = ?3, scopes = ?4, mode = ?5, refresh_tokens = ?6,
                     deauthorize_url = ?7, data_deletion_url = ?8, signed_requests = ?9
                 WHERE id = ?1",
            )?
            .execute(params![
                app.id.as_str(),
                app.name,
                join_uris(&app.redirect_uris),
                app.scopes.to_stored(),
                app.mode.as_str(),
                app.refresh_tokens,
                app.deauthorize_url,
                app.data_deletion_url,
                app.signed_requests
            ])?
                == 1)
        })
        .await
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let id = id.clone();
        self.write(move |c| {
            Ok(c.prepare_cached("DELETE FROM apps WHERE id = ?1")?
                .execute([id.as_str()])?
                == 1)
        })
        .await
    }

    async fn set_role(&self, app: &AppId, user: UserId, role: Role, now: UnixTime) -> Result<()> {
        let app = app.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO app_roles (app_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![app.as_str(), user.0, role.as_str(), now])?;
            Ok(())
        })
        .await
    }

    async fn role(&self, app: &AppId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> = self.read(|c| {
            c.prepare_cached("SELECT role FROM app_roles WHERE app_id = ?1 AND user_id = ?2")?
                .query_row(params![app.as_str(), user.0], |r| r.get(0))
                .optional()
        })?;
        role.map(|r| Role::parse(&r).ok_or_else(|| corrupt("role", &r)))
            .transpose()
    }

    async fn roles(&self, app: &AppId) -> Result<Vec<(UserId, Role)>> {
        let rows: Vec<(i64, String)> = self.read(|c| {
            c.prepare_cached("SELECT user_id, role FROM app_roles WHERE app_id = ?1 ORDER BY created_at, user_id")?
                .query_map([app.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
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
        let rows = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {APP_COLUMNS}, (SELECT role FROM app_roles r WHERE r.app_id = apps.id AND r.user_id = ?1)
                 FROM apps WHERE id IN (SELECT app_id FROM app_roles WHERE user_id = ?1)
                 ORDER BY created_at, id"
            ))?
            .query_map([user.0], |r| Ok((app_from_row(r)?, r.get::<_, String>(14)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(app, role)| {
                Ok((
                    app?,
                    Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                ))
            })
            .collect()
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &NewUser, now: UnixTime) -> Result<User> {
        let u = user.clone();
        self.write(move |c| {
            let p = &u.profile;
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO users (username, password_hash, full_name, biography, website, account_type,
                         profile_picture_url, followers_count, follows_count, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
                )?
                .query_row(
                    params![
                        u.username,
                        u.password_hash,
                        p.full_name,
                        p.biography,
                        p.website,
                        p.account_type,
                        p.profile_picture_url,
                        p.followers_count,
                        p.follows_count,
                        now
                    ],
                    |r| r.get(0),
                )?;
            Ok(User { id: UserId(id), username: u.username, password_hash: u.password_hash, profile: u.profile, created_at: now })
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id.0], user_from_row)
                .optional()
        })
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
            ))?
            .query_row([username], user_from_row)
            .optional()
        })
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?
                .query_map([], user_from_row)?
                .collect()
        })
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<bool> {
        let hash = password_hash.to_owned();
        self.write(move |c| {
            Ok(
                c.prepare_cached("UPDATE users SET password_hash = ?1 WHERE id = ?2")?
                    .execute(params![hash, id.0])?
                    == 1,
            )
        })
        .await
    }
}

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<(String, i64, String, String, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_grant((app, user, scoped, scopes, at): (String, i64, String, String, i64)) -> Result<Grant> {
    Ok(Grant {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: UserId(user),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        scopes: ScopeSet::from_stored(&scopes),
        granted_at: at,
    })
}

fn code_from_row(
    row: &Row<'_>,
    hash: TokenHash,
) -> rusqlite::Result<Result<(CodeRecord, Option<UnixTime>)>> {
    let app: String = row.get(0)?;
    let scoped: String = row.get(2)?;
    let scopes: String = row.get(4)?;
    let challenge: Option<String> = row.get(5)?;
    let user: i64 = row.get(1)?;
    let redirect_uri: String = row.get(3)?;
    let (created_at, expires_at, redeemed_at) = (row.get(6)?, row.get(7)?, row.get(8)?);
    Ok((|| {
        Ok((
            CodeRecord {
                hash,
                app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
                user_id: UserId(user),
                scoped_id: ScopedUserId::parse(&scoped)
                    .ok_or_else(|| corrupt("scoped id", &scoped))?,
                redirect_uri,
                scopes: ScopeSet::from_stored(&scopes),
                code_challenge: challenge.as_deref().map(CodeChallenge::from_stored),
                created_at,
                expires_at,
            },
            redeemed_at,
        ))
    })())
}

type TokenRow = (
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);

pub(crate) fn to_token(
    (id, kind, flavour, app, user, scoped, scopes, issued_at, expires_at, reason, revoked_at): TokenRow,
    exchanged_at: Option<i64>,
) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt("token kind", &kind))?,
        flavour: Flavour::parse(&flavour).ok_or_else(|| corrupt("token flavour", &flavour))?,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: user.map(UserId),
        scoped_id: scoped.as_deref().and_then(ScopedUserId::parse),
        scopes: ScopeSet::from_stored(&scopes),
        issued_at,
        expires_at,
        revoked: revoked_at.map(|_| RevokeReason::parse(reason.as_deref().unwrap_or_default())),
        exchanged: exchanged_at.is_some(),
    })
}

/// The ids of every token of the grant the token with hash `?3` belongs to: up the `parent_id`
/// chain to the token issued from the code, then down to everything derived from it.
const FAMILY: &str = "WITH RECURSIVE
    up(id, parent_id) AS (
        SELECT id, parent_id FROM tokens WHERE hash = ?3
        UNION SELECT t.id, t.parent_id FROM tokens t JOIN up ON t.id = up.parent_id),
    down(id) AS (
        SELECT id FROM up WHERE parent_id IS NULL
        UNION SELECT t.id FROM tokens t JOIN down ON t.parent_id = down.id)";

/// Inserts a token; returns its id.
fn insert_token(c: &Connection, token: &NewToken, parent_id: Option<i64>) -> Result<i64> {
    Ok(c.prepare_cached(
        "INSERT INTO tokens (hash, kind, flavour, app_id, user_id, scopes, issued_at, expires_at, parent_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )?
    .query_row(
        params![
            token.hash.0,
            token.kind.as_str(),
            token.flavour.as_str(),
            token.app_id.as_str(),
            token.user_id.map(|u| u.0),
            token.scopes.to_stored(),
            token.issued_at,
            token.expires_at,
            parent_id
        ],
        |r| r.get(0),
    )?)
}

/// The record of a token just issued.
pub(crate) fn issued(id: i64, token: NewToken, scoped_id: Option<ScopedUserId>) -> TokenRecord {
    TokenRecord {
        id,
        kind: token.kind,
        flavour: token.flavour,
        app_id: token.app_id,
        user_id: token.user_id,
        scoped_id,
        scopes: token.scopes,
        issued_at: token.issued_at,
        expires_at: token.expires_at,
        revoked: None,
        exchanged: false,
    }
}

/// Revokes the tokens `which` selects and, for an app, a user or both, burns their unredeemed
/// codes (they would mint fresh tokens after the revocation).
fn revoke_in(c: &Connection, which: &Revoke, reason: RevokeReason, now: UnixTime) -> Result<u64> {
    const SET: &str =
        "UPDATE tokens SET revoked_at = ?1, revoke_reason = ?2 WHERE revoked_at IS NULL AND";
    let r = reason.as_str();
    let n = match which {
        Revoke::Token(h) => c
            .prepare_cached(&format!("{SET} hash = ?3"))?
            .execute(params![now, r, h.0])?,
        Revoke::App(a) => c
            .prepare_cached(&format!("{SET} app_id = ?3"))?
            .execute(params![now, r, a.as_str()])?,
        Revoke::AppUser(a, u) => c
            .prepare_cached(&format!("{SET} app_id = ?3 AND user_id = ?4"))?
            .execute(params![now, r, a.as_str(), u.0])?,
        Revoke::User(u) => c
            .prepare_cached(&format!("{SET} user_id = ?3"))?
            .execute(params![now, r, u.0])?,
        Revoke::Family(h) => c
            .prepare_cached(&format!("{FAMILY} {SET} id IN (SELECT id FROM down)"))?
            .execute(params![now, r, h.0])?,
    };
    // Codes not yet redeemed would mint fresh tokens after the revocation: burn them.
    const BURN: &str = "UPDATE auth_codes SET redeemed_at = ?1 WHERE redeemed_at IS NULL AND";
    match which {
        Revoke::Token(_) | Revoke::Family(_) => 0,
        Revoke::App(a) => c
            .prepare_cached(&format!("{BURN} app_id = ?2"))?
            .execute(params![now, a.as_str()])?,
        Revoke::AppUser(a, u) => c
            .prepare_cached(&format!("{BURN} app_id = ?2 AND user_id = ?3"))?
            .execute(params![now, a.as_str(), u.0])?,
        Revoke::User(u) => c
            .prepare_cached(&format!("{BURN} user_id = ?2"))?
            .execute(params![now, u.0])?,
    };
    Ok(n as u64)
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn grant(&self, app: &AppId, user: UserId) -> Result<Option<Grant>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT app_id, user_id, scoped_id, scopes, granted_at FROM grants WHERE app_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![app.as_str(), user.0], grant_from_row)
            .optional()
        })?
        .map(to_grant)
        .transpose()
    }

    async fn grant_by_scoped_id(
        &self,
        app: &AppId,
        scoped: &ScopedUserId,
    ) -> Result<Option<Grant>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT app_id, user_id, scoped_id, scopes, granted_at FROM grants WHERE scoped_id = ?1 AND app_id = ?2",
            )?
            .query_row(params![scoped.as_str(), app.as_str()], grant_from_row)
            .optional()
        })?
        .map(to_grant)
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
        let (app, scopes, scoped) = (app.clone(), scopes.to_stored(), new_scoped_id.clone());
        let row = self
            .write(move |c| {
                Ok(c.prepare_cached(
                    "INSERT INTO grants (app_id, user_id, scoped_id, scopes, granted_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (app_id, user_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at
                     RETURNING app_id, user_id, scoped_id, scopes, granted_at",
                )?
                .query_row(params![app.as_str(), user.0, scoped.as_str(), scopes, now], grant_from_row)?)
            })
            .await?;
        to_grant(row)
    }

    async fn create_code(&self, code: &NewCode) -> Result<()> {
        let code = code.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO auth_codes (hash, app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge,
                     created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                code.hash.0,
                code.app_id.as_str(),
                code.user_id.0,
                code.scoped_id.as_str(),
                code.redirect_uri,
                code.scopes.to_stored(),
                code.code_challenge.as_ref().map(CodeChallenge::as_str),
                code.created_at,
                code.expires_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn redeem_code(&self, hash: &TokenHash, claim: &CodeClaim) -> Result<Redemption> {
        let (hash, claim) = (*hash, claim.clone());
        let now = claim.now;
        self.write(move |c| {
            let found = c
                .prepare_cached(
                    "SELECT app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge, created_at, expires_at,
                         redeemed_at, token_id, rowid
                     FROM auth_codes WHERE hash = ?1",
                )?
                .query_row([hash.0], |r| {
                    Ok((code_from_row(r, hash)?, r.get::<_, Option<i64>>(9)?, r.get::<_, i64>(10)?))
                })
                .optional()?;
            // Later updates address the row by rowid: no second probe of the hash index.
            let Some((found, token_id, rowid)) = found else {
                return Ok(Redemption::NotFound);
            };
            let (code, redeemed_at) = found?;
            if redeemed_at.is_some() {
                let revoked = c
                    .prepare_cached(
                        "WITH RECURSIVE family(id) AS (
                             SELECT ?2 UNION ALL SELECT t.id FROM tokens t JOIN family f ON t.parent_id = f.id
                         )
                         UPDATE tokens SET revoked_at = ?1, revoke_reason = 'code_replay'
                         WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL",
                    )?
                    .execute(params![now, token_id])?;
                return Ok(Redemption::Replayed { revoked: revoked as u64 });
            }
            let (mut rows, issue) = match judge_claim(&code, &claim) {
                Ok(granted) => granted,
                Err(refusal) => {
                    c.prepare_cached("UPDATE auth_codes SET redeemed_at = ?1 WHERE rowid = ?2")?
                        .execute(params![now, rowid])?;
                    return Ok(Redemption::Refused(refusal));
                }
            };
            let access = rows.remove(0);
            let id = insert_token(c, &access, None)?;
            for child in &rows {
                insert_token(c, child, Some(id))?;
            }
            c.prepare_cached("UPDATE auth_codes SET redeemed_at = ?1, token_id = ?2 WHERE rowid = ?3")?
                .execute(params![now, id, rowid])?;
            Ok(Redemption::Issued {
                record: issued(id, access, Some(code.scoped_id)),
                token: issue.access,
                refresh: issue.refresh.map(|(t, _)| t),
            })
        })
        .await
    }

    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT t.id, t.kind, t.flavour, t.app_id, t.user_id, g.scoped_id, t.scopes, t.issued_at, t.expires_at,
                     t.revoke_reason, t.revoked_at, t.exchanged_at
                 FROM tokens t LEFT JOIN grants g ON g.app_id = t.app_id AND g.user_id = t.user_id
                 WHERE t.hash = ?1",
            )?
            .query_row([hash.0], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get::<_, Option<i64>>(11)?,
                ))
            })
            .optional()
        })?
        .map(|(a, b, c, d, e, f, g, h, i, j, k, exchanged_at)| to_token((a, b, c, d, e, f, g, h, i, j, k), exchanged_at))
        .transpose()
    }

    async fn revoke_tokens(
        &self,
        which: Revoke,
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<u64> {
        self.write(move |c| revoke_in(c, &which, reason, now)).await
    }

    async fn remove_grant(
        &self,
        app: &AppId,
        user: UserId,
        reason: RevokeReason,
        now: UnixTime,
        callbacks: &[CallbackKind],
    ) -> Result<Removal> {
        let (app, callbacks) = (app.clone(), callbacks.to_vec());
        self.write(move |c| {
            let removed = c
                .prepare_cached(
                    "DELETE FROM grants WHERE app_id = ?1 AND user_id = ?2 RETURNING scoped_id, scopes, granted_at",
                )?
                .query_row(params![app.as_str(), user.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .optional()?;
            let deletion_at = callbacks
                .contains(&CallbackKind::DataDeletion)
                .then_some(now);
            if let Some((scoped, scopes, granted_at)) = &removed {
                c.prepare_cached(
                    "INSERT INTO grant_removals (app_id, user_id, scoped_id, scopes, granted_at, removed_at,
                         deletion_requested_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (app_id, user_id) DO UPDATE SET scoped_id = excluded.scoped_id,
                         scopes = excluded.scopes, granted_at = excluded.granted_at, removed_at = excluded.removed_at,
                         deletion_requested_at = excluded.deletion_requested_at",
                )?
                .execute(params![app.as_str(), user.0, scoped, scopes, granted_at, now, deletion_at])?;
            }
            let scoped = removed.map(|(scoped, _, _)| scoped);
            for kind in callbacks.iter().filter(|_| scoped.is_some()) {
                c.prepare_cached(
                    "INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )?
                .execute(params![app.as_str(), kind.as_str(), user.0, scoped, now])?;
            }
            let tokens = revoke_in(c, &Revoke::AppUser(app, user), reason, now)?;
            Ok(Removal {
                grant: scoped.is_some(),
                tokens,
            })
        })
        .await
    }

    async fn purge(&self, cutoffs: Cutoffs, batch: u32) -> Result<Purged> {
        self.write(move |c| {
            let codes = c
                .prepare_cached(
                    "DELETE FROM auth_codes WHERE rowid IN
                         (SELECT rowid FROM auth_codes WHERE expires_at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoffs.codes_before, batch])?;
            // A token's networks go with it (ON DELETE CASCADE).
            let tokens = c
                .prepare_cached(
                    "DELETE FROM tokens WHERE id IN
                         (SELECT id FROM tokens WHERE expires_at < ?1 OR revoked_at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoffs.tokens_before, batch])?;
            let callbacks = c
                .prepare_cached(
                    "DELETE FROM callbacks WHERE id IN
                         (SELECT id FROM callbacks WHERE state <> 'pending' AND finished_at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoffs.callbacks_before, batch])?;
            let audit = c
                .prepare_cached(
                    "DELETE FROM audit_log WHERE id IN
                         (SELECT id FROM audit_log WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoffs.audit_before, batch])?;
            let removals = c
                .prepare_cached(
                    "DELETE FROM grant_removals WHERE rowid IN
                         (SELECT rowid FROM grant_removals WHERE removed_at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoffs.tokens_before, batch])?;
            // An hour's errors and users go in batches of their own, so each delete is bounded.
            let mut usage = 0;
            for table in ["app_usage", "app_usage_errors", "app_usage_users"] {
                let n = c
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE rowid IN
                             (SELECT rowid FROM {table} WHERE hour < ?1 LIMIT ?2)"
                    ))?
                    .execute(params![cutoffs.usage_before, batch])?;
                usage = usage.max(n);
            }
            Ok(Purged {
                codes: codes as u64,
                tokens: tokens as u64,
                callbacks: callbacks as u64,
                audit: audit as u64,
                usage: usage as u64,
                removals: removals as u64,
            })
        })
        .await
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let token = token.clone();
        self.write(move |c| {
            let id = insert_token(c, &token, None)?;
            Ok(issued(id, token, None))
        })
        .await
    }

    async fn derive_tokens(
        &self,
        parent: &TokenHash,
        how: Derivation,
        tokens: &[NewToken],
    ) -> Result<Option<Vec<TokenRecord>>> {
        let (parent, tokens) = (*parent, tokens.to_vec());
        self.write(move |c| {
            let parent_id: Option<i64> = match how {
                Derivation::Exchange { now } => c
                    .prepare_cached(
                        "UPDATE tokens SET exchanged_at = ?1
                         WHERE hash = ?2 AND exchanged_at IS NULL AND revoked_at IS NULL RETURNING id",
                    )?
                    .query_row(params![now, parent.0], |r| r.get(0))
                    .optional()?,
                Derivation::Refresh {
                    now,
                    parent_expires_at,
                } => {
                    let id: Option<i64> = c
                        .prepare_cached(
                            "UPDATE tokens SET expires_at = MIN(expires_at, ?1)
                             WHERE hash = ?2 AND revoked_at IS NULL RETURNING id",
                        )?
                        .query_row(params![parent_expires_at, parent.0], |r| r.get(0))
                        .optional()?;
                    if let Some(id) = id {
                        c.prepare_cached(&supersede_sql("?1", "?2"))?
                            .execute(params![now, id])?;
                    }
                    id
                }
                Derivation::Attach => c
                    .prepare_cached("SELECT id FROM tokens WHERE hash = ?1 AND revoked_at IS NULL")?
                    .query_row(params![parent.0], |r| r.get(0))
                    .optional()?,
                Derivation::Rotate { now, reusable_since } => c
                    .prepare_cached(
                        "UPDATE tokens SET exchanged_at = COALESCE(exchanged_at, ?1)
                         WHERE hash = ?2 AND revoked_at IS NULL AND (exchanged_at IS NULL OR exchanged_at >= ?3)
                         RETURNING id",
                    )?
                    .query_row(params![now, parent.0, reusable_since], |r| r.get(0))
                    .optional()?,
            };
            let Some(parent_id) = parent_id else { return Ok(None) };
            let mut out = Vec::with_capacity(tokens.len());
            for token in tokens {
                let id = insert_token(c, &token, Some(parent_id))?;
                out.push(issued(id, token, None));
            }
            Ok(Some(out))
        })
        .await
    }
}

pub(crate) const CALLBACK_COLUMNS: &str = "id, app_id, kind, user_id, scoped_id, created_at, state, attempts, \
     next_attempt_at, url, last_error, finished_at, confirmation_code, status_url";

/// A callback row as both backends read it, before its text columns are checked.
pub(crate) type CallbackRow = (
    i64,
    String,
    String,
    i64,
    String,
    i64,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

pub(crate) fn to_callback(
    (
        id,
        app,
        kind,
        user,
        scoped,
        created_at,
        state,
        attempts,
        next_attempt_at,
        url,
        last_error,
        finished_at,
        confirmation_code,
        status_url,
    ): CallbackRow,
) -> Result<Callback> {
    Ok(Callback {
        id,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        kind: CallbackKind::parse(&kind).ok_or_else(|| corrupt("callback kind", &kind))?,
        user_id: UserId(user),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        created_at,
        state: CallbackState::parse(&state).ok_or_else(|| corrupt("callback state", &state))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at,
        url,
        last_error,
        finished_at,
        confirmation: Confirmation {
            confirmation_code,
            status_url,
        },
    })
}

fn callback_row(r: &Row<'_>) -> rusqlite::Result<CallbackRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
    ))
}

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn claim_callbacks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        let rows = self
            .write(move |c| {
                Ok(c.prepare_cached(&format!(
                    "UPDATE callbacks SET attempts = attempts + 1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= ?1
                                  ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING {CALLBACK_COLUMNS}"
                ))?
                .query_map(params![now, lease_until, limit], callback_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        rows.into_iter().map(to_callback).collect()
    }

    async fn finish_attempt(&self, id: i64, attempt_no: u32, attempt: &Attempt) -> Result<bool> {
        let attempt = attempt.clone();
        self.write(move |c| {
            let (state, next, url, error, finished, code, status_url) = attempt.columns();
            Ok(c.prepare_cached(
                "UPDATE callbacks SET state = ?2, next_attempt_at = COALESCE(?3, next_attempt_at),
                     url = COALESCE(?4, url), last_error = ?5, finished_at = ?6,
                     confirmation_code = ?7, status_url = ?8
                 WHERE id = ?1 AND state = 'pending' AND attempts = ?9",
            )?
            .execute(params![
                id, state, next, url, error, finished, code, status_url, attempt_no
            ])? == 1)
        })
        .await
    }

    async fn callbacks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Callback>> {
        let app = app.map(|a| a.as_str().to_owned());
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE ?1 IS NULL OR app_id = ?1
                 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![app, limit], callback_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?
        .into_iter()
        .map(to_callback)
        .collect()
    }

    async fn retry_callback(&self, id: i64, now: UnixTime) -> Result<bool> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE callbacks SET state = 'pending', attempts = 0, next_attempt_at = ?2, finished_at = NULL
                 WHERE id = ?1 AND state = 'failed'",
            )?
            .execute(params![id, now])?
                == 1)
        })
        .await
    }
}
