//! The PostgreSQL engine, for running several stateless gramkey nodes on one database.
//!
//! Each operation is one statement on a pooled connection, or one short transaction where it
//! needs several to be atomic. Under READ COMMITTED, concurrent nodes are kept apart by row
//! locks (`FOR UPDATE`: of two nodes redeeming the same code, exactly one wins) and by the
//! advisory locks of [`Lock`] (see [`APP_LOCK`]).
//!
//! The operations themselves are written once, in [`crate::sql`]; this module runs them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow,
};
use sqlx::{Arguments, Column, Postgres, Row as _, TypeInfo};
use tokio::sync::{mpsc, oneshot};

use crate::cached::{Cache, Stale};
use crate::sql::{
    After, Append, Batch, Conn, Dialect, Engine, Invalidation, Kind, Lock, Query, Row, SqlStore,
    Value, Work, placeholders, q,
};
use crate::{Result, StoreError};

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Pg>;

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

/// The PostgreSQL engine: a connection pool.
#[derive(Debug, Clone)]
pub struct Pg {
    pool: PgPool,
    /// Where this store's processes announce what they made stale ([`channel`]).
    channel: String,
    /// The queue of each table appended to ([`Engine::append`]), and its task.
    appenders: Arc<Mutex<HashMap<&'static str, mpsc::Sender<Pending>>>>,
    /// The queue of each [`Batch`] operation ([`Engine::batch`]): an `mpsc::Sender<Call<B>>`.
    batchers: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send>>>>,
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
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        Ok(SqlStore::new(Pg {
            pool,
            channel: channel(&schema),
            appenders: Arc::default(),
            batchers: Arc::default(),
        }))
    }
}

impl Engine for Pg {
    type Conn = PgConnection;
    type Reader<'a> = PoolConnection<Postgres>;

    async fn reader(&self) -> Result<Self::Reader<'_>> {
        Ok(self.pool.acquire().await?)
    }

    /// On a pooled connection, in autocommit: no `BEGIN`/`COMMIT` round trips for a single
    /// statement. A write that may make something stale runs as a transaction instead, so its
    /// announcement commits with it. Like every write here, it runs in a task of its own (see
    /// `transaction`).
    async fn write<T, F>(&self, work: F, after: After<T>) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> Work<'c, T> + Send + 'static,
    {
        if after.may_invalidate() {
            return self.transaction(work, after).await;
        }
        let pool = self.pool.clone();
        run_to_the_end(async move {
            let mut conn = pool.acquire().await?;
            work(&mut conn).await
        })
        .await
    }

    /// In a task of its own, so a caller that goes away (a client that disconnects drops its
    /// request's future) cannot leave the transaction half-sent on a pooled connection: it
    /// commits or rolls back whole.
    ///
    /// What it made stale is announced inside the transaction: PostgreSQL delivers a
    /// `NOTIFY` when, and only when, its transaction commits, so the other nodes hear of
    /// every committed change (a node killed right after its commit included) and of nothing
    /// rolled back. This node's cache drops it after the commit, as SQLite's writer thread
    /// does with a write whose caller has gone.
    async fn transaction<T, F>(&self, work: F, after: After<T>) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> Work<'c, T> + Send + 'static,
    {
        let (pool, channel) = (self.pool.clone(), self.channel.clone());
        run_to_the_end(async move {
            let mut tx = pool.begin().await?;
            let done = work(&mut tx).await?;
            let stale = after.stale(&done);
            announce(&mut tx, &channel, &stale).await?;
            tx.commit().await?;
            stale.forget();
            Ok(done)
        })
        .await
    }

    /// Group commit: a task per table takes every row waiting in its queue (up to
    /// [`MAX_BATCH`]), inserts them in one statement, which commits them together, and only
    /// then answers each caller. Under load a single commit carries many issuances and their
    /// audit events, as SQLite's writer does; a lone row costs what it did.
    async fn append(&self, append: &'static Append, values: Vec<Value<'static>>) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let queue = {
            let mut queues = self.appenders.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .entry(append.table)
                .or_insert_with(|| {
                    let (queue, rows) = mpsc::channel(MAX_BATCH);
                    tokio::spawn(appender(self.pool.clone(), append, rows));
                    queue
                })
                .clone()
        };
        queue.send(Pending { values, reply }).await.map_err(|_| {
            StoreError::Backend(format!("the {} appender has stopped", append.table))
        })?;
        answer.await.map_err(|_| {
            StoreError::Backend(format!("the {} appender dropped a row", append.table))
        })?
    }

    /// Group commit for an operation of several statements: a task per operation takes every
    /// call waiting in its queue (up to [`MAX_BATCH`]) and runs them in one transaction, then
    /// answers each caller. The batch costs the statements of one call, not of each.
    async fn batch<B: Batch>(&self, item: B::Item) -> Result<B::Out> {
        let (reply, answer) = oneshot::channel();
        let queue = {
            let mut queues = self.batchers.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .entry(TypeId::of::<B>())
                .or_insert_with(|| {
                    let (queue, calls) = mpsc::channel::<Call<B>>(MAX_BATCH);
                    tokio::spawn(batcher(self.pool.clone(), calls));
                    Box::new(queue)
                })
                .downcast_ref::<mpsc::Sender<Call<B>>>()
                .cloned()
                .ok_or_else(|| StoreError::Backend(format!("the {} queue is mistyped", B::NAME)))?
        };
        let gone = || StoreError::Backend(format!("the {} have stopped", B::NAME));
        queue.send(Call { item, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    fn follow(&self, cache: Weak<Cache>) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (pool, channel) = (self.pool.clone(), self.channel.clone());
        Some(runtime.spawn(async move {
            while cache.strong_count() > 0 {
                // Whatever is cached may miss a notification until listening again.
                if let Some(cache) = cache.upgrade() {
                    cache.forget(&Stale::Everything);
                }
                if let Err(e) = listen(&pool, &channel, &cache).await {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }))
    }
}

/// The most rows appended in one statement.
pub const MAX_BATCH: usize = 512;

/// A row waiting to be appended, and its caller.
#[derive(Debug)]
struct Pending {
    values: Vec<Value<'static>>,
    reply: oneshot::Sender<Result<i64>>,
}

/// Appends the rows queued for `append`'s table, a batch at a time, until every sender is gone.
async fn appender(pool: PgPool, append: &'static Append, mut queue: mpsc::Receiver<Pending>) {
    let statement = unnest(append);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match insert_rows(&pool, &statement, append, &batch).await {
            Ok(ids) => {
                for (row, id) in batch.drain(..).zip(ids) {
                    let _ = row.reply.send(Ok(id));
                }
            }
            // One row may be at fault (a constraint): each on its own, so it fails alone.
            Err(StoreError::Conflict(_)) if batch.len() > 1 => {
                for row in batch.drain(..) {
                    let one = insert_rows(&pool, &statement, append, std::slice::from_ref(&row))
                        .await
                        .and_then(|ids| {
                            ids.first().copied().ok_or_else(|| {
                                StoreError::Backend("the insert answered no id".into())
                            })
                        });
                    let _ = row.reply.send(one);
                }
            }
            Err(e) => {
                for row in batch.drain(..) {
                    let _ = row.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A call waiting in a [`Batch`] operation's queue, and its caller.
struct Call<B: Batch> {
    item: B::Item,
    reply: oneshot::Sender<Result<B::Out>>,
}

/// Runs the calls queued for `B`, a batch at a time, until every sender is gone. A batch that
/// fails is run again a call at a time, so that a call at fault fails alone.
async fn batcher<B: Batch>(pool: PgPool, mut queue: mpsc::Receiver<Call<B>>) {
    let mut calls = Vec::with_capacity(MAX_BATCH);
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut calls, MAX_BATCH).await > 0 {
        for call in calls.drain(..) {
            items.push(call.item);
            replies.push(call.reply);
        }
        match together::<B>(&pool, &items).await {
            Ok(answers) => {
                for (reply, answer) in replies.drain(..).zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) if items.len() > 1 => {
                tracing::debug!(error = %e, calls = items.len(), "a batch of {} failed; running each alone", B::NAME);
                for (item, reply) in items.iter().zip(replies.drain(..)) {
                    let answer = together::<B>(&pool, std::slice::from_ref(item))
                        .await
                        .and_then(|mut a| a.pop().ok_or_else(|| no_answer::<B>()));
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        items.clear();
    }
}

/// Runs `items` of `B` in one transaction: one answer each, once committed.
async fn together<B: Batch>(pool: &PgPool, items: &[B::Item]) -> Result<Vec<B::Out>> {
    let mut tx = pool.begin().await?;
    let answers = B::run(&mut *tx, items).await?;
    if answers.len() != items.len() {
        return Err(no_answer::<B>());
    }
    tx.commit().await?;
    Ok(answers)
}

fn no_answer<B: Batch>() -> StoreError {
    StoreError::Backend(format!("a call of the {} went unanswered", B::NAME))
}

/// `INSERT INTO table (columns) SELECT * FROM UNNEST($1::type[], …) RETURNING id`: one statement
/// for any number of rows, each column bound as an array.
fn unnest(append: &Append) -> String {
    let names: Vec<&str> = append.columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = append
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let element = match kind {
                Kind::Int => "INT8",
                Kind::Bool => "BOOL",
                Kind::Text => "TEXT",
                Kind::Bytes => "BYTEA",
            };
            format!("${}::{element}[]", i + 1)
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) RETURNING id",
        append.table,
        names.join(", "),
        arrays.join(", ")
    )
}

/// Inserts `rows` in one statement (so one commit) and answers their ids in the rows' order.
///
/// `UNNEST` yields the rows in their arrays' order and the insert draws each row's id from the
/// table's sequence in that order, so the ids sorted ascending are the rows' ids in order,
/// whatever order `RETURNING` lists them in.
async fn insert_rows(
    pool: &PgPool,
    statement: &str,
    append: &Append,
    rows: &[Pending],
) -> Result<Vec<i64>> {
    let mut args = PgArguments::default();
    for (i, (name, kind)) in append.columns.iter().enumerate() {
        let mismatch = || {
            StoreError::Backend(format!(
                "a row appended to {} gives {name} a value that is not {kind:?}",
                append.table
            ))
        };
        let added = match kind {
            Kind::Int => args.add(array(rows, i, mismatch, |v| match v {
                Value::Int(v) => Some(*v),
                _ => None,
            })?),
            Kind::Bool => args.add(array(rows, i, mismatch, |v| match v {
                Value::Bool(v) => Some(*v),
                _ => None,
            })?),
            Kind::Text => args.add(array(rows, i, mismatch, |v| match v {
                Value::Text(v) => Some(v.as_ref()),
                _ => None,
            })?),
            Kind::Bytes => args.add(array(rows, i, mismatch, |v| match v {
                Value::Bytes(v) => Some(v.as_ref()),
                _ => None,
            })?),
        };
        added.map_err(|e| StoreError::Backend(format!("cannot bind a value: {e}")))?;
    }
    let mut ids: Vec<i64> = sqlx::query_scalar_with(statement, args)
        .fetch_all(pool)
        .await?;
    if ids.len() != rows.len() {
        return Err(StoreError::Backend(format!(
            "{} rows appended to {}, {} ids answered",
            rows.len(),
            append.table,
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Column `i` of every row, as the array bound for it: NULLs as `None`, and a value that
/// `pick` does not take (another type) as `mismatch`'s error.
fn array<'r, T>(
    rows: &'r [Pending],
    i: usize,
    mismatch: impl Fn() -> StoreError,
    pick: impl Fn(&'r Value<'static>) -> Option<T>,
) -> Result<Vec<Option<T>>> {
    rows.iter()
        .map(|row| match row.values.get(i) {
            Some(Value::Null(_)) => Ok(None),
            Some(v) => pick(v).map(Some).ok_or_else(&mismatch),
            None => Err(mismatch()),
        })
        .collect()
}

/// Tells the other processes on the database what a write made stale, inside its
/// transaction: delivered if it commits. A failure fails the write, which is rolled back, so
/// no node keeps a copy that a committed change made stale.
async fn announce(tx: &mut PgConnection, channel: &str, stale: &Invalidation) -> Result<()> {
    for payload in stale.items.iter().filter_map(Stale::payload) {
        tx.execute(q("SELECT pg_notify($1, $2)").bind(channel).bind(payload))
            .await?;
    }
    Ok(())
}

/// Runs `write` to its end in a task of its own, whether or not its caller waits for it.
async fn run_to_the_end<T: Send + 'static>(
    write: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(write)
        .await
        .map_err(|e| StoreError::Backend(format!("a write's task failed: {e}")))?
}

/// The channel on which nodes publish what they made stale ([`Stale::payload`]).
///
/// One per schema: gramkey installations that share a database in different schemas (tests
/// do) don't flush each other's caches. A channel name is at most 63 bytes.
fn channel(schema: &str) -> String {
    let mut name = format!("gramkey_cache.{schema}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// Applies to `cache` what other processes publish, until the cache is gone or the
/// connection is lost (then the caller flushes the cache and listens again).
async fn listen(pool: &PgPool, channel: &str, cache: &Weak<Cache>) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    // Listening now: whatever was cached before may have missed a notification.
    match cache.upgrade() {
        Some(cache) => cache.forget(&Stale::Everything),
        None => return Ok(()),
    }
    while let Some(notification) = listener.try_recv().await? {
        let Some(cache) = cache.upgrade() else {
            return Ok(());
        };
        cache.forget(&Stale::parse(notification.payload()));
    }
    tracing::warn!("lost the connection listening for other nodes' changes; listening again");
    Ok(())
}

fn arguments(q: &Query<'_>) -> Result<PgArguments> {
    let mut args = PgArguments::default();
    for value in &q.args {
        let added = match value {
            Value::Null(Kind::Int) => args.add(None::<i64>),
            Value::Null(Kind::Bool) => args.add(None::<bool>),
            Value::Null(Kind::Text) => args.add(None::<&str>),
            Value::Null(Kind::Bytes) => args.add(None::<&[u8]>),
            Value::Int(v) => args.add(*v),
            Value::Bool(v) => args.add(*v),
            Value::Text(v) => args.add(v.as_ref()),
            Value::Bytes(v) => args.add(v.as_ref()),
        };
        added.map_err(|e| StoreError::Backend(format!("cannot bind a value: {e}")))?;
    }
    Ok(args)
}

fn row(r: &PgRow) -> Result<Row> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        values.push(match column.type_info().name() {
            "INT8" => r
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null(Kind::Int), Value::Int),
            "INT4" => r
                .try_get::<Option<i32>, _>(i)?
                .map_or(Value::Null(Kind::Int), |v| Value::Int(i64::from(v))),
            "INT2" => r
                .try_get::<Option<i16>, _>(i)?
                .map_or(Value::Null(Kind::Int), |v| Value::Int(i64::from(v))),
            "BOOL" => r
                .try_get::<Option<bool>, _>(i)?
                .map_or(Value::Null(Kind::Bool), Value::Bool),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => r
                .try_get::<Option<String>, _>(i)?
                .map_or(Value::Null(Kind::Text), |v| Value::Text(v.into())),
            "BYTEA" => r
                .try_get::<Option<Vec<u8>>, _>(i)?
                .map_or(Value::Null(Kind::Bytes), |v| Value::Bytes(v.into())),
            "VOID" => Value::Null(Kind::Int),
            other => {
                return Err(StoreError::Backend(format!(
                    "column {i} has type {other}, which the store does not read"
                )));
            }
        });
    }
    Ok(Row(values))
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
const APP_LOCK: i64 = 7001;
const USER_LOCK: i64 = 7002;

impl Conn for PgConnection {
    const DIALECT: Dialect = Dialect::Postgres;

    async fn execute(&mut self, q: Query<'_>) -> Result<u64> {
        let args = arguments(&q)?;
        let done = sqlx::query_with(&q.sql, args).execute(&mut *self).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_optional(&mut self, q: Query<'_>) -> Result<Option<Row>> {
        let args = arguments(&q)?;
        let found = sqlx::query_with(&q.sql, args)
            .fetch_optional(&mut *self)
            .await?;
        found.as_ref().map(row).transpose()
    }

    async fn fetch_all(&mut self, q: Query<'_>) -> Result<Vec<Row>> {
        let args = arguments(&q)?;
        let rows = sqlx::query_with(&q.sql, args).fetch_all(&mut *self).await?;
        rows.iter().map(row).collect()
    }

    fn lock(&mut self, lock: Lock<'_>) -> impl Future<Output = Result<()>> + Send {
        let statement = match lock {
            Lock::Derivation(parents) => {
                // The parents' rows too, in hash order: two batches deriving from the same
                // parents on two nodes take them in the same order, so neither waits for the
                // other in a cycle.
                let mut sql = String::from(
                    "SELECT pg_advisory_xact_lock_shared($1::INT4, hashtext(app_id)),
                            pg_advisory_xact_lock_shared($2::INT4, hashtext(COALESCE(user_id, 0)::TEXT))
                     FROM tokens WHERE hash IN (",
                );
                placeholders(&mut sql, 3..=parents.len() + 2);
                sql.push_str(") ORDER BY hash FOR UPDATE");
                let locks = q(sql).bind(APP_LOCK).bind(USER_LOCK);
                parents.iter().fold(locks, |q, parent| q.bind(&parent.0))
            }
            Lock::App(app) => q("SELECT pg_advisory_xact_lock($1::INT4, hashtext($2))")
                .bind(APP_LOCK)
                .bind(app.as_str()),
            Lock::User(user) => {
                q("SELECT pg_advisory_xact_lock($1::INT4, hashtext($2::BIGINT::TEXT))")
                    .bind(USER_LOCK)
                    .bind(user.0)
            }
            Lock::UserOfToken(hash) => q(
                "SELECT pg_advisory_xact_lock($1::INT4, hashtext(COALESCE(user_id, 0)::TEXT))
                 FROM tokens WHERE hash = $2",
            )
            .bind(USER_LOCK)
            .bind(&hash.0),
            // Publications of one user queue on the user's row, so two at the cap cannot both
            // pass.
            Lock::Publishing(user) => {
                q("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(user.0)
            }
        };
        async move {
            self.fetch_all(statement).await?;
            Ok(())
        }
    }
}
