//! Consent, authorization codes and tokens.

use async_trait::async_trait;
use gramkey_domain::callback::CallbackKind;
use gramkey_domain::code::{CodeChallenge, CodeIssue, CodeRefusal};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::retention::Cutoffs;
use gramkey_domain::{
    AppId, AppMode, Flavour, ScopeSet, ScopedUserId, TokenHash, TokenKind, UnixTime, UserId,
};

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::users::{USER_COLUMNS, user_from_row};
use super::{
    Append, Batch, Bind, Conn, Engine, Kind, Lock, Query, Row, SqlStore, Together, Value, Work,
    placeholders, q, transaction, write,
};
use crate::cached::Stale;
use crate::records::{corrupt, judge_claim};
use crate::{
    AppFacts, Caller, CodeClaim, CodeRecord, Derivation, DeviceAuthorization, DeviceDecision,
    Grant, GrantStore, NewCode, NewDeviceAuthorization, NewToken, Purged, Redemption, Removal,
    Result, Revoke, StoreError, TokenRecord,
};
use gramkey_domain::device::{DeviceState, Poll, PollFacts, judge_poll};

const GRANT_COLUMNS: &str = "app_id, user_id, scoped_id, scopes, granted_at";

fn grant_from_row(r: &mut Row) -> Result<Grant> {
    let app: String = r.get(0)?;
    let scoped: String = r.get(2)?;
    Ok(Grant {
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: UserId(r.get(1)?),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        scopes: ScopeSet::from_stored(&r.get::<String>(3)?),
        granted_at: r.get(4)?,
    })
}

/// A code from the first eight columns of an `auth_codes` row (app, user, scoped id, redirect
/// URI, scopes, challenge, created, expires).
fn code_from_row(r: &mut Row, hash: TokenHash) -> Result<CodeRecord> {
    let app: String = r.get(0)?;
    let scoped: String = r.get(2)?;
    let challenge: Option<String> = r.get(5)?;
    Ok(CodeRecord {
        hash,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: UserId(r.get(1)?),
        scoped_id: ScopedUserId::parse(&scoped).ok_or_else(|| corrupt("scoped id", &scoped))?,
        redirect_uri: r.get(3)?,
        scopes: ScopeSet::from_stored(&r.get::<String>(4)?),
        code_challenge: challenge.as_deref().map(CodeChallenge::from_stored),
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

/// The columns [`token_from_row`] reads, of `tokens t` and `grants g`.
const TOKEN_COLUMNS: &str = "t.id, t.kind, t.flavour, t.app_id, t.user_id, g.scoped_id, \
     t.scopes, t.issued_at, t.expires_at, t.revoke_reason, t.revoked_at, t.exchanged_at";

/// A token by its hash (`$1`), with its user's app-scoped id.
static TOKEN_QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS}
         FROM tokens t LEFT JOIN grants g ON g.app_id = t.app_id AND g.user_id = t.user_id
         WHERE t.hash = $1"
    )
});

/// A token by its hash (`$1`) with its app's facts (columns 12–14) and its user (from 15 on,
/// all NULL for an app token): what [`GrantStore::caller`] reads.
static CALLER_QUERY: LazyLock<String> = LazyLock::new(|| {
    let user: Vec<String> = USER_COLUMNS
        .split(", ")
        .map(|c| format!("u.{}", c.trim()))
        .collect();
    format!(
        "SELECT {TOKEN_COLUMNS}, a.mode, a.clock_offset, a.fault_rules, {}
         FROM tokens t JOIN apps a ON a.id = t.app_id
         LEFT JOIN grants g ON g.app_id = t.app_id AND g.user_id = t.user_id
         LEFT JOIN users u ON u.id = t.user_id
         WHERE t.hash = $1",
        user.join(", ")
    )
});

/// A token from `SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN grants g` (see
/// [`GrantStore::token`]).
fn token_from_row(r: &mut Row) -> Result<TokenRecord> {
    let kind: String = r.get(1)?;
    let flavour: String = r.get(2)?;
    let app: String = r.get(3)?;
    let reason: Option<String> = r.get(9)?;
    let revoked_at: Option<i64> = r.get(10)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt("token kind", &kind))?,
        flavour: Flavour::parse(&flavour).ok_or_else(|| corrupt("token flavour", &flavour))?,
        app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
        user_id: r.get::<Option<i64>>(4)?.map(UserId),
        scoped_id: r
            .get::<Option<String>>(5)?
            .as_deref()
            .and_then(ScopedUserId::parse),
        scopes: ScopeSet::from_stored(&r.get::<String>(6)?),
        issued_at: r.get(7)?,
        expires_at: r.get(8)?,
        revoked: revoked_at.map(|_| RevokeReason::parse(reason.as_deref().unwrap_or_default())),
        exchanged: r.get::<Option<i64>>(11)?.is_some(),
    })
}

/// Revokes what earlier refreshes of a token made (its children and theirs): `$1` is the
/// revocation time, `$2` the refreshed token's id. Answers the hashes it revoked.
const SUPERSEDE: &str = "WITH RECURSIVE earlier(id) AS (
         SELECT id FROM tokens WHERE parent_id = $2
         UNION ALL SELECT t.id FROM tokens t JOIN earlier e ON t.parent_id = e.id)
     UPDATE tokens SET revoked_at = $1, revoke_reason = 'revoked'
     WHERE id IN (SELECT id FROM earlier) AND revoked_at IS NULL
     RETURNING hash";

/// Issued tokens, as [`token_row`] gives them.
static TOKENS: Append = Append {
    table: "tokens",
    columns: &[
        ("hash", Kind::Bytes),
        ("kind", Kind::Text),
        ("flavour", Kind::Text),
        ("app_id", Kind::Text),
        ("user_id", Kind::Int),
        ("scopes", Kind::Text),
        ("issued_at", Kind::Int),
        ("expires_at", Kind::Int),
        ("parent_id", Kind::Int),
    ],
};

/// A token's row of [`TOKENS`].
fn token_row(token: &NewToken, parent_id: Option<i64>) -> Vec<Value<'static>> {
    vec![
        token.hash.0.to_vec().value(),
        token.kind.as_str().value(),
        token.flavour.as_str().value(),
        token.app_id.as_str().to_owned().value(),
        token.user_id.map(|u| u.0).value(),
        token.scopes.to_stored().value(),
        token.issued_at.value(),
        token.expires_at.value(),
        parent_id.value(),
    ]
}

/// Inserts a token inside a transaction; returns its id.
async fn insert_token(c: &mut impl Conn, token: &NewToken, parent_id: Option<i64>) -> Result<i64> {
    c.fetch_one(TOKENS.row(token_row(token, parent_id)))
        .await?
        .get(0)
}

/// The record of a token just issued.
fn issued(id: i64, token: NewToken, scoped_id: Option<ScopedUserId>) -> TokenRecord {
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
/// codes (they would mint fresh tokens after the revocation). Anything wider than one token
/// takes its lock first (see [`Lock`]).
async fn revoke_in<C: Conn>(
    c: &mut C,
    which: &Revoke,
    reason: RevokeReason,
    now: UnixTime,
) -> Result<u64> {
    const SET: &str =
        "UPDATE tokens SET revoked_at = $1, revoke_reason = $2 WHERE revoked_at IS NULL AND";
    // The codes' rows are locked in hash order, as a batch of redemptions locks them
    // ([`Redeem`]), so the two never wait for each other in a cycle.
    let burn = |codes: &str| {
        q(format!(
            "UPDATE auth_codes SET redeemed_at = $1 WHERE hash IN (
                 SELECT hash FROM auth_codes WHERE redeemed_at IS NULL AND {codes}
                 ORDER BY hash{})",
            C::DIALECT.suffix(" FOR UPDATE")
        ))
    };
    match which {
        Revoke::Token(_) => {}
        Revoke::App(a) => c.lock(Lock::App(a)).await?,
        Revoke::AppUser(_, u) | Revoke::User(u) => c.lock(Lock::User(*u)).await?,
        Revoke::Family(h) => c.lock(Lock::UserOfToken(h)).await?,
    }
    let r = reason.as_str();
    Ok(match which {
        Revoke::Token(h) => {
            c.execute(q(format!("{SET} hash = $3")).bind(now).bind(r).bind(&h.0))
                .await?
        }
        Revoke::App(a) => {
            c.execute(burn("app_id = $2").bind(now).bind(a.as_str()))
                .await?;
            c.execute(
                q(format!("{SET} app_id = $3"))
                    .bind(now)
                    .bind(r)
                    .bind(a.as_str()),
            )
            .await?
        }
        Revoke::AppUser(a, u) => {
            c.execute(
                burn("app_id = $2 AND user_id = $3")
                    .bind(now)
                    .bind(a.as_str())
                    .bind(u.0),
            )
            .await?;
            c.execute(
                q(format!("{SET} app_id = $3 AND user_id = $4"))
                    .bind(now)
                    .bind(r)
                    .bind(a.as_str())
                    .bind(u.0),
            )
            .await?
        }
        Revoke::User(u) => {
            c.execute(burn("user_id = $2").bind(now).bind(u.0))
                .await?;
            c.execute(q(format!("{SET} user_id = $3")).bind(now).bind(r).bind(u.0))
                .await?
        }
        // Up the `parent_id` chain to the token issued from the code, then down to everything
        // derived from it.
        Revoke::Family(h) => {
            c.execute(
                q(format!(
                    "WITH RECURSIVE
                         up(id, parent_id) AS (
                             SELECT id, parent_id FROM tokens WHERE hash = $3
                             UNION SELECT t.id, t.parent_id FROM tokens t JOIN up ON t.id = up.parent_id),
                         down(id) AS (
                             SELECT id FROM up WHERE parent_id IS NULL
                             UNION SELECT t.id FROM tokens t JOIN down ON t.parent_id = down.id)
                     {SET} id IN (SELECT id FROM down)"
                ))
                .bind(now)
                .bind(r)
                .bind(&h.0),
            )
            .await?
        }
    })
}

/// Code redemptions, run together: one read of every code (locked, in hash order, so two
/// batches on different nodes cannot deadlock), one insert of every token, one update of every
/// code. Of two redemptions of one code, the second waits for the first's batch to commit.
///
/// A code already redeemed (before, or earlier in the same batch) is a replay, whose
/// revocation of the tokens issued from it runs alone ([`GrantStore::redeem_code`]).
pub(crate) struct Redeem;

impl Batch for Redeem {
    type Item = (TokenHash, CodeClaim);
    type Out = Together<Redemption>;
    const NAME: &'static str = "code redemptions";

    fn run<'c, C: Conn>(c: &'c mut C, items: &'c [Self::Item]) -> Work<'c, Vec<Self::Out>> {
        Box::pin(redeem_together(c, items))
    }
}

/// A redemption's verdict, before its tokens have ids.
enum Verdict {
    /// Answered without a write: an unknown code, or a replay (alone).
    Done(Together<Redemption>),
    /// The code is burned without a token.
    Refused(CodeRefusal),
    /// The code gives these tokens (the access token first).
    Issue {
        rows: Vec<NewToken>,
        issue: CodeIssue,
        scoped_id: ScopedUserId,
    },
}

async fn redeem_together<C: Conn>(
    c: &mut C,
    items: &[(TokenHash, CodeClaim)],
) -> Result<Vec<Together<Redemption>>> {
    let mut sql = String::from(
        "SELECT app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge, created_at,
             expires_at, redeemed_at, hash
         FROM auth_codes WHERE hash IN (",
    );
    placeholders(&mut sql, 1..=items.len());
    sql.push_str(") ORDER BY hash");
    sql.push_str(C::DIALECT.suffix(" FOR UPDATE"));
    let mut select = q(sql);
    for (hash, _) in items {
        select = select.bind(&hash.0);
    }
    let mut codes = HashMap::with_capacity(items.len());
    for mut row in c.fetch_all(select).await? {
        let hash = stored_hash(row.get(9)?)?;
        let unredeemed = row.get::<Option<i64>>(8)?.is_none();
        let code = unredeemed
            .then(|| code_from_row(&mut row, hash))
            .transpose()?;
        codes.insert(hash, code);
    }

    // In the callers' order: a code's first claim takes it, later ones are replays.
    let verdicts: Vec<Verdict> = items
        .iter()
        .map(
            |(hash, claim)| match codes.get_mut(hash).map(Option::take) {
                None => Verdict::Done(Together::Done(Redemption::NotFound)),
                Some(None) => Verdict::Done(Together::Alone),
                Some(Some(code)) => match judge_claim(&code, claim) {
                    Ok((rows, issue)) => Verdict::Issue {
                        rows,
                        issue,
                        scoped_id: code.scoped_id,
                    },
                    Err(refusal) => Verdict::Refused(refusal),
                },
            },
        )
        .collect();

    // The access tokens, then what hangs under them (refresh tokens, for apps that opted in).
    let issuing = || {
        verdicts.iter().filter_map(|v| match v {
            Verdict::Issue { rows, .. } => Some(rows),
            _ => None,
        })
    };
    let firsts = issuing().filter_map(|rows| rows.first());
    let ids = insert_rows(c, firsts.map(|t| token_row(t, None)).collect()).await?;
    let mut children = Vec::new();
    for (rows, id) in issuing().zip(&ids) {
        children.extend(rows[1..].iter().map(|t| token_row(t, Some(*id))));
    }
    insert_rows(c, children).await?;

    // Every code claimed is redeemed now, with the token it gave if it gave one.
    let mut ids = ids.into_iter();
    let mut answers = Vec::with_capacity(items.len());
    let mut sql = String::from("WITH v(hash, at, token) AS (VALUES ");
    let mut update = Vec::new();
    for ((hash, claim), verdict) in items.iter().zip(verdicts) {
        let (token, answer) = match verdict {
            Verdict::Done(answer) => {
                answers.push(answer);
                continue;
            }
            Verdict::Refused(refusal) => (None, Redemption::Refused(refusal)),
            Verdict::Issue {
                rows,
                issue,
                scoped_id,
            } => {
                let (Some(id), Some(access)) = (ids.next(), rows.into_iter().next()) else {
                    return Err(StoreError::Backend("a token issued without an id".into()));
                };
                let answer = Redemption::Issued {
                    record: issued(id, access, Some(scoped_id)),
                    token: issue.access,
                    refresh: issue.refresh.map(|(t, _)| t),
                };
                (Some(id), answer)
            }
        };
        if !update.is_empty() {
            sql.push_str(", ");
        }
        sql.push('(');
        placeholders(&mut sql, update.len() + 1..=update.len() + 3);
        sql.push(')');
        update.extend([hash.0.to_vec().value(), claim.now.value(), token.value()]);
        answers.push(Together::Done(answer));
    }
    if !update.is_empty() {
        sql.push_str(
            ") UPDATE auth_codes SET redeemed_at = v.at, token_id = v.token
             FROM v WHERE auth_codes.hash = v.hash",
        );
        c.execute(Query {
            sql: sql.into(),
            args: update,
        })
        .await?;
    }
    Ok(answers)
}

/// Exchanges (`ig_exchange_token`) and rotations (the `refresh_token` grant), run together:
/// one statement taking every parent's locks ([`Lock::Derivation`]), one conditional update of
/// the parents of each kind, one insert of every new token. A parent's second derivation in a
/// batch runs alone after it, as do the derivations that revoke (`Refresh`, which supersedes
/// earlier refreshes) or only read (`Attach`).
pub(crate) struct Derive;

impl Batch for Derive {
    type Item = (TokenHash, Derivation, Vec<NewToken>);
    /// `None`: the parent could not be derived from (revoked, exchanged, reused).
    type Out = Together<Option<Vec<TokenRecord>>>;
    const NAME: &'static str = "token derivations";

    fn run<'c, C: Conn>(c: &'c mut C, items: &'c [Self::Item]) -> Work<'c, Vec<Self::Out>> {
        Box::pin(derive_together(c, items))
    }
}

impl Derive {
    /// Whether `how` is derived in batches.
    pub(crate) fn takes(how: &Derivation) -> bool {
        matches!(how, Derivation::Exchange { .. } | Derivation::Rotate { .. })
    }
}

async fn derive_together<C: Conn>(
    c: &mut C,
    items: &[(TokenHash, Derivation, Vec<NewToken>)],
) -> Result<Vec<Together<Option<Vec<TokenRecord>>>>> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let batched: Vec<bool> = items
        .iter()
        .map(|(parent, how, _)| Derive::takes(how) && seen.insert(*parent))
        .collect();
    let parents: Vec<TokenHash> = seen.into_iter().collect();
    if !parents.is_empty() {
        c.lock(Lock::Derivation(&parents)).await?;
    }

    // The parents each kind's condition lets through, and their ids.
    let mut derived: HashMap<TokenHash, i64> = HashMap::with_capacity(items.len());
    for rotate in [false, true] {
        let mut sql = String::from("WITH v(parent, at, since) AS (VALUES ");
        let mut args = Vec::new();
        for ((parent, how, _), _) in items.iter().zip(&batched).filter(|(_, b)| **b) {
            let (at, since) = match (how, rotate) {
                (Derivation::Exchange { now }, false) => (*now, *now),
                (
                    Derivation::Rotate {
                        now,
                        reusable_since,
                    },
                    true,
                ) => (*now, *reusable_since),
                _ => continue,
            };
            sql.push_str(if args.is_empty() { "(" } else { ", (" });
            placeholders(&mut sql, args.len() + 1..=args.len() + 3);
            sql.push(')');
            args.extend([parent.0.to_vec().value(), at.value(), since.value()]);
        }
        if args.is_empty() {
            continue;
        }
        sql.push_str(if rotate {
            ") UPDATE tokens SET exchanged_at = COALESCE(exchanged_at, v.at) FROM v
             WHERE hash = v.parent AND revoked_at IS NULL
                 AND (exchanged_at IS NULL OR exchanged_at >= v.since)
             RETURNING hash, id"
        } else {
            ") UPDATE tokens SET exchanged_at = v.at FROM v
             WHERE hash = v.parent AND exchanged_at IS NULL AND revoked_at IS NULL
             RETURNING hash, id"
        });
        for mut row in c
            .fetch_all(Query {
                sql: sql.into(),
                args,
            })
            .await?
        {
            derived.insert(stored_hash(row.get(0)?)?, row.get(1)?);
        }
    }

    // Every new token, under its parent, in the items' order.
    let deriving = || {
        items
            .iter()
            .zip(&batched)
            .filter(|(_, b)| **b)
            .filter_map(|((parent, _, tokens), _)| Some((derived.get(parent)?, tokens)))
    };
    let rows: Vec<_> = deriving()
        .flat_map(|(id, tokens)| tokens.iter().map(|t| token_row(t, Some(*id))))
        .collect();
    let mut ids = insert_rows(c, rows).await?.into_iter();
    let mut answers = Vec::with_capacity(items.len());
    for ((parent, _, tokens), batched) in items.iter().zip(batched) {
        answers.push(if !batched {
            Together::Alone
        } else if derived.contains_key(parent) {
            let mut records = Vec::with_capacity(tokens.len());
            for token in tokens {
                let id = ids
                    .next()
                    .ok_or_else(|| StoreError::Backend("a token derived without an id".into()))?;
                records.push(issued(id, token.clone(), None));
            }
            Together::Done(Some(records))
        } else {
            Together::Done(None)
        });
    }
    Ok(answers)
}

/// Inserts `rows` of [`TOKENS`]; answers their ids in the rows' order.
async fn insert_rows(c: &mut impl Conn, rows: Vec<Vec<Value<'static>>>) -> Result<Vec<i64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n = rows.len();
    let mut ids = c
        .fetch_all(TOKENS.rows(rows))
        .await?
        .into_iter()
        .map(|mut r| r.get(0))
        .collect::<Result<Vec<i64>>>()?;
    if ids.len() != n {
        return Err(StoreError::Backend(format!(
            "{n} tokens inserted, {} ids answered",
            ids.len()
        )));
    }
    // Ids are drawn in the rows' order (from a sequence on PostgreSQL, as the next rowid on
    // SQLite), whatever order RETURNING lists them in.
    ids.sort_unstable();
    Ok(ids)
}

/// A hash as stored.
fn stored_hash(bytes: Vec<u8>) -> Result<TokenHash> {
    Ok(TokenHash(bytes.try_into().map_err(|_| {
        StoreError::Backend("a stored hash is not 32 bytes".into())
    })?))
}

#[async_trait]
impl<E: Engine> GrantStore for SqlStore<E> {
    async fn grant(&self, app: &AppId, user: UserId) -> Result<Option<Grant>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(
            q(format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE app_id = $1 AND user_id = $2"
            ))
            .bind(app.as_str())
            .bind(user.0),
        )
        .await?
        .as_mut()
        .map(grant_from_row)
        .transpose()
    }

    async fn grant_by_scoped_id(
        &self,
        app: &AppId,
        scoped: &ScopedUserId,
    ) -> Result<Option<Grant>> {
        let mut c = self.engine.reader().await?;
        c.fetch_optional(
            q(format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE scoped_id = $1 AND app_id = $2"
            ))
            .bind(scoped.as_str())
            .bind(app.as_str()),
        )
        .await?
        .as_mut()
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
        let (app, scopes, scoped) = (app.clone(), scopes.to_stored(), new_scoped_id.clone());
        write!(self, |c| {
            grant_from_row(
                &mut c
                    .fetch_one(
                        q(format!(
                            "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (app_id, user_id) DO UPDATE
                                 SET scopes = excluded.scopes, granted_at = excluded.granted_at
                             RETURNING {GRANT_COLUMNS}"
                        ))
                        .bind(app.as_str())
                        .bind(user.0)
                        .bind(scoped.as_str())
                        .bind(&scopes)
                        .bind(now),
                    )
                    .await?,
            )
        })
        .await
    }

    async fn code_app(&self, hash: &TokenHash) -> Result<Option<AppId>> {
        let mut c = self.engine.reader().await?;
        let row = c
            .fetch_optional(q("SELECT app_id FROM auth_codes WHERE hash = $1").bind(&hash.0))
            .await?;
        row.map(|mut r| {
            let id: String = r.get(0)?;
            AppId::parse(&id).ok_or_else(|| crate::records::corrupt("app id", &id))
        })
        .transpose()
    }

    async fn create_code(&self, code: &NewCode) -> Result<()> {
        let code = code.clone();
        write!(self, |c| {
            c.execute(
                q("INSERT INTO auth_codes (hash, app_id, user_id, scoped_id, redirect_uri, scopes, code_challenge,
                       created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&code.hash.0)
                .bind(code.app_id.as_str())
                .bind(code.user_id.0)
                .bind(code.scoped_id.as_str())
                .bind(&code.redirect_uri)
                .bind(code.scopes.to_stored())
                .bind(code.code_challenge.as_ref().map(CodeChallenge::as_str))
                .bind(code.created_at)
                .bind(code.expires_at),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn create_device_authorization(&self, auth: &NewDeviceAuthorization) -> Result<()> {
        let auth = auth.clone();
        write!(self, |c| {
            c.execute(
                q("INSERT INTO device_authorizations (device_hash, user_code_hash, app_id, scopes,
                       poll_interval, created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&auth.device_hash.0)
                .bind(&auth.user_code_hash.0)
                .bind(auth.app_id.as_str())
                .bind(auth.scopes.to_stored())
                .bind(auth.interval)
                .bind(auth.created_at)
                .bind(auth.expires_at),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn device_authorization(
        &self,
        user_code_hash: &TokenHash,
    ) -> Result<Option<DeviceAuthorization>> {
        let mut c = self.engine.reader().await?;
        let row = c
            .fetch_optional(
                q("SELECT device_hash, app_id, scopes, state, expires_at
                   FROM device_authorizations WHERE user_code_hash = $1")
                .bind(&user_code_hash.0),
            )
            .await?;
        row.map(|mut r| {
            let hash: Vec<u8> = r.get(0)?;
            let app: String = r.get(1)?;
            let state: String = r.get(3)?;
            Ok(DeviceAuthorization {
                device_hash: TokenHash(
                    hash.try_into()
                        .map_err(|_| corrupt("device code hash", "wrong length"))?,
                ),
                app_id: AppId::parse(&app).ok_or_else(|| corrupt("app id", &app))?,
                scopes: ScopeSet::from_stored(&r.get::<String>(2)?),
                state: DeviceState::parse(&state).ok_or_else(|| corrupt("device state", &state))?,
                expires_at: r.get(4)?,
            })
        })
        .transpose()
    }

    async fn decide_device_authorization(
        &self,
        user_code_hash: &TokenHash,
        decision: &DeviceDecision,
        now: UnixTime,
    ) -> Result<bool> {
        let (hash, decision) = (*user_code_hash, decision.clone());
        transaction!(self, |c| {
            let (state, user) = match &decision {
                DeviceDecision::Approve(code) => (DeviceState::Approved, code.user_id),
                DeviceDecision::Deny(user) => (DeviceState::Denied, *user),
            };
            let decided = c
                .execute(
                    q("UPDATE device_authorizations SET state = $2, user_id = $3
                       WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $4")
                    .bind(&hash.0)
                    .bind(state.as_str())
                    .bind(user.0)
                    .bind(now),
                )
                .await?;
            if decided != 1 {
                return Ok(false);
            }
            if let DeviceDecision::Approve(code) = &decision {
                c.execute(
                    q("INSERT INTO auth_codes (hash, app_id, user_id, scoped_id, redirect_uri, scopes,
                           code_challenge, created_at, expires_at)
                       VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)")
                    .bind(&code.hash.0)
                    .bind(code.app_id.as_str())
                    .bind(code.user_id.0)
                    .bind(code.scoped_id.as_str())
                    .bind(&code.redirect_uri)
                    .bind(code.scopes.to_stored())
                    .bind(code.created_at)
                    .bind(code.expires_at),
                )
                .await?;
            }
            Ok(true)
        })
        .await
    }

    async fn poll_device(
        &self,
        device_hash: &TokenHash,
        app: &AppId,
        now: UnixTime,
    ) -> Result<Option<Poll>> {
        let (hash, app) = (*device_hash, app.clone());
        transaction!(self, |c| {
            // Locked: two polls at once are judged one after the other, so the second is told
            // to slow down.
            let lock = <E::Conn as Conn>::DIALECT.suffix(" FOR UPDATE");
            let Some(mut row) = c
                .fetch_optional(
                    q(format!(
                        "SELECT state, expires_at, poll_interval, last_polled_at
                         FROM device_authorizations WHERE device_hash = $1 AND app_id = $2{lock}"
                    ))
                    .bind(&hash.0)
                    .bind(app.as_str()),
                )
                .await?
            else {
                return Ok(None);
            };
            let state: String = row.get(0)?;
            let facts = PollFacts {
                state: DeviceState::parse(&state).ok_or_else(|| corrupt("device state", &state))?,
                expires_at: row.get(1)?,
                interval: row.get(2)?,
                last_polled_at: row.get(3)?,
            };
            let poll = judge_poll(&facts, now);
            let write = match poll {
                Poll::Pending => Some(
                    q("UPDATE device_authorizations SET last_polled_at = $2 WHERE device_hash = $1")
                        .bind(&hash.0)
                        .bind(now),
                ),
                Poll::SlowDown { interval } => Some(
                    q("UPDATE device_authorizations SET last_polled_at = $2, poll_interval = $3
                       WHERE device_hash = $1")
                    .bind(&hash.0)
                    .bind(now)
                    .bind(interval),
                ),
                Poll::Approved => Some(
                    q("DELETE FROM device_authorizations WHERE device_hash = $1").bind(&hash.0),
                ),
                Poll::Expired | Poll::Denied => None,
            };
            if let Some(write) = write {
                c.execute(write).await?;
            }
            Ok(Some(poll))
        })
        .await
    }

    /// Concurrent redemptions share one transaction on PostgreSQL ([`Redeem`]); a replay runs
    /// alone afterwards.
    async fn redeem_code(&self, hash: &TokenHash, claim: &CodeClaim) -> Result<Redemption> {
        if let Together::Done(done) = self.engine.batch::<Redeem>((*hash, claim.clone())).await? {
            return Ok(done);
        }
        let (hash, now) = (*hash, claim.now);
        // A replay revoked tokens this store may hold; which ones is not known here.
        let replayed = self.after(|r: &Redemption| match r {
            Redemption::Replayed { revoked: 1.. } => vec![Stale::Tokens],
            _ => Vec::new(),
        });
        transaction!(self, replayed, |c| {
            let lock = <E::Conn as Conn>::DIALECT.suffix(" FOR UPDATE");
            let Some(mut row) = c
                .fetch_optional(
                    q(format!(
                        "SELECT user_id, token_id FROM auth_codes
                         WHERE hash = $1 AND redeemed_at IS NOT NULL{lock}"
                    ))
                    .bind(&hash.0),
                )
                .await?
            else {
                return Err(StoreError::Backend(
                    "a code sent to be replayed was not redeemed".into(),
                ));
            };
            let user = UserId(row.get(0)?);
            let token_id: Option<i64> = row.get(1)?;
            c.lock(Lock::User(user)).await?;
            let revoked = c
                .execute(
                    q("WITH RECURSIVE family(id) AS (
                           SELECT CAST($2 AS BIGINT)
                           UNION ALL SELECT t.id FROM tokens t JOIN family f ON t.parent_id = f.id)
                       UPDATE tokens SET revoked_at = $1, revoke_reason = 'code_replay'
                       WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL")
                    .bind(now)
                    .bind(token_id),
                )
                .await?;
            Ok(Redemption::Replayed { revoked })
        })
        .await
    }

    async fn caller(&self, hash: &TokenHash) -> Result<Option<Caller>> {
        // Taken before the read, for sharing the user it reads (`shared_user`).
        let generation = self.cache.as_ref().map(|c| c.generation());
        self.through(|c| &c.callers, *hash, async {
            let mut c = self.engine.reader().await?;
            let Some(mut row) = c
                .fetch_optional(q(CALLER_QUERY.as_str()).bind(&hash.0))
                .await?
            else {
                return Ok(None);
            };
            let mut user = Row(row.0.split_off(15));
            let mut app = Row(row.0.split_off(12));
            let mode: String = app.get(0)?;
            let app = AppFacts {
                mode: AppMode::parse(&mode).ok_or_else(|| corrupt("app mode", &mode))?,
                clock_offset: app.get(1)?,
                fault_rules: app.get(2)?,
            };
            let user = match user.0.first() {
                None | Some(Value::Null(_)) => None,
                Some(_) => Some(self.shared_user(user_from_row(&mut user)?, generation)),
            };
            Ok(Some(Caller {
                token: Arc::new(token_from_row(&mut row)?),
                app,
                user,
            }))
        })
        .await
    }

    async fn token(&self, hash: &TokenHash) -> Result<Option<Arc<TokenRecord>>> {
        self.through(|c| &c.tokens, *hash, async {
            let mut c = self.engine.reader().await?;
            c.fetch_optional(q(TOKEN_QUERY.as_str()).bind(&hash.0))
                .await?
                .as_mut()
                .map(|r| token_from_row(r).map(Arc::new))
                .transpose()
        })
        .await
    }

    async fn revoke_tokens(
        &self,
        which: Revoke,
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<u64> {
        let stale = match &which {
            Revoke::Token(h) => Stale::Token(*h),
            _ => Stale::Tokens,
        };
        transaction!(self, self.after(move |_| vec![stale]), |c| {
            revoke_in(c, &which, reason, now).await
        })
        .await
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
        // Cached tokens carry the grant's scoped id and their revocation state.
        transaction!(self, self.after(|_| vec![Stale::Tokens]), |c| {
            let removed = c
                .fetch_optional(
                    q("DELETE FROM grants WHERE app_id = $1 AND user_id = $2
                       RETURNING scoped_id, scopes, granted_at")
                    .bind(app.as_str())
                    .bind(user.0),
                )
                .await?;
            let scoped = match removed {
                Some(mut r) => {
                    let (scoped, scopes, granted_at): (String, String, i64) =
                        (r.get(0)?, r.get(1)?, r.get(2)?);
                    let deletion_at = callbacks
                        .contains(&CallbackKind::DataDeletion)
                        .then_some(now);
                    c.execute(
                        q("INSERT INTO grant_removals (app_id, user_id, scoped_id, scopes, granted_at, removed_at,
                               deletion_requested_at)
                           VALUES ($1, $2, $3, $4, $5, $6, $7)
                           ON CONFLICT (app_id, user_id) DO UPDATE SET scoped_id = excluded.scoped_id,
                               scopes = excluded.scopes, granted_at = excluded.granted_at,
                               removed_at = excluded.removed_at,
                               deletion_requested_at = excluded.deletion_requested_at")
                        .bind(app.as_str())
                        .bind(user.0)
                        .bind(&scoped)
                        .bind(&scopes)
                        .bind(granted_at)
                        .bind(now)
                        .bind(deletion_at),
                    )
                    .await?;
                    for kind in &callbacks {
                        c.execute(
                            q("INSERT INTO callbacks (app_id, kind, user_id, scoped_id, created_at, next_attempt_at)
                               VALUES ($1, $2, $3, $4, $5, $5)")
                            .bind(app.as_str())
                            .bind(kind.as_str())
                            .bind(user.0)
                            .bind(&scoped)
                            .bind(now),
                        )
                        .await?;
                    }
                    Some(scoped)
                }
                None => None,
            };
            let tokens = revoke_in(c, &Revoke::AppUser(app, user), reason, now).await?;
            Ok(Removal {
                grant: scoped.is_some(),
                tokens,
            })
        })
        .await
    }

    /// Makes nothing cached stale, so it announces nothing: a purged token ended (expired or
    /// was revoked) before the cutoff, and a cached copy of it says so, since expiry is read
    /// from the row on every use and a revocation dropped it from every cache when it was
    /// made. Until its cached copy lapses, a purged token is refused as expired or revoked
    /// rather than as unknown. (Announcing every batch made every node drop every cached
    /// token, a thousand times a pass over a million rows: BENCHMARKS.md, the janitor.)
    async fn purge_app(&self, app: &AppId, cutoffs: Cutoffs, batch: u32) -> Result<Purged> {
        let app = app.clone();
        transaction!(self, |c| {
            let skip = <E::Conn as Conn>::DIALECT.suffix(" FOR UPDATE SKIP LOCKED");
            let limit = i64::from(batch);
            let mut delete = async |table: &str, key: &str, expired: &str, before: UnixTime| {
                c.execute(
                    q(format!(
                        "DELETE FROM {table} WHERE ({key}) IN
                             (SELECT {key} FROM {table} WHERE app_id = $3 AND {expired} LIMIT $2{skip})"
                    ))
                    .bind(before)
                    .bind(limit)
                    .bind(app.as_str()),
                )
                .await
            };
            let codes = delete("auth_codes", "hash", "expires_at < $1", cutoffs.codes_before).await?;
            let mut tokens = delete("tokens", "id", "expires_at < $1", cutoffs.tokens_before).await?;
            tokens += delete("tokens", "id", "revoked_at < $1", cutoffs.tokens_before).await?;
            Ok(Purged {
                codes,
                tokens,
                ..Purged::default()
            })
        })
        .await
    }

    async fn purge(&self, cutoffs: Cutoffs, batch: u32) -> Result<Purged> {
        transaction!(self, |c| {
            // Rows another node is deleting right now are left to it.
            let skip = <E::Conn as Conn>::DIALECT.suffix(" FOR UPDATE SKIP LOCKED");
            let mut delete =
                async |limit: u64, table: &str, key: &str, expired: &str, before: UnixTime| {
                    c.execute(
                        q(format!(
                            "DELETE FROM {table} WHERE ({key}) IN
                                 (SELECT {key} FROM {table} WHERE {expired} LIMIT $2{skip})"
                        ))
                        .bind(before)
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
                    )
                    .await
                };
            let batch = u64::from(batch);
            let mut codes = delete(
                batch,
                "auth_codes",
                "hash",
                "expires_at < $1",
                cutoffs.codes_before,
            )
            .await?;
            // Device authorizations are codes too.
            codes += delete(
                batch,
                "device_authorizations",
                "device_hash",
                "expires_at < $1",
                cutoffs.codes_before,
            )
            .await?;
            // A token's networks go with it (ON DELETE CASCADE). Expired, then revoked: each
            // condition has its index, which `expires_at < $1 OR revoked_at < $1` could not use.
            let mut tokens = delete(
                batch,
                "tokens",
                "id",
                "expires_at < $1",
                cutoffs.tokens_before,
            )
            .await?;
            if tokens < batch {
                tokens += delete(
                    batch - tokens,
                    "tokens",
                    "id",
                    "revoked_at < $1",
                    cutoffs.tokens_before,
                )
                .await?;
            }
            let callbacks = delete(
                batch,
                "callbacks",
                "id",
                "state <> 'pending' AND finished_at < $1",
                cutoffs.callbacks_before,
            )
            .await?;
            let webhooks = delete(
                batch,
                "webhook_deliveries",
                "id",
                "state <> 'pending' AND finished_at < $1",
                cutoffs.callbacks_before,
            )
            .await?;
            let audit = delete(batch, "audit_log", "id", "at < $1", cutoffs.audit_before).await?;
            let removals = delete(
                batch,
                "grant_removals",
                "app_id, user_id",
                "removed_at < $1",
                cutoffs.tokens_before,
            )
            .await?;
            // An hour's errors and users go in batches of their own, so each delete is bounded.
            let mut usage = 0;
            for (table, key) in [
                ("app_usage", "app_id, hour"),
                ("app_usage_errors", "app_id, hour, code"),
                ("app_usage_users", "app_id, hour, user_id"),
            ] {
                usage =
                    usage.max(delete(batch, table, key, "hour < $1", cutoffs.usage_before).await?);
            }
            Ok(Purged {
                codes,
                tokens,
                callbacks,
                webhooks,
                audit,
                usage,
                removals,
            })
        })
        .await
    }

    /// Appended: concurrent issuances may share one statement and one commit.
    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let id = self.engine.append(&TOKENS, token_row(token, None)).await?;
        Ok(issued(id, token.clone(), None))
    }

    async fn derive_tokens(
        &self,
        parent: &TokenHash,
        how: Derivation,
        tokens: &[NewToken],
    ) -> Result<Option<Vec<TokenRecord>>> {
        let (parent, tokens) = (*parent, tokens.to_vec());
        if Derive::takes(&how) {
            let call = self.engine.batch::<Derive>((parent, how, tokens.clone()));
            if let Together::Done(done) = call.await? {
                // Only this node's copy: the store's conditional update checks again what
                // changed, so another node's copy does no harm (see [`Stale::Derived`]).
                self.forget(&Stale::Derived(parent));
                return Ok(done);
            }
        }
        let stale = self.after(move |(_, superseded): &(_, Vec<TokenHash>)| match how {
            // Its expiry was cut to the grace period, and what earlier refreshes of it made
            // was revoked: every node must know.
            Derivation::Refresh { .. } => std::iter::once(parent)
                .chain(superseded.iter().copied())
                .map(Stale::Token)
                .collect(),
            _ => vec![Stale::Derived(parent)],
        });
        let done = transaction!(self, stale, |c| {
            c.lock(Lock::Derivation(std::slice::from_ref(&parent))).await?;
            let update = match how {
                Derivation::Exchange { now } => q(
                    "UPDATE tokens SET exchanged_at = $1
                     WHERE hash = $2 AND exchanged_at IS NULL AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(&parent.0),
                Derivation::Refresh {
                    parent_expires_at, ..
                } => q(
                    "UPDATE tokens SET expires_at = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END
                     WHERE hash = $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(parent_expires_at)
                .bind(&parent.0),
                Derivation::Attach => {
                    q("SELECT id FROM tokens WHERE hash = $1 AND revoked_at IS NULL").bind(&parent.0)
                }
                Derivation::Rotate {
                    now,
                    reusable_since,
                } => q(
                    "UPDATE tokens SET exchanged_at = COALESCE(exchanged_at, $1)
                     WHERE hash = $2 AND revoked_at IS NULL AND (exchanged_at IS NULL OR exchanged_at >= $3)
                     RETURNING id",
                )
                .bind(now)
                .bind(&parent.0)
                .bind(reusable_since),
            };
            let Some(mut found) = c.fetch_optional(update).await? else {
                return Ok((None, Vec::new()));
            };
            let parent_id: i64 = found.get(0)?;
            let mut superseded = Vec::new();
            if let Derivation::Refresh { now, .. } = how {
                for mut row in c
                    .fetch_all(q(SUPERSEDE).bind(now).bind(parent_id))
                    .await?
                {
                    superseded.push(stored_hash(row.get(0)?)?);
                }
            }
            let mut out = Vec::with_capacity(tokens.len());
            for token in tokens {
                let id = insert_token(c, &token, Some(parent_id)).await?;
                out.push(issued(id, token, None));
            }
            Ok((Some(out), superseded))
        })
        .await;
        done.map(|(issued, _)| issued)
    }
}
