//! The embedded SQLite engine, the default.
//!
//! - **Writes** go to one writer thread that owns the only writing connection. It takes every
//!   write waiting in its queue (up to [`MAX_BATCH`]), runs each in its own savepoint inside one
//!   transaction, commits once, and only then answers each caller. With `synchronous=FULL` every
//!   answered write is on disk, yet a burst of concurrent token requests costs one fsync, not one
//!   each (group commit). A write that fails rolls back its own savepoint only. Since writes run
//!   one at a time, no operation needs a row or advisory lock here.
//! - **Reads** use a pool of read-only connections and run inline on the calling task: an
//!   indexed lookup takes microseconds, less than a hop to a blocking thread would. WAL mode lets
//!   them run while the writer commits.
//!
//! The operations themselves are written once, in [`crate::sql`]; this module runs them.
//! rusqlite is synchronous, so every future a connection answers is ready at once: the writer
//! polls an operation's future once, and a read completes on its first poll.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Weak;
use std::task::{Context, Poll, Waker};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ToSql};
use tokio::sync::{mpsc, oneshot};

use crate::cached::{Cache, Stale};
use crate::sql::{
    After, Conn, Dialect, Engine, Kind, Lock, Query, Row, SqlStore, Value, Work, nothing,
};
use crate::{Result, StoreError};

/// The most writes committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// The store on SQLite.
pub type SqliteStore = SqlStore<Sqlite>;

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
    include_str!("../migrations/sqlite/0010_revoked_tokens.sql"),
    include_str!("../migrations/sqlite/0011_webhooks.sql"),
    include_str!("../migrations/sqlite/0012_sandbox_tools.sql"),
    include_str!("../migrations/sqlite/0013_device_flow.sql"),
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
    fn run(&mut self, conn: &mut Connection);
    /// Answers the caller once the batch has committed (or failed to).
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    after: After<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: for<'c> FnOnce(&'c mut Connection) -> Work<'c, T> + Send,
{
    fn run(&mut self, conn: &mut Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(in_savepoint(conn, |c| ready(work(c))));
        }
    }
    fn finish(self: Box<Self>, commit: Result<()>) {
        let this = *self;
        let outcome = commit.and_then(|()| {
            this.result
                .unwrap_or_else(|| Err(StoreError::Backend("write was not run".into())))
        });
        // Committed: the cache forgets what it made stale, here in the writer thread, whether
        // or not the caller still waits. Nobody else to tell (see `follow`).
        if let Ok(done) = &outcome {
            this.after.stale(done).forget();
        }
        // The caller may have gone away (its request was cancelled); nothing to do then.
        let _ = this.reply.send(outcome);
    }
}

/// The result of an operation's future, which on SQLite is ready on its first poll.
fn ready<T>(mut work: Work<'_, T>) -> Result<T> {
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Backend(
            "a SQLite write waited on something other than SQLite".into(),
        )),
    }
}

fn in_savepoint<T>(
    conn: &mut Connection,
    work: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

fn writer_loop(mut conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&mut conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, writes = batch.len(), "SQLite batch commit failed");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<()> {
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

/// The SQLite engine. Dropping it stops the writer.
pub struct Sqlite {
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: mpsc::Sender<Box<dyn Job>>,
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
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        // Switching a fresh file to WAL needs its exclusive lock, and SQLite answers "database
        // is locked" at once, without waiting, while another process opening the same file
        // holds a lock on it (`serve` and a CLI command started together): try again.
        let mut tries = 0;
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            ) {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy && tries < 250 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                done => break done?,
            }
        }
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
        Ok(SqlStore::new(Sqlite { readers, writer }))
    }
}

impl Sqlite {
    fn queue<T, F>(
        &self,
        work: F,
        after: After<T>,
    ) -> impl Future<Output = Result<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Connection) -> Work<'c, T> + Send + 'static,
    {
        queue(self.writer.clone(), work, after)
    }
}

/// Queues `work` for the writer thread; its result once its batch has committed.
async fn queue<T, F>(writer: mpsc::Sender<Box<dyn Job>>, work: F, after: After<T>) -> Result<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Connection) -> Work<'c, T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Box<dyn Job> = Box::new(TypedJob {
        work: Some(work),
        result: None,
        after,
        reply,
    });
    writer
        .send(job)
        .await
        .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Backend("the writer thread dropped a write".into()))?
}

/// How often a caching SQLite store asks whether another process wrote to the file.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Engine for Sqlite {
    type Conn = Connection;
    type Reader<'a> = r2d2::PooledConnection<SqliteConnectionManager>;

    fn reader(&self) -> impl Future<Output = Result<Self::Reader<'_>>> + Send {
        std::future::ready(self.readers.get().map_err(StoreError::from))
    }

    /// Every write is atomic here: it runs in its own savepoint of the batch.
    fn write<T, F>(&self, work: F, after: After<T>) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Connection) -> Work<'c, T> + Send + 'static,
    {
        self.queue(work, after)
    }

    fn transaction<T, F>(&self, work: F, after: After<T>) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Connection) -> Work<'c, T> + Send + 'static,
    {
        self.queue(work, after)
    }

    /// Processes sharing a SQLite file (the CLI beside a server) have no channel to announce
    /// their writes on. Instead, every [`WATCH_EVERY`], this asks the writer's connection for `PRAGMA data_version`, which
    /// changes only when *another* connection has committed: another process (the CLI) wrote
    /// to the file. What it wrote is not known, so the whole cache is dropped. This server's
    /// own writes leave it alone: they already said what they made stale.
    fn follow(&self, cache: Weak<Cache>) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // Weak: the watch must not keep the writer thread alive after the store is gone.
        let writer = self.writer.downgrade();
        Some(runtime.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = None;
            loop {
                tick.tick().await;
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                let version = queue(
                    writer,
                    |c| {
                        let v = c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0));
                        Box::pin(std::future::ready(v.map_err(StoreError::from)))
                    },
                    nothing(),
                )
                .await;
                let Some(cache) = cache.upgrade() else {
                    return;
                };
                match version {
                    Ok(v) => {
                        if last.is_some_and(|last| last != v) {
                            cache.forget(&Stale::Everything);
                        }
                        last = Some(v);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot ask SQLite whether another process wrote"),
                }
            }
        }))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as V;
        Ok(match self {
            Value::Null(_) => ToSqlOutput::Owned(V::Null),
            Value::Int(v) => ToSqlOutput::Owned(V::Integer(*v)),
            Value::Bool(v) => ToSqlOutput::Owned(V::Integer(i64::from(*v))),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

/// The statement for `q`, from the connection's cache, with its values bound. SQLite numbers a
/// `$N` placeholder by its first appearance, not by N, so each is bound by its name.
fn prepare<'c>(c: &'c Connection, q: &Query<'_>) -> Result<CachedStatement<'c>> {
    let mut stmt = c.prepare_cached(&q.sql)?;
    for i in 1..=stmt.parameter_count() {
        let value = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .and_then(|n| q.args.get(n.checked_sub(1)?))
            .ok_or_else(|| {
                StoreError::Backend(format!("placeholder {i} of a statement has no value"))
            })?;
        stmt.raw_bind_parameter(i, value)?;
    }
    Ok(stmt)
}

fn rows(c: &Connection, q: &Query<'_>, limit: usize) -> Result<Vec<Row>> {
    let mut stmt = prepare(c, q)?;
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null(Kind::Int),
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Text(v) => Value::Text(
                    String::from_utf8(v.to_vec())
                        .map_err(|_| StoreError::Backend(format!("column {i} is not UTF-8")))?
                        .into(),
                ),
                ValueRef::Blob(v) => Value::Bytes(v.to_vec().into()),
                ValueRef::Real(_) => {
                    return Err(StoreError::Backend(format!("column {i} is a real number")));
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

/// rusqlite is synchronous: each method runs its statement when called and answers a future
/// that is already ready.
impl Conn for Connection {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn execute(&mut self, q: Query<'_>) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(
            prepare(self, &q).and_then(|mut s| Ok(u64::try_from(s.raw_execute()?).unwrap_or(0))),
        )
    }

    fn fetch_optional(&mut self, q: Query<'_>) -> impl Future<Output = Result<Option<Row>>> + Send {
        std::future::ready(rows(self, &q, 1).map(|r| r.into_iter().next()))
    }

    fn fetch_all(&mut self, q: Query<'_>) -> impl Future<Output = Result<Vec<Row>>> + Send {
        std::future::ready(rows(self, &q, usize::MAX))
    }

    fn lock(&mut self, _: Lock<'_>) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}
