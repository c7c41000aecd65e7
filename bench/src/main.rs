//! Benchmark helpers, driven by `bench/run.sh`:
//!
//! - `hello ADDR`: the baseline, a bare axum JSON handler shaped like `/me`'s answer;
//! - `seed DATA_DIR CODES`: prepares a gramkey database (SQLite in DATA_DIR, or the
//!   PostgreSQL database at `$BENCH_DATABASE_URL`) with an app, a user, one
//!   long-lived-enough token and CODES unredeemed authorization codes, and writes
//!   `DATA_DIR/bench.env` (client ids, secrets, token), `DATA_DIR/codes.txt` and
//!   `DATA_DIR/refresh.txt` (as many refresh tokens, for a second app that opted in) for wrk;
//!   with `LIVE_TOKENS=N` also N more access tokens (`DATA_DIR/tokens.txt`), and with
//!   `EXPIRED_TOKENS=N` N tokens past retention for the janitor (`bench/latency.sh`);
//! - `propagation TRIALS CLIENT_ID CLIENT_SECRET NODE...`: how long a revocation on one node
//!   takes to be refused by the others, which had the token cached (`bench/cluster.sh`).

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::routing::get;
use gramkey_domain::code::generate_code;
use gramkey_domain::token::{MintOrder, TokenMaterial};
use gramkey_domain::{
    AppMode, Flavour, OsEntropy, Password, ScopeSet, ScopedUserId, SystemClock, TokenHash,
    TokenKind,
};
use gramkey_server::ops::{NewAppInput, Ops};
use gramkey_store::postgres::PgStore;
use gramkey_store::sqlite::SqliteStore;
use gramkey_store::{CodeClaim, NewCode, NewToken, Profile, Redemption, Store};

/// The key `bench/run.sh` also gives the server, so secrets hashed here verify there.
const BENCH_KEY: &str = "62656e63682d6b65792d6e6f742d7365637265742d62656e63682d6b65792d31";

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("hello") => hello(args.get(2).context("hello ADDR")?).await,
        Some("seed") => {
            let dir = args.get(2).context("seed DATA_DIR CODES")?;
            let n: usize = args.get(3).context("seed DATA_DIR CODES")?.parse()?;
            seed(dir.as_ref(), n).await
        }
        Some("propagation") => {
            let usage = "propagation TRIALS CLIENT_ID CLIENT_SECRET NODE NODE...";
            let trials: usize = args.get(2).context(usage)?.parse()?;
            let app = (
                args.get(3).context(usage)?.clone(),
                args.get(4).context(usage)?.clone(),
            );
            let nodes = args.get(5..).filter(|n| n.len() >= 2).context(usage)?;
            propagation(trials, &app, nodes).await
        }
        _ => bail!(
            "usage: gramkey-bench hello ADDR | seed DATA_DIR CODES | propagation TRIALS CLIENT_ID CLIENT_SECRET NODE..."
        ),
    }
}

async fn hello(addr: &str) -> Result<()> {
    let app = axum::Router::new().route(
        "/me",
        get(|| async {
            axum::Json(serde_json::json!({"id": "17841400000000001", "username": "alice"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Revokes a token on each node in turn, after the others have read it (and cached it), and
/// times from the revoking call until every other node refuses it; prints p50, p99 and max.
async fn propagation(trials: usize, app: &(String, String), nodes: &[String]) -> Result<()> {
    let c = reqwest::Client::new();
    let active = async |node: &str, token: &str| -> Result<bool> {
        let r = c
            .post(format!("http://{node}/oauth/introspect"))
            .basic_auth(&app.0, Some(&app.1))
            .form(&[("token", token)])
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json::<serde_json::Value>().await?["active"] == true)
    };
    let mut took = Vec::with_capacity(trials);
    for n in 0..trials {
        let by = &nodes[n % nodes.len()];
        let body: serde_json::Value = c
            .post(format!("http://{by}/oauth/access_token"))
            .form(&[
                ("client_id", app.0.as_str()),
                ("client_secret", app.1.as_str()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = body["access_token"].as_str().context("no access_token")?;
        let others: Vec<&String> = nodes.iter().filter(|o| *o != by).collect();
        for o in &others {
            anyhow::ensure!(active(o, token).await?, "{o} does not know a new token");
        }
        // Elapsed time, not a point in time.
        #[allow(clippy::disallowed_methods)]
        let start = std::time::Instant::now();
        c.post(format!("http://{by}/oauth/revoke"))
            .basic_auth(&app.0, Some(&app.1))
            .form(&[("token", token)])
            .send()
            .await?
            .error_for_status()?;
        for o in &others {
            while active(o, token).await? {
                anyhow::ensure!(
                    start.elapsed() < std::time::Duration::from_secs(10),
                    "a revocation never reached {o}"
                );
            }
        }
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "revocation refused on every other node after: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({trials} trials)",
        at(50),
        at(99),
        at(100)
    );
    Ok(())
}

async fn seed(dir: &std::path::Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let key = gramkey_server::keys::parse_key(BENCH_KEY)?;
    let store: Arc<dyn Store> = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => Arc::new(PgStore::connect(&url, PgStore::ACQUIRE_TIMEOUT).await?),
        Err(_) => Arc::new(SqliteStore::open(&dir.join("gramkey.db"))?),
    };
    let ops = Ops {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        entropy: Arc::new(OsEntropy),
        hasher: gramkey_domain::SecretHasher::new(&key),
    };
    let redirect = "https://bench.example/cb";
    let (app, secret) = ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "bench".into(),
                redirect_uris: vec![redirect.into()],
                scopes: "user_profile,user_media".into(),
                mode: AppMode::Live,
                refresh_tokens: false,
                signed_requests: false,
                device_flow: false,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await?;
    let user = ops
        .create_user(
            "bench",
            Password::new("bench-password"),
            Profile {
                account_type: "PERSONAL".into(),
                ..Profile::default()
            },
        )
        .await?;
    let now = gramkey_domain::Clock::now(&SystemClock);
    // 200 media (images, videos, albums) for the /me/media benchmark.
    gramkey_server::sandbox::add_generated_media(
        &ops,
        &gramkey_domain::entropy::SeededEntropy::new(1),
        &user,
        200,
        "http://127.0.0.1:18182",
        now,
    )
    .await?;
    let scopes = ScopeSet::parse("user_profile,user_media")?;
    let grant = store
        .save_grant(
            &app.id,
            user.id,
            &scopes,
            &ScopedUserId::generate(&OsEntropy),
            now,
        )
        .await?;
    let new_code = |code: &gramkey_domain::AuthCode| NewCode {
        hash: TokenHash::of_code(code),
        app_id: app.id.clone(),
        user_id: user.id,
        scoped_id: grant.scoped_id.clone(),
        redirect_uri: redirect.into(),
        scopes: scopes.clone(),
        code_challenge: None,
        created_at: now,
        // Long enough for any benchmark run.
        expires_at: now + 6 * 3600,
    };

    // One token for GET /me, issued through a redeemed code like any other.
    let first = generate_code(&OsEntropy);
    store.create_code(&new_code(&first)).await?;
    // A short-lived token lasts an hour: longer than a benchmark run.
    let claim = CodeClaim {
        app_id: app.id.clone(),
        redirect_uri: redirect.into(),
        code_verifier: None,
        now,
        material: TokenMaterial::draw(&OsEntropy, mint_order()),
        refresh: None,
    };
    let token = match store
        .redeem_code(&TokenHash::of_code(&first), &claim)
        .await?
    {
        Redemption::Issued { token, .. } => token,
        other => bail!("could not issue the bench token: {other:?}"),
    };

    // The codes, written concurrently so the store's group commit batches them.
    let codes: Vec<_> = (0..n).map(|_| generate_code(&OsEntropy)).collect();
    for chunk in codes.chunks(2048) {
        let mut tasks = tokio::task::JoinSet::new();
        for code in chunk {
            let (store, rec) = (store.clone(), new_code(code));
            tasks.spawn(async move { store.create_code(&rec).await });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
    }
    write_lines(&dir.join("codes.txt"), codes.iter().map(|c| c.expose()))?;

    // A second app that opted in to refresh tokens, and as many refresh tokens as codes, all
    // under one root token, for the refresh_token grant benchmark.
    let (rapp, rsecret) = ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "bench-refresh".into(),
                redirect_uris: vec![redirect.into()],
                scopes: "user_profile,user_media".into(),
                mode: AppMode::Live,
                refresh_tokens: true,
                signed_requests: false,
                device_flow: false,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await?;
    store
        .save_grant(
            &rapp.id,
            user.id,
            &scopes,
            &ScopedUserId::generate(&OsEntropy),
            now,
        )
        .await?;
    let like = |kind, token: &gramkey_domain::AccessToken| NewToken {
        hash: TokenHash::of_token(token),
        kind,
        flavour: Flavour::BasicDisplay,
        app_id: rapp.id.clone(),
        user_id: Some(user.id),
        scopes: scopes.clone(),
        issued_at: now,
        expires_at: now + 6 * 3600,
    };
    let root = Flavour::BasicDisplay.generate_token(&grant.scoped_id, &OsEntropy, mint_order());
    store
        .create_token(&like(TokenKind::ShortLived, &root))
        .await?;
    let refresh: Vec<_> = (0..n)
        .map(|_| gramkey_domain::token::generate_refresh_token(&OsEntropy, mint_order()))
        .collect();
    for chunk in refresh.chunks(1000) {
        let news: Vec<_> = chunk.iter().map(|t| like(TokenKind::Refresh, t)).collect();
        store
            .derive_tokens(
                &TokenHash::of_token(&root),
                gramkey_store::Derivation::Attach,
                &news,
            )
            .await?
            .context("the root token vanished")?;
    }
    write_lines(&dir.join("refresh.txt"), refresh.iter().map(|t| t.expose()))?;

    // For bench/latency.sh: LIVE_TOKENS more access tokens for GET /me (in tokens.txt), and
    // EXPIRED_TOKENS tokens that expired 40 days ago, past retention, for the janitor to purge.
    let count = |name: &str| -> Result<usize> {
        std::env::var(name).map_or(Ok(0), |v| v.parse().with_context(|| name.to_owned()))
    };
    let live: Vec<_> = (0..count("LIVE_TOKENS")?)
        .map(|_| Flavour::BasicDisplay.generate_token(&grant.scoped_id, &OsEntropy, mint_order()))
        .collect();
    let expired = (0..count("EXPIRED_TOKENS")?).map(|_| {
        // Minted when it was issued: expired tokens sit at the start of the token index.
        let minted = MintOrder::at_micros((now - 41 * 86_400) * 1_000_000);
        let t = Flavour::BasicDisplay.generate_token(&grant.scoped_id, &OsEntropy, minted);
        NewToken {
            issued_at: now - 41 * 86_400,
            expires_at: now - 40 * 86_400,
            ..like(TokenKind::ShortLived, &t)
        }
    });
    let news: Vec<_> = live
        .iter()
        .map(|t| like(TokenKind::ShortLived, t))
        .chain(expired)
        .collect();
    for chunk in news.chunks(1000) {
        store
            .derive_tokens(
                &TokenHash::of_token(&root),
                gramkey_store::Derivation::Attach,
                chunk,
            )
            .await?
            .context("the root token vanished")?;
    }
    write_lines(&dir.join("tokens.txt"), live.iter().map(|t| t.expose()))?;
    std::fs::write(
        dir.join("bench.env"),
        format!(
            "CLIENT_ID={}\nCLIENT_SECRET={}\nTOKEN={}\nREDIRECT_URI={redirect}\nGRAMKEY_SECRET_KEY={BENCH_KEY}\n\
             RCLIENT_ID={}\nRCLIENT_SECRET={}\n",
            app.id,
            secret.expose(),
            token.expose(),
            rapp.id,
            rsecret.expose()
        ),
    )?;
    Ok(())
}

fn write_lines<'a>(path: &std::path::Path, lines: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for l in lines {
        writeln!(f, "{l}")?;
    }
    f.flush()?;
    Ok(())
}

/// Tokens the seeder mints are ordered by the real time, as the server's are.
fn mint_order() -> MintOrder {
    MintOrder::now(&gramkey_domain::SystemClock)
}
