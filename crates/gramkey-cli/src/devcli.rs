//! The developer side of `gramkey`: sign in through the browser, keep tokens in the encrypted
//! vault, print them, keep them refreshed, sign out. In the manner of `gh auth`.
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage; 4 the account needs the user to sign in
//! again (or there is no such account).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use gramkey_client::refresh::{RefreshPolicy, Refreshed, refresh};
use gramkey_client::vault::{Account, Accounts, Protection, Vault, VaultKey};
use gramkey_client::{AuthorizeRequest, Client, Hosts};
use serde_json::json;

/// Exit code: the user must sign in again.
pub const EXIT_REAUTH: i32 = 4;

/// An error that asks for [`EXIT_REAUTH`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsReauth(pub String);

#[derive(Args, Clone)]
pub struct VaultArgs {
    /// The vault file (default: $XDG_CONFIG_HOME/gramkey/vault.json, or ~/.config/…).
    #[arg(long, env = "GRAMKEY_VAULT", global = true)]
    vault: Option<PathBuf>,
    /// Keep tokens in plaintext when no vault key is set (GRAMKEY_VAULT_KEY). Not recommended.
    #[arg(long, global = true)]
    insecure_storage: bool,
}

impl VaultArgs {
    fn open(&self) -> Result<Vault> {
        let path = match &self.vault {
            Some(p) => p.clone(),
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .ok_or_else(|| anyhow!("no HOME: give --vault"))?;
                base.join("gramkey").join("vault.json")
            }
        };
        let protection = match (VaultKey::from_env()?, self.insecure_storage) {
            (Some(key), _) => Protection::Encrypted(key),
            (None, true) => Protection::Plaintext,
            (None, false) => return Err(gramkey_client::vault::VaultError::NoKey.into()),
        };
        Ok(Vault::new(path, protection))
    }
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Sign in through the browser (a loopback redirect to 127.0.0.1 with PKCE) and store the
    /// long-lived token.
    Login(LoginArgs),
    /// Every account: who, where, how long its token has left, the last refresh.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print an account's token (the default account without --account).
    Token {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Refresh tokens: idempotent, for cron or a systemd timer.
    Refresh(RefreshArgs),
    /// Forget an account; with --revoke, remove the app's access on the server first.
    Logout {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        revoke: bool,
    },
    /// The accounts' aliases, one per line (the default marked `*`).
    Accounts,
    /// Make an account the default.
    Use { account: String },
    /// The signed-in user's profile, from the server.
    Me {
        #[arg(long)]
        account: Option<String>,
    },
    /// The signed-in user's media, newest first, as JSON lines (with --json, one document).
    Media {
        #[arg(long)]
        account: Option<String>,
        /// Every page (default: the first).
        #[arg(long)]
        all: bool,
        /// Per page (at most 100).
        #[arg(long, default_value_t = 25)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Write every account to FILE, encrypted with the key in GRAMKEY_EXPORT_KEY (64 hex).
    Export { file: PathBuf },
    /// Add the accounts of FILE (from `export`, with its GRAMKEY_EXPORT_KEY).
    Import { file: PathBuf },
}

#[derive(Args)]
pub struct LoginArgs {
    /// A gramkey server's base URL (default: the real Instagram hosts).
    #[arg(long, env = "GRAMKEY_HOST")]
    host: Option<String>,
    #[arg(long, env = "GRAMKEY_CLIENT_ID")]
    client_id: String,
    /// The app secret, from the environment (so it is not in `ps`).
    #[arg(long, env = "GRAMKEY_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Scopes, comma-separated.
    #[arg(long, default_value = "user_profile,user_media")]
    scopes: String,
    /// The loopback port (0: any free one). The app must have registered
    /// http://127.0.0.1/callback (any port is accepted for loopback addresses).
    #[arg(long, default_value_t = 0)]
    redirect_port: u16,
    /// The loopback redirect's path, as the app registered it.
    #[arg(long, default_value = "/callback")]
    redirect_path: String,
    /// Do not open a browser: print the URL and wait (you may also paste the URL the browser
    /// ended on).
    #[arg(long)]
    no_browser: bool,
    /// A name for the account (default: the username).
    #[arg(long)]
    alias: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Args)]
pub struct RefreshArgs {
    /// Every account (default: the default account, or --account).
    #[arg(long)]
    all: bool,
    #[arg(long)]
    account: Option<String>,
    /// Only accounts whose tokens are due; without it, refresh regardless.
    #[arg(long)]
    if_due: bool,
    /// Due when less than this is left.
    #[arg(long, default_value = "14d", value_parser = humantime::parse_duration)]
    threshold: Duration,
    /// Each account refreshes up to this much earlier, by an amount of its own.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// A command to run (with GRAMKEY_ACCOUNT set) when an account needs the user again.
    #[arg(long)]
    on_reauth: Option<String>,
}

fn now() -> i64 {
    gramkey_domain::Clock::now(&gramkey_domain::SystemClock)
}

fn client_for(host: &str) -> Result<Client> {
    let hosts = if host == Hosts::instagram().graph.as_str() {
        Hosts::instagram()
    } else {
        Hosts::gramkey(host).with_context(|| format!("{host:?} is not a URL"))?
    };
    Ok(Client::new(hosts))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub async fn run(vault: &VaultArgs, cmd: AuthCommand) -> Result<()> {
    match cmd {
        AuthCommand::Login(args) => login(&vault.open()?, args).await,
        AuthCommand::Status { json } => status(&vault.open()?, json),
        AuthCommand::Token { account, json } => token(&vault.open()?, account.as_deref(), json),
        AuthCommand::Refresh(args) => refresh_cmd(&vault.open()?, args).await,
        AuthCommand::Logout { account, revoke } => logout(&vault.open()?, account, revoke).await,
        AuthCommand::Accounts => {
            let accounts = vault.open()?.load()?;
            for a in &accounts.list {
                let mark = if accounts.default.as_deref() == Some(a.alias.as_str()) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {}\t{}\t{}\t{}",
                    a.alias,
                    a.username.as_deref().unwrap_or("-"),
                    a.app_id,
                    a.host
                );
            }
            Ok(())
        }
        AuthCommand::Use { account } => {
            let v = vault.open()?;
            let alias = v.update(|a| {
                let alias = a.find(Some(&account)).map(|x| x.alias.clone());
                if alias.is_some() {
                    a.default.clone_from(&alias);
                }
                alias
            })?;
            let alias = alias.ok_or_else(|| no_account(Some(&account)))?;
            println!("{alias} is the default account");
            Ok(())
        }
        AuthCommand::Me { account } => {
            let (client, token) = signed_in(&vault.open()?, account.as_deref())?;
            let me = client
                .me(&token, &["id", "username", "account_type", "media_count"])
                .await
                .map_err(reauth_or)?;
            println!(
                "{}",
                json!({"id": me.id, "username": me.username, "account_type": me.account_type, "media_count": me.media_count})
            );
            Ok(())
        }
        AuthCommand::Media {
            account,
            all,
            limit,
            json,
        } => media(&vault.open()?, account.as_deref(), all, limit, json).await,
        AuthCommand::Export { file } => {
            let from = vault.open()?.load()?;
            let to = Vault::new(&file, Protection::Encrypted(export_key()?));
            let n = from.list.len();
            to.update(|a| {
                for account in from.list {
                    a.upsert(account);
                }
            })?;
            println!("exported {n} account(s) to {}", file.display());
            Ok(())
        }
        AuthCommand::Import { file } => {
            let from = Vault::new(&file, Protection::Encrypted(export_key()?)).load()?;
            let n = from.list.len();
            vault.open()?.update(|a| {
                for account in from.list {
                    a.upsert(account);
                }
            })?;
            println!("imported {n} account(s)");
            Ok(())
        }
    }
}

/// Exit code 4: nothing to use.
fn no_account(name: Option<&str>) -> NeedsReauth {
    NeedsReauth(match name {
        Some(n) => format!("no account {n:?} in the vault (`gramkey auth status` lists them)"),
        None => "no account signed in: `gramkey auth login` signs one in".into(),
    })
}

fn export_key() -> Result<VaultKey> {
    let hex = std::env::var("GRAMKEY_EXPORT_KEY").map_err(|_| {
        anyhow!("set GRAMKEY_EXPORT_KEY (64 hex characters) to encrypt or open an export")
    })?;
    Ok(VaultKey::from_hex(&hex)?)
}

/// The account to use; exit code 4 when there is none, or it needs the user again.
fn usable<'a>(accounts: &'a Accounts, name: Option<&str>) -> Result<&'a Account> {
    let a = accounts.find(name).ok_or_else(|| no_account(name))?;
    if a.needs_sign_in(now()) {
        return Err(NeedsReauth(format!(
            "{} must sign in again: `gramkey auth login`",
            a.alias
        ))
        .into());
    }
    Ok(a)
}

/// A client and token for an account.
fn signed_in(
    vault: &Vault,
    account: Option<&str>,
) -> Result<(Client, gramkey_client::model::AccessToken)> {
    let accounts = vault.load()?;
    let a = usable(&accounts, account)?;
    let token = a
        .token()
        .cloned()
        .ok_or_else(|| anyhow!("{} has no token", a.alias))?;
    Ok((client_for(&a.host)?, token))
}

/// A server refusal, as exit code 4 when it means signing in again.
fn reauth_or(e: gramkey_client::Error) -> anyhow::Error {
    if e.needs_reauthorization() {
        NeedsReauth(format!("{e}; sign in again: `gramkey auth login`")).into()
    } else {
        e.into()
    }
}

async fn media(
    vault: &Vault,
    account: Option<&str>,
    all: bool,
    limit: u32,
    json: bool,
) -> Result<()> {
    let (client, token) = signed_in(vault, account)?;
    let fields = [
        "id",
        "caption",
        "media_type",
        "media_url",
        "permalink",
        "timestamp",
    ];
    let mut pages = client.media(&token, &fields, limit.clamp(1, 100));
    // A spinner on a terminal only: redirected output stays clean.
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && all {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut items = Vec::new();
    let mut count = 0;
    while let Some(page) = pages.next_page().await.map_err(reauth_or)? {
        count += page.len();
        for m in page {
            let line = json!({
                "id": m.id, "caption": m.caption, "media_type": m.media_type,
                "media_url": m.media_url, "permalink": m.permalink, "timestamp": m.timestamp,
            });
            if json {
                items.push(line);
            } else {
                println!("{line}");
            }
        }
        progress.set_message(format!("{count} media"));
        progress.tick();
        if !all {
            break;
        }
    }
    progress.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    }
    Ok(())
}

/// Waits for the browser's redirect on `listener`; returns its query.
async fn callback(
    listener: tokio::net::TcpListener,
    path: &str,
    state: String,
) -> Result<Vec<(String, String)>> {
    use axum::http::StatusCode;
    use axum::response::{Html, IntoResponse};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, String)>>(1);
    let app = axum::Router::new().route(
        path,
        axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
            let (tx, state) = (tx.clone(), state.clone());
            async move {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                // Only the redirect of this sign-in counts: anything else (another tab, a
                // page probing local ports) is turned away and the terminal keeps waiting.
                if !pairs.iter().any(|(k, v)| k == "state" && *v == state) {
                    return (
                        StatusCode::BAD_REQUEST,
                        Html("<!doctype html><title>gramkey</title><p>This is not the sign-in the terminal is waiting for.</p>"),
                    )
                        .into_response();
                }
                let _ = tx.send(pairs).await;
                Html("<!doctype html><title>gramkey</title><p>Received. The terminal finishes signing in; you can close this window.</p>")
                    .into_response()
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let got = rx
        .recv()
        .await
        .ok_or_else(|| anyhow!("the callback listener stopped"));
    // Let the page reach the browser before the listener goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.abort();
    got
}

/// A redirect URL pasted on standard input (for `--no-browser` on another machine). Anything
/// else is answered with a hint, and it waits on; at the end of input it waits for the
/// loopback callback alone.
async fn pasted(redirect: String) -> Result<Vec<(String, String)>> {
    // A plain thread, not the runtime's blocking pool: the runtime waits for its blocking
    // tasks when it shuts down, and this read may never end (nobody pastes anything).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        let Some(line) = rx.recv().await else {
            // End of input: only the loopback callback can finish the sign-in.
            return std::future::pending().await;
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let pairs: Option<Vec<(String, String)>> = url::Url::parse(text)
            .ok()
            .filter(|u| u.as_str().starts_with(&redirect))
            .map(|u| u.query_pairs().into_owned().collect());
        match pairs {
            Some(p) if p.iter().any(|(k, _)| k == "code" || k == "error") => return Ok(p),
            _ => eprintln!(
                "That is not where the browser ended up. Paste the whole URL, starting {redirect}?code=…, or finish signing in in the browser."
            ),
        }
    }
}

async fn login(vault: &Vault, args: LoginArgs) -> Result<()> {
    // Refuse early if the vault cannot be opened.
    vault.load()?;
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| Hosts::instagram().graph.to_string());
    let client = client_for(&host)?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.redirect_port)))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.redirect_port))?;
    let port = listener.local_addr()?.port();
    let path = format!("/{}", args.redirect_path.trim_start_matches('/'));
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        bail!(
            "--redirect-path {:?}: use letters, digits and / - _ . ~ only, as in the redirect URI the app registered",
            args.redirect_path
        );
    }
    let redirect = format!("http://127.0.0.1:{port}{path}");
    let scopes: Vec<&str> = args.scopes.split(',').map(str::trim).collect();
    let req = AuthorizeRequest::new(&args.client_id, &redirect, &scopes);
    let url = req.url(client.hosts());
    println!("Open this URL in a browser to sign in:\n  {url}");
    if !args.no_browser {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let _ = std::process::Command::new(opener)
            .arg(url.as_str())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    } else {
        println!("(or paste here the URL the browser ended on)");
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let query = tokio::time::timeout(args.timeout, async {
        tokio::select! {
            q = callback(listener, &path, req.state().to_owned()) => q,
            q = pasted(redirect.clone()), if args.no_browser => q,
        }
    })
    .await
    .map_err(|_| {
        anyhow!(
            "no sign-in within {}",
            humantime::format_duration(args.timeout)
        )
    })??;
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(e) = get("error") {
        bail!(
            "sign-in refused: {e} ({})",
            get("error_description").unwrap_or_default()
        );
    }
    if get("state").as_deref() != Some(req.state()) {
        bail!("the redirect's state does not match this sign-in: refusing it");
    }
    let code = get("code").ok_or_else(|| anyhow!("the redirect has no code"))?;
    let short = client
        .exchange_code(
            &args.client_id,
            &args.client_secret,
            &redirect,
            &code,
            Some(req.verifier()),
        )
        .await?;
    let long = client
        .long_lived(&args.client_secret, &short.access_token)
        .await?;
    let me = client.me(&long.access_token, &["id", "username"]).await?;
    let at = now();
    let alias = args
        .alias
        .or_else(|| me.username.clone())
        .unwrap_or_else(|| me.id.clone());
    let account = Account {
        host: client.hosts().graph.to_string(),
        app_id: args.client_id.clone(),
        user_id: me.id.clone(),
        username: me.username.clone(),
        alias: alias.clone(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        issued_at: at,
        expires_at: at + long.expires_in.unwrap_or(60 * 24 * 3600),
        last_refreshed_at: None,
        last_refresh_error: None,
        needs_reauthorization: false,
        token: Some(long.access_token),
    };
    vault.update(|a| a.upsert(account))?;
    println!(
        "Signed in as {} ({alias}). Token stored in {}.",
        me.username.as_deref().unwrap_or(&me.id),
        vault.backend()
    );
    Ok(())
}

fn left(expires_at: i64, now: i64) -> String {
    let left = expires_at - now;
    if left <= 0 {
        return "expired".into();
    }
    let (d, h) = (left / 86_400, left % 86_400 / 3600);
    format!("{d}d {h}h left")
}

fn status(vault: &Vault, json: bool) -> Result<()> {
    let accounts = vault.load()?;
    let t = now();
    if json {
        let list: Vec<_> = accounts
            .list
            .iter()
            .map(|a| {
                json!({
                    "alias": a.alias, "username": a.username, "user_id": a.user_id,
                    "app_id": a.app_id, "host": a.host, "expires_at": a.expires_at,
                    "expires_in": a.expires_at - t, "last_refreshed_at": a.last_refreshed_at,
                    "last_refresh_error": a.last_refresh_error,
                    "needs_reauthorization": a.needs_reauthorization,
                    "default": accounts.default.as_deref() == Some(a.alias.as_str()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"vault": vault.backend(), "accounts": list}))?
        );
        return Ok(());
    }
    println!("vault: {}", vault.backend());
    if accounts.list.is_empty() {
        println!("no accounts: `gramkey auth login` signs one in");
    }
    for a in &accounts.list {
        let mark = if accounts.default.as_deref() == Some(a.alias.as_str()) {
            "*"
        } else {
            " "
        };
        let state = if a.needs_reauthorization {
            "NEEDS SIGN-IN AGAIN".to_owned()
        } else {
            left(a.expires_at, t)
        };
        let refreshed = a
            .last_refreshed_at
            .map(|r| format!("refreshed {}s ago", t - r))
            .unwrap_or_else(|| "never refreshed".into());
        println!(
            "{mark} {:<16} {:<20} app {}  {state}, {refreshed}{}  {}",
            a.alias,
            a.username.as_deref().unwrap_or("-"),
            a.app_id,
            a.last_refresh_error
                .as_deref()
                .map(|e| format!(" (last refresh failed: {e})"))
                .unwrap_or_default(),
            a.host,
        );
    }
    Ok(())
}

fn token(vault: &Vault, account: Option<&str>, json: bool) -> Result<()> {
    let accounts = vault.load()?;
    let a = usable(&accounts, account)?;
    let token = a
        .token()
        .ok_or_else(|| anyhow!("{} has no token", a.alias))?;
    if json {
        println!(
            "{}",
            json!({"access_token": token.expose(), "expires_at": a.expires_at, "user_id": a.user_id, "app_id": a.app_id})
        );
    } else {
        println!("{}", token.expose());
    }
    Ok(())
}

async fn refresh_cmd(vault: &Vault, args: RefreshArgs) -> Result<()> {
    let accounts = vault.load()?;
    let targets: Vec<Account> = if args.all {
        accounts.list.clone()
    } else {
        vec![
            accounts
                .find(args.account.as_deref())
                .cloned()
                .ok_or_else(|| no_account(args.account.as_deref()))?,
        ]
    };
    let policy = RefreshPolicy {
        threshold_secs: secs(args.threshold),
        jitter_secs: secs(args.jitter),
        ..RefreshPolicy::default()
    };
    let mut reauth = Vec::new();
    let mut failed = 0;
    for a in targets {
        if a.needs_sign_in(now()) {
            eprintln!("{}: must sign in again (`gramkey auth login`)", a.alias);
            reauth.push(a.alias.clone());
            continue;
        }
        let client = client_for(&a.host)?;
        match refresh(&client, vault, &a.alias, &policy, now(), !args.if_due).await {
            Ok(Refreshed::Now { expires_at }) => {
                println!("{}: refreshed, {}", a.alias, left(expires_at, now()));
            }
            Ok(Refreshed::Elsewhere) => println!("{}: refreshed by another process", a.alias),
            Ok(Refreshed::NotDue) => {
                println!("{}: not due ({})", a.alias, left(a.expires_at, now()))
            }
            Err(e) if e.needs_reauthorization() => {
                eprintln!("{}: {e}", a.alias);
                reauth.push(a.alias.clone());
            }
            Err(e) => {
                eprintln!("{}: {e}", a.alias);
                failed += 1;
            }
        }
    }
    if let Some(cmd) = &args.on_reauth {
        for alias in &reauth {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("GRAMKEY_ACCOUNT", alias)
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("--on-reauth command failed for {alias}");
            }
        }
    }
    if !reauth.is_empty() {
        return Err(NeedsReauth(format!("{} must sign in again", reauth.join(", "))).into());
    }
    if failed > 0 {
        bail!("{failed} refresh(es) failed; the tokens were kept");
    }
    Ok(())
}

async fn logout(vault: &Vault, account: Option<String>, revoke: bool) -> Result<()> {
    let accounts = vault.load()?;
    let a = accounts
        .find(account.as_deref())
        .cloned()
        .ok_or_else(|| no_account(account.as_deref()))?;
    if let (true, Some(token)) = (revoke, a.token()) {
        let client = client_for(&a.host)?;
        match client.remove_app(token).await {
            Ok(()) => println!("{}: the app's access was removed on the server", a.alias),
            // A token that no longer works is as good as revoked.
            Err(e) if e.needs_reauthorization() => {}
            Err(e) => bail!("revoking failed, nothing was forgotten: {e}"),
        }
    }
    vault.update(|all| {
        all.list.retain(|x| x.alias != a.alias);
        if all.default.as_deref() == Some(a.alias.as_str()) {
            all.default = all.list.first().map(|x| x.alias.clone());
        }
    })?;
    println!("{}: signed out", a.alias);
    Ok(())
}
