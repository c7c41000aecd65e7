//! The query layer both engines speak, and the one store built on it.
//!
//! Every store operation is written once, in the modules below ([`SqlStore`]'s trait
//! implementations, one module per aggregate), against [`Conn`]: a connection that runs a
//! [`Query`] (SQL with `$1`-style placeholders and its bound [`Value`]s) and answers rows of
//! [`Value`]s. The SQL is portable: `CASE` rather than `LEAST`/`MIN`, `CAST(… AS …)` rather than
//! `::`, keys rather than `rowid`.
//!
//! An [`Engine`] supplies what genuinely differs between SQLite and PostgreSQL:
//! - how a read gets a connection, and how a write runs: SQLite's single writer thread with its
//!   group commit, PostgreSQL's pool with a transaction where the operation needs one;
//! - row locks (`FOR UPDATE`, `FOR SHARE`, `SKIP LOCKED`), which SQLite's single writer makes
//!   unnecessary: [`Conn::DIALECT`] and [`Dialect::suffix`];
//! - advisory locks that serialize derivation and revocation on PostgreSQL ([`Lock`]), no-ops on
//!   SQLite;
//! - binding, decoding and error mapping ([`crate::sqlite`], [`crate::postgres`]).
//!
//! Adding an operation is one method here; an engine is touched only when it needs a lock or a
//! statement the other does not.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::ops::DerefMut;
use std::pin::Pin;

use std::sync::{Arc, Weak};
use std::time::Duration;

use gramkey_domain::{AppId, CommentId, ContainerId, MediaId, TokenHash, UserId};

use crate::cached::{Cache, Memo, Stale};
use crate::{Result, StoreError};

mod access;
mod apps;
mod callbacks;
mod content;
mod grants;
mod monitor;
mod users;
mod webhooks;

/// Which engine a statement runs on, for the few clauses only one of them has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `clause` on PostgreSQL (a row lock such as `FOR UPDATE SKIP LOCKED`), nothing on SQLite,
    /// whose single writer already runs every write alone.
    pub(crate) fn suffix(self, clause: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => clause,
        }
    }
}

/// The type of a NULL, which PostgreSQL needs to know when it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
    Text,
    Bytes,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null(Kind),
    Int(i64),
    Bool(bool),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
}

impl Value<'_> {
    fn kind_name(&self) -> &'static str {
        match self {
            Value::Null(_) => "NULL",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// What can be bound to a placeholder.
pub trait Bind<'a> {
    fn value(self) -> Value<'a>;
}

/// A bindable type's kind, for its NULL.
pub trait Typed {
    const KIND: Kind;
}

macro_rules! bind {
    ($($t:ty => $kind:ident, |$v:ident| $e:expr;)*) => {$(
        impl<'a> Bind<'a> for $t {
            fn value(self) -> Value<'a> {
                let $v = self;
                $e
            }
        }
        impl<'a> Typed for $t {
            const KIND: Kind = Kind::$kind;
        }
    )*};
}

bind! {
    i64 => Int, |v| Value::Int(v);
    u32 => Int, |v| Value::Int(i64::from(v));
    bool => Bool, |v| Value::Bool(v);
    &'a str => Text, |v| Value::Text(Cow::Borrowed(v));
    &'a String => Text, |v| Value::Text(Cow::Borrowed(v.as_str()));
    String => Text, |v| Value::Text(Cow::Owned(v));
    &'a [u8] => Bytes, |v| Value::Bytes(Cow::Borrowed(v));
    &'a Vec<u8> => Bytes, |v| Value::Bytes(Cow::Borrowed(v.as_slice()));
    Vec<u8> => Bytes, |v| Value::Bytes(Cow::Owned(v));
    &'a [u8; 32] => Bytes, |v| Value::Bytes(Cow::Borrowed(v.as_slice()));
}

impl<'a, T: Bind<'a> + Typed> Bind<'a> for Option<T> {
    fn value(self) -> Value<'a> {
        match self {
            Some(v) => v.value(),
            None => Value::Null(T::KIND),
        }
    }
}

impl<'a> Bind<'a> for &'a Option<String> {
    fn value(self) -> Value<'a> {
        self.as_deref().value()
    }
}

impl<'a> Bind<'a> for &'a Option<Vec<u8>> {
    fn value(self) -> Value<'a> {
        self.as_deref().value()
    }
}

/// Graph object ids are stored as their text.
macro_rules! graph_ids {
    ($($t:ty),*) => {$(
        impl<'a> Bind<'a> for &'a $t {
            fn value(self) -> Value<'a> {
                Value::Text(Cow::Borrowed(self.as_str()))
            }
        }
        impl<'a> Typed for &'a $t {
            const KIND: Kind = Kind::Text;
        }
        impl<'a> Bind<'a> for &'a Option<$t> {
            fn value(self) -> Value<'a> {
                self.as_ref().value()
            }
        }
        impl FromValue for $t {
            fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
                String::from_value(value).map(<$t>::stored)
            }
        }
    )*};
}

graph_ids!(MediaId, CommentId, ContainerId);

/// A statement with `$1`, `$2`, … placeholders, and the values bound to them in that order.
#[derive(Debug)]
pub struct Query<'a> {
    pub sql: Cow<'a, str>,
    pub args: Vec<Value<'a>>,
}

/// A query of `sql`, to [`bind`](Query::bind) values to.
pub(crate) fn q<'a>(sql: impl Into<Cow<'a, str>>) -> Query<'a> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl<'a> Query<'a> {
    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Bind<'a>) -> Self {
        self.args.push(value.value());
        self
    }
}

/// A table that callers append rows to, each caller answered with its row's id once the row
/// is committed: issued tokens and audit events. Rows of concurrent callers may be inserted
/// together ([`Engine::append`]).
#[derive(Debug)]
pub struct Append {
    pub table: &'static str,
    /// The columns a row gives, in order, and their types.
    pub columns: &'static [(&'static str, Kind)],
}

impl Append {
    /// The statement inserting one row of `values` (in [`Append::columns`]' order) and
    /// answering its id.
    pub(crate) fn row<'a>(&self, values: Vec<Value<'a>>) -> Query<'a> {
        self.rows([values])
    }

    /// The statement inserting `rows` and answering their ids (in no set order).
    pub(crate) fn rows<'a>(&self, rows: impl IntoIterator<Item = Vec<Value<'a>>>) -> Query<'a> {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", self.table, names.join(", "));
        let mut args = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            let first = args.len() + 1;
            args.extend(row);
            placeholders(&mut sql, first..=args.len());
            sql.push(')');
        }
        sql.push_str(" RETURNING id");
        Query {
            sql: sql.into(),
            args,
        }
    }
}

/// Appends `$a, $b, …` to `sql`, for the numbers in `range`.
pub(crate) fn placeholders(sql: &mut String, range: std::ops::RangeInclusive<usize>) {
    for i in range.clone() {
        let _ = std::write!(sql, "{}${i}", if i == *range.start() { "" } else { ", " });
    }
}

/// An operation whose concurrent calls an engine may run together, in one transaction, each
/// caller answered after the commit ([`Engine::batch`]): code redemptions and token
/// derivations. Nothing it does needs announcing to other processes; what would (a replayed
/// code's revocation) it leaves to run alone ([`Together::Alone`]).
pub trait Batch: 'static {
    type Item: Send + Sync + 'static;
    type Out: Send + 'static;
    /// What the batch does, for errors.
    const NAME: &'static str;
    /// Runs `items` on `c`, inside one transaction: one answer per item, in their order. An
    /// `Err` rolls the whole batch back.
    fn run<'c, C: Conn>(c: &'c mut C, items: &'c [Self::Item]) -> Work<'c, Vec<Self::Out>>;
}

/// A [`Batch`] call's answer.
#[derive(Debug)]
pub enum Together<T> {
    Done(T),
    /// The batch could not decide this call (its code or token is used earlier in the same
    /// batch, say): the caller runs it alone.
    Alone,
}

/// A row as read: its columns in order. Columns are taken out with [`Row::get`].
#[derive(Debug, Default)]
pub struct Row(pub Vec<Value<'static>>);

/// What a column can be read as.
pub trait FromValue: Sized {
    /// The value as `Self`, or the value back when it is not one.
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>>;
}

impl FromValue for i64 {
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
        match value {
            Value::Int(v) => Ok(v),
            v => Err(v),
        }
    }
}

impl FromValue for bool {
    /// SQLite stores booleans as 0 and 1.
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
        match value {
            Value::Bool(v) => Ok(v),
            Value::Int(v) => Ok(v != 0),
            v => Err(v),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
        match value {
            Value::Text(v) => Ok(v.into_owned()),
            v => Err(v),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
        match value {
            Value::Bytes(v) => Ok(v.into_owned()),
            v => Err(v),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value<'static>) -> Result<Self, Value<'static>> {
        match value {
            Value::Null(_) => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl Row {
    /// Takes column `i` out of the row as a `T`; a missing column or another type is a store
    /// error (the schema and the code disagree).
    pub fn get<T: FromValue>(&mut self, i: usize) -> Result<T> {
        let value = self
            .0
            .get_mut(i)
            .map(|v| std::mem::replace(v, Value::Null(Kind::Int)))
            .ok_or_else(|| StoreError::Backend(format!("no column {i} in the row")))?;
        T::from_value(value).map_err(|value| {
            StoreError::Backend(format!(
                // The kind only: a column may hold a secret's hash.
                "column {i} holds {}, not {}",
                value.kind_name(),
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A lock an operation takes before it reads, where the engine needs one to serialize with
/// concurrent operations. SQLite's single writer runs every write alone and takes none.
#[derive(Debug, Clone, Copy)]
pub enum Lock<'a> {
    /// Deriving tokens from these: their apps' and their users' locks, shared.
    Derivation(&'a [TokenHash]),
    /// Revoking an app's tokens: the app's lock, exclusive.
    App(&'a AppId),
    /// Revoking a user's tokens (or an app-user pair's): the user's lock, exclusive.
    User(UserId),
    /// Revoking a token's family: its user's lock, exclusive.
    UserOfToken(&'a TokenHash),
    /// Publishing as this user: counting the quota and posting happen alone.
    Publishing(UserId),
}

/// One connection (or transaction) of an engine.
pub trait Conn: Send {
    const DIALECT: Dialect;
    /// Runs a statement; how many rows it changed.
    fn execute(&mut self, q: Query<'_>) -> impl Future<Output = Result<u64>> + Send;
    fn fetch_optional(&mut self, q: Query<'_>) -> impl Future<Output = Result<Option<Row>>> + Send;
    fn fetch_all(&mut self, q: Query<'_>) -> impl Future<Output = Result<Vec<Row>>> + Send;
    /// Takes `lock` until the transaction ends.
    fn lock(&mut self, lock: Lock<'_>) -> impl Future<Output = Result<()>> + Send;

    /// The one row a statement must answer.
    fn fetch_one(&mut self, q: Query<'_>) -> impl Future<Output = Result<Row>> + Send {
        async move {
            self.fetch_optional(q)
                .await?
                .ok_or_else(|| StoreError::Backend("the statement answered no row".into()))
        }
    }

    /// A count (`SELECT COUNT(*) …`).
    fn count(&mut self, q: Query<'_>) -> impl Future<Output = Result<u64>> + Send {
        async move { Ok(count(self.fetch_one(q).await?.get(0)?)) }
    }
}

/// The work of a write: given the connection, a future of its result.
pub type Work<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

type StaleOf<T> = Box<dyn FnOnce(&T) -> Vec<Stale> + Send>;

/// What a write makes stale, given its result ([`SqlStore::after`]), and the cache to drop it
/// from. The engine works out the stale items before the commit, so it can announce them in
/// the same transaction (PostgreSQL's `NOTIFY` is delivered only if the transaction commits),
/// and drops them from this store's cache after the commit, whether or not the caller still
/// waits.
pub struct After<T> {
    /// `None` for a write that makes nothing stale ([`nothing`]).
    stale_of: Option<StaleOf<T>>,
    cache: Option<Arc<Cache>>,
}

impl<T> After<T> {
    /// Whether the write may make something stale; if not, there is nothing to announce.
    pub(crate) fn may_invalidate(&self) -> bool {
        self.stale_of.is_some()
    }
    /// What the write made stale.
    pub(crate) fn stale(self, done: &T) -> Invalidation {
        Invalidation {
            items: self.stale_of.map(|f| f(done)).unwrap_or_default(),
            cache: self.cache,
        }
    }
}

/// What a write made stale, not yet dropped from this store's cache.
#[must_use = "forget it once the write has committed"]
pub struct Invalidation {
    pub(crate) items: Vec<Stale>,
    cache: Option<Arc<Cache>>,
}

impl Invalidation {
    /// Drops it from this store's cache: call it after the commit, or a read in between could
    /// cache the old row again.
    pub(crate) fn forget(self) {
        if let Some(cache) = &self.cache {
            self.items.iter().for_each(|s| cache.forget(s));
        }
    }
}

/// How an engine reads and writes.
pub trait Engine: Send + Sync + 'static {
    type Conn: Conn;
    type Reader<'a>: DerefMut<Target = Self::Conn> + Send
    where
        Self: 'a;

    /// A connection for reads.
    fn reader(&self) -> impl Future<Output = Result<Self::Reader<'_>>> + Send;

    /// Runs `work`, whose statements need not be atomic together (a single statement, mostly).
    /// What it made stale (`after`) is announced to the other processes on the database with
    /// the commit, and dropped from this store's cache after it, whether or not the caller
    /// still waits.
    fn write<T, F>(&self, work: F, after: After<T>) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn) -> Work<'c, T> + Send + 'static;

    /// Runs `work` in one transaction, committed when it answers `Ok`, rolled back otherwise;
    /// `after` as [`Engine::write`] says.
    fn transaction<T, F>(&self, work: F, after: After<T>) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn) -> Work<'c, T> + Send + 'static;

    /// Appends one row of `values` to `append`'s table, in autocommit, and answers its id once
    /// it is committed. An engine may batch the rows of concurrent callers into one statement
    /// and one commit; a row that cannot be inserted fails its own caller only.
    fn append(
        &self,
        append: &'static Append,
        values: Vec<Value<'static>>,
    ) -> impl Future<Output = Result<i64>> + Send {
        self.write(
            move |c| Box::pin(async move { c.fetch_one(append.row(values)).await?.get(0) }),
            nothing(),
        )
    }

    /// Runs one call of a [`Batch`] operation and answers its result once committed. An engine
    /// may run concurrent calls together, in one transaction; if that batch fails, each call
    /// is run again alone, so one call at fault fails only its own caller.
    fn batch<B: Batch>(&self, item: B::Item) -> impl Future<Output = Result<B::Out>> + Send {
        self.transaction(
            move |c| {
                Box::pin(async move {
                    B::run(c, std::slice::from_ref(&item))
                        .await?
                        .pop()
                        .ok_or_else(|| {
                            StoreError::Backend(format!("no answer from the {}", B::NAME))
                        })
                })
            },
            nothing(),
        )
    }

    /// Starts a task that applies to `cache`, while it lives, what other processes publish;
    /// `None` where the engine has no way to hear them.
    fn follow(&self, cache: Weak<Cache>) -> Option<tokio::task::JoinHandle<()>>;
}

/// The store, on either engine: every trait of the family, implemented once, with an optional
/// read-through cache of apps, users and tokens ([`crate::cached`]).
pub struct SqlStore<E> {
    pub(crate) engine: E,
    cache: Option<Arc<Cache>>,
    /// The task keeping the cache in step with other processes; stopped with the store (when
    /// this is dropped).
    _follower: Option<Follower>,
}

struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<E: Engine> SqlStore<E> {
    pub(crate) fn new(engine: E) -> Self {
        Self {
            engine,
            cache: None,
            _follower: None,
        }
    }

    /// Serves apps, users and tokens from memory for up to `ttl` (none when it is zero), and
    /// follows what other processes on the database publish as stale, where the engine can.
    /// Call it inside the Tokio runtime that will run the store.
    pub fn cached(self, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| Arc::new(Cache::new(ttl)));
        let follower = cache
            .as_ref()
            .and_then(|c| self.engine.follow(Arc::downgrade(c)))
            .map(Follower);
        Self {
            cache,
            _follower: follower,
            ..self
        }
    }

    /// Reads `key` through the cache `which` picks, if there is a cache.
    pub(crate) async fn through<K, V>(
        &self,
        which: fn(&Cache) -> &Memo<K, V>,
        key: K,
        read: impl Future<Output = Result<Option<V>>>,
    ) -> Result<Option<V>>
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        match &self.cache {
            Some(cache) => cache.through(which(cache), key, read).await,
            None => read.await,
        }
    }

    /// Drops `stale` from this store's cache, if it has one.
    pub(crate) fn forget(&self, stale: &Stale) {
        if let Some(cache) = &self.cache {
            cache.forget(stale);
        }
    }

    /// What a write makes stale: what `stale_of` names is announced to the other processes
    /// with the commit and dropped from this store's cache after it. That happens even if the
    /// caller has gone away meanwhile (a client that disconnects), so a write that committed
    /// never leaves a stale copy behind.
    pub(crate) fn after<T>(
        &self,
        stale_of: impl FnOnce(&T) -> Vec<Stale> + Send + 'static,
    ) -> After<T> {
        After {
            stale_of: Some(Box::new(stale_of)),
            cache: self.cache.clone(),
        }
    }
}

/// For a write that makes nothing cached stale.
pub(crate) fn nothing<T>() -> After<T> {
    After {
        stale_of: None,
        cache: None,
    }
}

/// A count as read.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// A count as stored.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Boxes a write's future: `write!(self, |c| body)`, or `write!(self, after, |c| body)` with
/// the hook that runs once it has committed ([`SqlStore::after`]). `transaction!` likewise.
macro_rules! write {
    ($store:expr, |$c:ident| $body:expr) => {
        $store.engine.write(
            move |$c| Box::pin(async move { $body }),
            $crate::sql::nothing(),
        )
    };
    ($store:expr, $after:expr, |$c:ident| $body:expr) => {
        $store
            .engine
            .write(move |$c| Box::pin(async move { $body }), $after)
    };
}

macro_rules! transaction {
    ($store:expr, |$c:ident| $body:expr) => {
        $store.engine.transaction(
            move |$c| Box::pin(async move { $body }),
            $crate::sql::nothing(),
        )
    };
    ($store:expr, $after:expr, |$c:ident| $body:expr) => {
        $store
            .engine
            .transaction(move |$c| Box::pin(async move { $body }), $after)
    };
}

pub(crate) use {transaction, write};
