//! The developer side of `gramkey`: sign in through the browser (or a device code, or a token
//! on standard input), keep tokens in the encrypted vault, print them, keep them refreshed,
//! sign out. In the manner of `gh auth`.
//!
//! - `GRAMKEY_TOKEN` (with `GRAMKEY_HOST`) stands in for the vault in every command that uses
//!   a token, as `GH_TOKEN` does; `GRAMKEY_ACCOUNT` picks an account.
//! - A call answered "sign in again" (190) marks the account at once: `token` then exits 4.
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage; 4 the account needs the user to sign in
//! again (or there is no such account).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use gramkey_client::loopback::LoopbackRedirect;
use gramkey_client::model::AccessToken;
use gramkey_client::refresh::{RefreshPolicy, Refreshed, refresh, too_young};
use gramkey_client::vault::{Account, Accounts, Protection, Vault, VaultError, VaultKey};
use gramkey_client::{AuthorizeRequest, Client, Hosts, RetryPolicy};
use serde_json::json;

/// `println!` for a pipe that may close early (`gramkey auth media | head -1`): the output was
/// not wanted any more, so the command ends quietly instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::devcli::emit(format_args!($($arg)*))
    };
}

pub(crate) fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Exit code: the user must sign in again.
pub const EXIT_REAUTH: i32 = 4;

/// Exit code: bad usage, as clap's own.
pub const EXIT_USAGE: i32 = 2;

/// A mistake in how the command was called (a missing value, a malformed host): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

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
    fn path(&self) -> Result<PathBuf> {
        match &self.vault {
            Some(p) => Ok(p.clone()),
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .ok_or_else(|| anyhow!("no HOME: give --vault"))?;
                Ok(base.join("gramkey").join("vault.json"))
            }
        }
    }

    /// The vault, with its key from (in order) GRAMKEY_VAULT_KEY, GRAMKEY_VAULT_KEY_FILE, or
    /// the OS keyring (`gramkey auth key --keyring` put it there).
    fn open(&self) -> Result<Vault> {
        let path = self.path()?;
        let protection = match (key_in_use(&path)?, self.insecure_storage) {
            (Some(key), _) => Protection::Encrypted(key),
            (None, true) => Protection::Plaintext,
            (None, false) => {
                return Err(match Vault::new(&path, Protection::Plaintext).load() {
                    Ok(a) if path.exists() && !a.list.is_empty() => anyhow!(
                        "{} holds plaintext tokens (written with --insecure-storage): pass --insecure-storage to use it",
                        path.display()
                    ),
                    Err(VaultError::EncryptedVault(_)) => anyhow!(
                        "{} is encrypted: set the key it was written with, in GRAMKEY_VAULT_KEY or the file GRAMKEY_VAULT_KEY_FILE names",
                        path.display()
                    ),
                    _ => anyhow!(
                        "no vault key: set GRAMKEY_VAULT_KEY (64 hex characters, e.g. from `openssl rand -hex 32`), or keep one in a file (`gramkey auth key --file PATH`, then GRAMKEY_VAULT_KEY_FILE=PATH) or the OS keyring (`gramkey auth key --keyring`). --insecure-storage keeps tokens in plaintext instead"
                    ),
                });
            }
        };
        Ok(Vault::new(path, protection))
    }
}

/// The vault's key from GRAMKEY_VAULT_KEY, GRAMKEY_VAULT_KEY_FILE or the OS keyring, in that
/// order; `None` when none holds one.
fn key_in_use(vault: &std::path::Path) -> Result<Option<VaultKey>> {
    match VaultKey::from_env()? {
        Some(key) => Ok(Some(key)),
        None => keyring::stored(vault),
    }
}

/// The vault key in the OS keyring (macOS Keychain, Windows Credential Manager, the Secret
/// Service on Linux), one entry per vault. Machines without one (CI, SSH sessions, containers)
/// fall back to GRAMKEY_VAULT_KEY or GRAMKEY_VAULT_KEY_FILE.
mod keyring {
    use std::path::Path;

    use anyhow::{Result, anyhow};
    use gramkey_client::vault::VaultKey;

    const SERVICE: &str = "gramkey vault key";

    fn entry(vault: &Path) -> keyring::Result<keyring::Entry> {
        keyring::Entry::new(SERVICE, &vault.display().to_string())
    }

    /// Keyring calls block (a D-Bus round trip on Linux): off the runtime's workers.
    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    /// The key stored for `vault`, if the keyring has one; none when there is no keyring.
    pub fn stored(vault: &Path) -> Result<Option<VaultKey>> {
        match blocking(|| entry(vault).and_then(|e| e.get_password())) {
            Ok(hex) => VaultKey::from_hex(&hex)
                .map(Some)
                .map_err(|e| anyhow!("the OS keyring's vault key for {}: {e}", vault.display())),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "no OS keyring: the vault key comes from the environment");
                Ok(None)
            }
        }
    }

    /// Stores `hex` as `vault`'s key.
    pub fn store(vault: &Path, hex: &str) -> Result<()> {
        blocking(|| entry(vault).and_then(|e| e.set_password(hex))).map_err(|e| {
            anyhow!(
                "no OS keyring to keep the key in here ({e}). Keep it in a file instead: `gramkey auth key --file ~/.config/gramkey/vault.key`, then GRAMKEY_VAULT_KEY_FILE=~/.config/gramkey/vault.key"
            )
        })
    }
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Sign in and store the long-lived token: through the browser (a loopback redirect to
    /// 127.0.0.1 with PKCE), with a device code (--device), or with a token read from standard
    /// input (--with-token).
    Login(LoginArgs),
    /// Every account: who, where, its scopes, when its token expires, the last refresh. Exits
    /// 4 when an account needs signing in again, 1 when a refresh failed.
    Status {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Print an account's token (GRAMKEY_TOKEN when it is set). Exits 4 when the account must
    /// sign in again.
    Token {
        /// The account's alias, username or user id (default: the default account).
        #[arg(long, env = "GRAMKEY_ACCOUNT")]
        account: Option<String>,
        /// The token with its expiry, user and app, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh tokens: idempotent, for cron or a systemd timer.
    Refresh(RefreshArgs),
    /// Forget an account. --revoke first revokes this machine's token on the server;
    /// --remove-app removes the app's access for the user everywhere.
    Logout {
        /// The account's alias, username or user id (default: the default account).
        #[arg(long, env = "GRAMKEY_ACCOUNT")]
        account: Option<String>,
        /// Revoke this machine's token first (RFC 7009; a gramkey server, with the app's
        /// secret in GRAMKEY_CLIENT_SECRET). The user's other sign-ins keep working.
        #[arg(long, conflicts_with = "remove_app")]
        revoke: bool,
        /// Remove the app's access for this user first, on every device and for every token
        /// (DELETE /me/permissions; Instagram's only way to revoke).
        #[arg(long)]
        remove_app: bool,
        /// The app's secret, for --revoke.
        #[arg(long, env = "GRAMKEY_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
    },
    /// Every account, one per line: `*` for the default, then its alias, username, app id and
    /// host, separated by tabs.
    Accounts,
    /// The vault's key: the one in use (GRAMKEY_VAULT_KEY, GRAMKEY_VAULT_KEY_FILE or the OS
    /// keyring), or a new one when there is none; printed, or kept in the OS keyring or a file.
    Key {
        /// Keep it in the OS keyring, where `gramkey auth` finds it without GRAMKEY_VAULT_KEY.
        #[arg(long, conflicts_with = "file")]
        keyring: bool,
        /// Write it to this file (mode 0600), for GRAMKEY_VAULT_KEY_FILE.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Make an account the default.
    Use {
        /// The account's alias, username or user id.
        account: String,
    },
    /// The signed-in user's profile, from the server, as JSON.
    Me {
        /// The account's alias, username or user id (default: the default account).
        #[arg(long, env = "GRAMKEY_ACCOUNT")]
        account: Option<String>,
    },
    /// The signed-in user's media, newest first, as JSON lines (with --json, one document).
    Media {
        /// The account's alias, username or user id (default: the default account).
        #[arg(long, env = "GRAMKEY_ACCOUNT")]
        account: Option<String>,
        /// Every page (default: the first).
        #[arg(long)]
        all: bool,
        /// Per page (at most 100).
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// One JSON document instead of JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Write every account to FILE (`-`: standard output), encrypted with the key in
    /// GRAMKEY_EXPORT_KEY (64 hex).
    Export {
        /// Where to write (`-`: standard output).
        file: PathBuf,
    },
    /// Add the accounts of FILE (`-`: standard input), from `export`, with its
    /// GRAMKEY_EXPORT_KEY.
    Import {
        /// What to read (`-`: standard input).
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct LoginArgs {
    /// A gramkey server's base URL (default: the real Instagram hosts).
    #[arg(long, env = "GRAMKEY_HOST")]
    host: Option<String>,
    /// The app's client id (not needed with --account or --with-token).
    #[arg(long, env = "GRAMKEY_CLIENT_ID")]
    client_id: Option<String>,
    /// The app's secret. Prefer GRAMKEY_CLIENT_SECRET: a flag's value shows in `ps`.
    #[arg(long, env = "GRAMKEY_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Scopes, comma-separated.
    #[arg(long, default_value = "user_profile,user_media")]
    scopes: String,
    /// Sign in again as this account, with its host, app and scopes.
    #[arg(long)]
    account: Option<String>,
    /// Sign in with a device code (RFC 8628): the CLI shows a code to enter on the server's
    /// /device page from any browser. gramkey servers only: Instagram has no device flow.
    #[arg(long, conflicts_with_all = ["no_browser", "with_token"])]
    device: bool,
    /// Store a token read from standard input (from another machine, or a CI secret) instead
    /// of signing in. It is checked with /me first.
    #[arg(long)]
    with_token: bool,
    /// With --with-token: how long the token has left (default: 60 days, a long-lived token).
    #[arg(long, value_parser = humantime::parse_duration, requires = "with_token")]
    expires_in: Option<Duration>,
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
    /// The account's alias, username or user id (default: the default account).
    #[arg(long, env = "GRAMKEY_ACCOUNT")]
    account: Option<String>,
    /// Only accounts whose tokens are due (less than --threshold left); without it, every token
    /// at least 24 hours old. A younger one is never refreshed: Instagram refuses. Exits 4 when
    /// an account needs signing in again.
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

/// Each request gives up after this long, and connecting after `CONNECT_TIMEOUT`; a failed
/// read is tried `RETRIES` more times. A server that does not answer costs under a minute, and
/// the error says how long it took.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRIES: u32 = 2;

fn instagram() -> String {
    Hosts::instagram().graph.to_string()
}

fn client_for(host: &str) -> Result<Client> {
    let hosts = if host == instagram() {
        Hosts::instagram()
    } else {
        match Hosts::gramkey(host) {
            Ok(h) if matches!(h.graph.scheme(), "http" | "https") => h,
            _ => {
                return Err(usage(format!(
                    "--host {host:?} is not a URL: give it with its scheme, as http://{0} or https://{0}",
                    host.trim_start_matches("//")
                )));
            }
        }
    };
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("gramkey/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(Client::new(hosts).with_http(http).with_retry(RetryPolicy {
        max_retries: RETRIES,
        ..RetryPolicy::default()
    }))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A call to the server, its failure worded for a person: how long a network failure took,
/// when a rate limit ends.
async fn call<T>(
    request: impl std::future::Future<Output = Result<T, gramkey_client::Error>>,
) -> Result<T, CallError> {
    // Elapsed time for the message only, which no test moves.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    request.await.map_err(|error| CallError {
        error,
        took: started.elapsed(),
    })
}

/// A failed call, with how long it took.
#[derive(Debug)]
struct CallError {
    error: gramkey_client::Error,
    took: Duration,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.error;
        write!(f, "{e}")?;
        match e {
            gramkey_client::Error::Http { .. } => {
                write!(f, "; gave up after {} s", self.took.as_secs().max(1))
            }
            gramkey_client::Error::Api(a)
                if a.kind == "invalid_client" || a.message.contains("client secret") =>
            {
                write!(
                    f,
                    "; check the app's --client-id and GRAMKEY_CLIENT_SECRET (`gramkey app rotate-secret APP` makes a new secret)"
                )
            }
            _ if e.failure() == gramkey_client::Failure::RateLimited => match e.retry_after() {
                Some(wait) => write!(
                    f,
                    "; rate limited: try again at {} (in {} s)",
                    date(now().saturating_add(i64::try_from(wait.as_secs()).unwrap_or(0))),
                    wait.as_secs()
                ),
                None => write!(f, "; rate limited: try again later"),
            },
            _ => Ok(()),
        }
    }
}

impl std::error::Error for CallError {}

/// `GRAMKEY_TOKEN`, when set: it stands in for the vault, on `GRAMKEY_HOST` (default:
/// Instagram).
fn env_token() -> Option<(AccessToken, String)> {
    let nonempty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let token = nonempty("GRAMKEY_TOKEN")?;
    let host = nonempty("GRAMKEY_HOST").unwrap_or_else(instagram);
    Some((AccessToken::new(token.trim()), host))
}

/// Commands that change the vault's accounts refuse to run on `GRAMKEY_TOKEN`.
fn refuse_env_token(what: &str) -> Result<()> {
    if env_token().is_some() {
        bail!(
            "GRAMKEY_TOKEN is set, so commands use it rather than the vault; unset it to {what} the vault's accounts"
        );
    }
    Ok(())
}

/// The token a command uses: `GRAMKEY_TOKEN`, or a vault account's.
struct Signed {
    client: Client,
    token: AccessToken,
    /// The vault and the account's alias; none for `GRAMKEY_TOKEN`.
    account: Option<(Vault, String)>,
}

impl Signed {
    fn new(vault: &VaultArgs, name: Option<&str>) -> Result<Self> {
        if let Some((token, host)) = env_token() {
            return Ok(Self {
                client: client_for(&host)?,
                token,
                account: None,
            });
        }
        let v = vault.open()?;
        let accounts = v.load()?;
        let a = usable(&accounts, name)?;
        let token = a
            .token()
            .cloned()
            .ok_or_else(|| anyhow!("{} has no token", a.alias))?;
        Ok(Self {
            client: client_for(&a.host)?,
            token,
            account: Some((v, a.alias.clone())),
        })
    }

    /// A failed call. Answered "sign in again", the account is marked so at once (`token`
    /// then exits 4) and the error says how to sign in again.
    fn failed(&self, e: CallError) -> anyhow::Error {
        if !e.error.needs_reauthorization() {
            return e.into();
        }
        match &self.account {
            None => {
                NeedsReauth(format!("{e}: GRAMKEY_TOKEN no longer works; set a new one")).into()
            }
            Some((vault, alias)) => {
                let marked = vault.update(|a| match a.find_mut(alias) {
                    Some(acc) if acc.token.as_ref() == Some(&self.token) => {
                        acc.needs_reauthorization = true;
                        true
                    }
                    _ => false,
                });
                if let Err(v) = marked {
                    eprintln!("warning: could not mark {alias} as needing sign-in: {v}");
                }
                NeedsReauth(format!("{e}\n{}", sign_in_again(alias))).into()
            }
        }
    }
}

/// The exact command that signs an account in again.
fn sign_in_again(alias: &str) -> String {
    format!("{alias} must sign in again: `gramkey auth login --account {alias}`")
}

pub async fn run(vault: &VaultArgs, cmd: AuthCommand) -> Result<()> {
    match cmd {
        AuthCommand::Login(args) => login(&vault.open()?, args).await,
        AuthCommand::Status { json } => match env_token() {
            Some((_, host)) => {
                if json {
                    say!("{}", json!({"token_from_env": true, "host": host}));
                } else {
                    say!("GRAMKEY_TOKEN is set: commands use it, on {host}, rather than the vault");
                }
                Ok(())
            }
            None => status(&vault.open()?, json),
        },
        AuthCommand::Token { account, json } => match env_token() {
            Some((token, host)) => {
                if json {
                    say!("{}", json!({"access_token": token.expose(), "host": host}));
                } else {
                    say!("{}", token.expose());
                }
                Ok(())
            }
            None => token(&vault.open()?, account.as_deref(), json),
        },
        AuthCommand::Refresh(args) => {
            refuse_env_token("refresh")?;
            refresh_cmd(&vault.open()?, args).await
        }
        AuthCommand::Logout {
            account,
            revoke,
            remove_app,
            client_secret,
        } => {
            refuse_env_token("sign out")?;
            let how = match (revoke, remove_app) {
                (true, _) => Revoke::Token(client_secret),
                (_, true) => Revoke::App,
                _ => Revoke::Nothing,
            };
            logout(&vault.open()?, account, how).await
        }
        AuthCommand::Accounts => {
            let accounts = vault.open()?.load()?;
            for a in &accounts.list {
                let mark = if accounts.default.as_deref() == Some(a.alias.as_str()) {
                    "*"
                } else {
                    " "
                };
                say!(
                    "{mark} {}\t{}\t{}\t{}",
                    a.alias,
                    a.username.as_deref().unwrap_or("-"),
                    a.app_id,
                    a.host
                );
            }
            Ok(())
        }
        AuthCommand::Key { keyring, file } => key(vault, keyring, file),
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
            say!("{alias} is the default account");
            Ok(())
        }
        AuthCommand::Me { account } => {
            let s = Signed::new(vault, account.as_deref())?;
            let me = call(
                s.client
                    .me(&s.token, &["id", "username", "account_type", "media_count"]),
            )
            .await
            .map_err(|e| s.failed(e))?;
            say!(
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
        } => media(&Signed::new(vault, account.as_deref())?, all, limit, json).await,
        AuthCommand::Export { file } => {
            let from = vault.open()?.load()?;
            let n = from.list.len();
            let key = export_key()?;
            let write = |path: &std::path::Path| {
                Vault::new(path, Protection::Encrypted(key.clone())).update(|a| {
                    for account in from.list.clone() {
                        a.upsert(account);
                    }
                })
            };
            if file.as_os_str() == "-" {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join("export.json");
                write(&path)?;
                print!("{}", std::fs::read_to_string(&path)?);
                eprintln!("exported {n} account(s)");
            } else {
                write(&file)?;
                say!("exported {n} account(s) to {}", file.display());
            }
            Ok(())
        }
        AuthCommand::Import { file } => {
            let key = export_key()?;
            let stdin = file.as_os_str() == "-";
            let named = if stdin {
                "standard input".to_owned()
            } else {
                file.display().to_string()
            };
            let dir = tempfile::tempdir()?;
            let path = if stdin {
                let path = dir.path().join("import.json");
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
                std::fs::write(&path, text)?;
                path
            } else if file.is_file() {
                file.clone()
            } else {
                bail!("{named}: no such file, nothing was imported");
            };
            let from = Vault::new(&path, Protection::Encrypted(key))
                .load()
                .map_err(|e| match e {
                    VaultError::WrongKey(_) => anyhow!(
                        "GRAMKEY_EXPORT_KEY does not open {named}: it was exported with another key. Nothing was imported"
                    ),
                    VaultError::Corrupt { why, .. } => anyhow!(
                        "{named} is not an export of `gramkey auth export` ({why}). Nothing was imported"
                    ),
                    other => other.into(),
                })?;
            let n = from.list.len();
            vault.open()?.update(|a| {
                for account in from.list {
                    a.upsert(account);
                }
            })?;
            say!("imported {n} account(s)");
            Ok(())
        }
    }
}

/// `gramkey auth key`: the key in use, or a new one, printed or kept.
fn key(vault: &VaultArgs, in_keyring: bool, file: Option<PathBuf>) -> Result<()> {
    let path = vault.path()?;
    let key = match key_in_use(&path)? {
        Some(key) => key,
        None if path.exists() => bail!(
            "{} exists but no key is set: set the key it was written with (GRAMKEY_VAULT_KEY) and run this again to keep it",
            path.display()
        ),
        None => VaultKey::from_hex(&gramkey_domain::entropy::random_hex(
            &gramkey_domain::OsEntropy,
            64,
        ))?,
    };
    // Only a key that opens the vault (or a vault not written yet) is kept.
    Vault::new(&path, Protection::Encrypted(key.clone())).load()?;
    let hex = key.to_hex();
    if in_keyring {
        keyring::store(&path, &hex)?;
        say!("The vault key of {} is in the OS keyring.", path.display());
    } else if let Some(file) = file {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&file).with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten)",
                file.display()
            )
        })?;
        writeln!(f, "{hex}")?;
        say!(
            "The vault key is in {}: set GRAMKEY_VAULT_KEY_FILE={}",
            file.display(),
            file.display()
        );
    } else {
        say!("{hex}");
    }
    Ok(())
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
        usage("set GRAMKEY_EXPORT_KEY (64 hex characters, e.g. from `openssl rand -hex 32`) to encrypt or open an export")
    })?;
    Ok(VaultKey::from_hex(&hex)?)
}

/// The account to use; exit code 4 when there is none, or it needs the user again.
fn usable<'a>(accounts: &'a Accounts, name: Option<&str>) -> Result<&'a Account> {
    let a = accounts.find(name).ok_or_else(|| no_account(name))?;
    if a.needs_sign_in(now()) {
        return Err(NeedsReauth(sign_in_again(&a.alias)).into());
    }
    Ok(a)
}

async fn media(s: &Signed, all: bool, limit: u32, json: bool) -> Result<()> {
    let fields = [
        "id",
        "caption",
        "media_type",
        "media_url",
        "permalink",
        "timestamp",
    ];
    let mut pages = s.client.media(&s.token, &fields, limit.clamp(1, 100));
    // A spinner on a terminal only: redirected output stays clean.
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && all {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut items = Vec::new();
    let mut count = 0;
    while let Some(page) = call(pages.next_page()).await.map_err(|e| s.failed(e))? {
        count += page.len();
        for m in page {
            let line = json!({
                "id": m.id, "caption": m.caption, "media_type": m.media_type,
                "media_url": m.media_url, "permalink": m.permalink, "timestamp": m.timestamp,
            });
            if json {
                items.push(line);
            } else {
                say!("{line}");
            }
        }
        progress.set_message(format!("{count} media"));
        progress.tick();
        if !all {
            if pages.has_more() {
                eprintln!("(more media: --all reads every page)");
            }
            break;
        }
    }
    progress.finish_and_clear();
    if json {
        say!("{}", serde_json::to_string_pretty(&items)?);
    }
    Ok(())
}
/// A redirect URL pasted on standard input (for `--no-browser` on another machine). Anything
/// else is answered with a hint, and it waits on; at the end of input it waits for the
/// loopback callback alone.
async fn pasted(redirect: String, state: String) -> Result<String> {
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
        let url = url::Url::parse(text)
            .ok()
            .filter(|u| u.as_str().starts_with(&redirect));
        match url {
            Some(u)
                if u.query_pairs()
                    .any(|(k, v)| k == "state" && v != state.as_str()) =>
            {
                eprintln!(
                    "That URL is from another sign-in (its state is not this one's). Paste the URL this sign-in ended on, or finish in the browser."
                )
            }
            Some(u) if u.query_pairs().any(|(k, _)| k == "code" || k == "error") => {
                return Ok(u.query().unwrap_or_default().to_owned());
            }
            _ => eprintln!(
                "That is not where the browser ended up. Paste the whole URL, starting {redirect}?code=…, or finish signing in in the browser."
            ),
        }
    }
}

async fn login(vault: &Vault, args: LoginArgs) -> Result<()> {
    // Refuse early if the vault cannot be opened.
    let existing = vault.load()?;
    let again = match args.account.as_deref() {
        Some(name) => Some(
            existing
                .find(Some(name))
                .cloned()
                .ok_or_else(|| no_account(Some(name)))?,
        ),
        None => None,
    };
    let host = match &again {
        Some(a) => a.host.clone(),
        None => args.host.clone().unwrap_or_else(instagram),
    };
    let client = client_for(&host)?;
    if args.with_token {
        return with_token(vault, &client, &args, again.as_ref()).await;
    }
    let client_id = again
        .as_ref()
        .map(|a| a.app_id.clone())
        .or_else(|| args.client_id.clone())
        .ok_or_else(|| usage("give the app's client id: --client-id, or GRAMKEY_CLIENT_ID"))?;
    let secret = args.client_secret.clone().ok_or_else(|| {
        usage(
            "set GRAMKEY_CLIENT_SECRET to the app's secret (or pass --client-secret, though the environment keeps it out of `ps`)",
        )
    })?;
    // On a gramkey server the app's credentials (and the server itself) are checked before
    // anyone is sent to sign in: an introspection of no token, which needs the client to
    // authenticate and changes nothing. Instagram's hosts have no such endpoint.
    if host != instagram() {
        let nothing = AccessToken::new("credentials-check");
        call(client.introspect(&client_id, &secret, &nothing)).await?;
    }
    let scopes: Vec<String> = match &again {
        Some(a) => a.scopes.clone(),
        None => args
            .scopes
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect(),
    };
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let short = if args.device {
        device_sign_in(
            &client,
            &host,
            (&client_id, &secret),
            &scope_refs,
            args.timeout,
        )
        .await?
    } else {
        browser_sign_in(&client, &args, (&client_id, &secret), &scope_refs).await?
    };
    let long = call(client.long_lived(&secret, &short)).await?;
    let me = call(client.me(&long.access_token, &["id", "username"])).await?;
    check_same_user(again.as_ref(), &me)?;
    let expires_in = long.expires_in.unwrap_or(60 * 24 * 3600);
    let alias = args.alias.clone().or(again.map(|a| a.alias));
    store_account(
        vault,
        &client,
        client_id,
        me,
        scopes,
        (long.access_token, expires_in),
        alias,
    )
}

/// `--account A` signs A in again: someone else signing in instead is refused, and nothing is
/// stored.
fn check_same_user(again: Option<&Account>, me: &gramkey_client::model::User) -> Result<()> {
    match again {
        Some(a) if a.user_id != me.id => bail!(
            "signed in as {}, not as {} (the account {}): nothing was stored. Sign in as {}, or without --account to add {} as an account of its own",
            me.username.as_deref().unwrap_or(&me.id),
            a.username.as_deref().unwrap_or(&a.user_id),
            a.alias,
            a.username.as_deref().unwrap_or(&a.user_id),
            me.username.as_deref().unwrap_or(&me.id),
        ),
        _ => Ok(()),
    }
}

/// Stores a signed-in account and says so.
fn store_account(
    vault: &Vault,
    client: &Client,
    app_id: String,
    me: gramkey_client::model::User,
    scopes: Vec<String>,
    (token, expires_in): (AccessToken, i64),
    alias: Option<String>,
) -> Result<()> {
    let at = now();
    // Only an alias given (or the account's own, with --account) renames a stored account.
    let rename = alias.is_some();
    let alias = alias
        .or_else(|| me.username.clone())
        .unwrap_or_else(|| me.id.clone());
    let account = Account {
        host: client.hosts().graph.to_string(),
        app_id,
        user_id: me.id.clone(),
        username: me.username.clone(),
        alias,
        scopes,
        issued_at: at,
        expires_at: at.saturating_add(expires_in),
        last_refreshed_at: None,
        last_refresh_error: None,
        needs_reauthorization: false,
        token: Some(token),
    };
    let same = |x: &Account| {
        x.user_id == account.user_id && x.host == account.host && x.app_id == account.app_id
    };
    let wanted = account.alias.clone();
    let (stored, default) = vault.update(|a| {
        a.upsert(account.clone());
        // An alias asked for wins over the one the account had, unless another account has it.
        let taken = a.list.iter().any(|x| x.alias == wanted && !same(x));
        if rename && !taken {
            let old = a
                .list
                .iter_mut()
                .find(|x| same(x))
                .map(|x| std::mem::replace(&mut x.alias, wanted.clone()));
            if old.is_some() && a.default == old {
                a.default = Some(wanted.clone());
            }
        }
        let stored = a.list.iter().find(|x| same(x)).map(|x| x.alias.clone());
        (stored, a.default.clone())
    })?;
    let stored = stored.unwrap_or(account.alias);
    say!(
        "Signed in as {} ({stored}). Token stored in {}.",
        me.username.as_deref().unwrap_or(&me.id),
        vault.backend()
    );
    if let Some(default) = default.filter(|d| *d != stored) {
        say!(
            "The default account is still {default}: `gramkey auth use {stored}` makes this one the default."
        );
    }
    Ok(())
}

/// Why no browser can be opened here, if none can: no display to show one on.
fn no_display() -> Option<&'static str> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let needs_display = cfg!(unix) && !cfg!(target_os = "macos");
    (needs_display && !set("DISPLAY") && !set("WAYLAND_DISPLAY") && !set("BROWSER"))
        .then_some("no display: DISPLAY and WAYLAND_DISPLAY are not set")
}

/// Opens `url` in a browser; why it could not, if it could not. A browser opener that fails
/// later (it ran, then exited non-zero) is reported when it does.
fn open_browser(url: &str, fallback: String) -> Option<String> {
    if let Some(why) = no_display() {
        return Some(why.to_owned());
    }
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            }
            .into()
        });
    let child = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        Err(e) => Some(format!("{opener} could not be started: {e}")),
        Ok(mut child) => {
            std::thread::spawn(move || {
                if let Ok(status) = child.wait()
                    && !status.success()
                {
                    say!("{opener} failed ({status}). {fallback}");
                }
            });
            None
        }
    }
}

/// The browser flow: the loopback redirect, or the URL the browser ended on pasted here.
async fn browser_sign_in(
    client: &Client,
    args: &LoginArgs,
    (client_id, secret): (&str, &str),
    scopes: &[&str],
) -> Result<AccessToken> {
    let loopback = LoopbackRedirect::bind(args.redirect_port, &args.redirect_path).await?;
    let redirect = loopback.redirect_uri();
    let req = AuthorizeRequest::new(client_id, &redirect, scopes);
    let url = req.url(client.hosts());
    let wait = humantime::format_duration(args.timeout);
    say!("Open this URL in a browser to sign in:\n  {url}");
    let paste = format!(
        "Open the URL above in a browser on any device and sign in. It ends on a page that does not load ({redirect}?code=…): paste that page's whole URL here."
    );
    if args.no_browser {
        say!("{paste}");
    } else {
        match open_browser(url.as_str(), paste.clone()) {
            None => say!(
                "Opened a browser. (If none opened: {})",
                paste.trim_end_matches('.')
            ),
            Some(why) => say!("Could not open a browser here ({why}). {paste}"),
        }
    }
    say!("Waiting up to {wait} for the sign-in…");
    let query = tokio::time::timeout(args.timeout, async {
        tokio::select! {
            q = loopback.redirect_query(req.state()) => q.map_err(anyhow::Error::from),
            q = pasted(redirect.clone(), req.state().to_owned()) => q,
        }
    })
    .await
    .map_err(|_| anyhow!("no sign-in within {wait}: run the command again"))??;
    let code = req.code_from_redirect(&query)?;
    let app = gramkey_client::AppCredentials::new(client_id, secret);
    let short = call(client.exchange(&app, &req, &code)).await?;
    Ok(short.access_token)
}

/// The device flow (RFC 8628): a code to enter on the server's /device page.
async fn device_sign_in(
    client: &Client,
    host: &str,
    (client_id, secret): (&str, &str),
    scopes: &[&str],
    timeout: Duration,
) -> Result<AccessToken> {
    if host == instagram() {
        bail!(
            "Instagram has no device flow (RFC 8628); only gramkey servers offer it (--host). On a machine without a browser, use `gramkey auth login --no-browser`: it prints a URL to open on any device, and you paste back the URL the browser ends on"
        );
    }
    let codes = call(client.device_code(client_id, secret, scopes)).await?;
    let wait = timeout.min(Duration::from_secs(codes.expires_in.max(0).unsigned_abs()));
    say!(
        "To sign in, open {} on any device and enter the code\n\n    {}\n",
        codes.verification_uri,
        codes.user_code
    );
    if let Some(complete) = &codes.verification_uri_complete {
        say!("(or open {complete}, which has the code filled in)");
    }
    say!(
        "Waiting up to {} for the code to be entered…",
        humantime::format_duration(wait)
    );
    let again = format!(
        "run `gramkey auth login --host {host} --client-id {client_id} --device` again for a new code"
    );
    match tokio::time::timeout(wait, client.device_token(client_id, secret, &codes)).await {
        Err(_) => bail!(
            "the code was not entered within {}: {again}",
            humantime::format_duration(wait)
        ),
        Ok(Ok(token)) => Ok(token.access_token),
        Ok(Err(gramkey_client::Error::Api(e))) if e.kind == "access_denied" => {
            bail!("the sign-in was cancelled on the /device page")
        }
        Ok(Err(gramkey_client::Error::Api(e))) if e.kind == "expired_token" => {
            bail!("the code expired before it was entered: {again}")
        }
        Ok(Err(error)) => Err(CallError { error, took: wait }.into()),
    }
}

/// `--with-token`: a token from standard input, checked with /me, stored.
async fn with_token(
    vault: &Vault,
    client: &Client,
    args: &LoginArgs,
    again: Option<&Account>,
) -> Result<()> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(usage(
            "--with-token reads the token from standard input, which was empty: `gramkey auth login --with-token < token.txt`",
        ));
    }
    let token = AccessToken::new(token);
    let me = call(client.me(&token, &["id", "username"]))
        .await
        .map_err(|e| anyhow!("that token does not work on {}: {e}", client.hosts().graph))?;
    check_same_user(again, &me)?;
    // The same user on the same host, already in the vault: its app, rather than a second
    // account of an unknown app.
    let known = vault.load()?.list.into_iter().find(|a| {
        a.host == client.hosts().graph.as_str()
            && a.user_id == me.id
            && args.client_id.as_ref().is_none_or(|id| *id == a.app_id)
    });
    let again = again.or(known.as_ref());
    let app_id = again
        .map(|a| a.app_id.clone())
        .or_else(|| args.client_id.clone())
        .unwrap_or_else(|| "-".into());
    let scopes = again.map(|a| a.scopes.clone()).unwrap_or_default();
    let expires_in = args.expires_in.map_or(60 * 24 * 3600, secs);
    let alias = args.alias.clone().or(again.map(|a| a.alias.clone()));
    store_account(
        vault,
        client,
        app_id,
        me,
        scopes,
        (token, expires_in),
        alias,
    )?;
    if args.expires_in.is_none() {
        say!(
            "Its expiry is not known here: counted as a long-lived token, 60 days from now (--expires-in says otherwise)."
        );
    }
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

fn date(at: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(at.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

fn status(vault: &Vault, json: bool) -> Result<()> {
    let accounts = vault.load()?;
    let t = now();
    let needs_sign_in: Vec<&str> = accounts
        .list
        .iter()
        .filter(|a| a.needs_sign_in(t))
        .map(|a| a.alias.as_str())
        .collect();
    let failed = accounts
        .list
        .iter()
        .filter(|a| a.last_refresh_error.is_some())
        .count();
    if json {
        let list: Vec<_> = accounts
            .list
            .iter()
            .map(|a| {
                json!({
                    "alias": a.alias, "username": a.username, "user_id": a.user_id,
                    "app_id": a.app_id, "host": a.host, "scopes": a.scopes,
                    "expires_at": a.expires_at, "expires_in": a.expires_at - t,
                    "last_refreshed_at": a.last_refreshed_at,
                    "last_refresh_error": a.last_refresh_error,
                    "needs_sign_in": a.needs_sign_in(t),
                    "default": accounts.default.as_deref() == Some(a.alias.as_str()),
                })
            })
            .collect();
        say!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "vault": vault.path(),
                "encrypted": vault.encrypted(),
                "accounts": list,
            }))?
        );
    } else {
        say!("vault: {}", vault.backend());
        if accounts.list.is_empty() {
            say!("no accounts: `gramkey auth login` signs one in");
        }
        for a in &accounts.list {
            let mark = if accounts.default.as_deref() == Some(a.alias.as_str()) {
                "*"
            } else {
                " "
            };
            say!(
                "{mark} {}  {} on {}, app {}",
                a.alias,
                a.username.as_deref().unwrap_or(&a.user_id),
                a.host,
                a.app_id
            );
            let state = if a.needs_sign_in(t) {
                format!("NEEDS SIGN-IN: `gramkey auth login --account {}`", a.alias)
            } else {
                format!("expires {} ({})", date(a.expires_at), left(a.expires_at, t))
            };
            say!("    token:     {state}");
            say!(
                "    scopes:    {}",
                if a.scopes.is_empty() {
                    "-".into()
                } else {
                    a.scopes.join(", ")
                }
            );
            let refreshed = a.last_refreshed_at.map_or_else(|| "never".into(), date);
            say!("    refreshed: {refreshed}");
            if let Some(e) = &a.last_refresh_error {
                say!("    last refresh failed: {e}");
            }
        }
    }
    if !needs_sign_in.is_empty() {
        return Err(NeedsReauth(format!("{} must sign in again", needs_sign_in.join(", "))).into());
    }
    if failed > 0 {
        bail!(
            "the last refresh of {failed} account(s) failed (`gramkey auth refresh` tries again)"
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
        say!(
            "{}",
            json!({"access_token": token.expose(), "expires_at": a.expires_at, "user_id": a.user_id, "app_id": a.app_id, "host": a.host})
        );
    } else {
        say!("{}", token.expose());
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
            eprintln!("{}", sign_in_again(&a.alias));
            reauth.push(a.alias.clone());
            continue;
        }
        let client = client_for(&a.host)?;
        match refresh(&client, vault, &a.alias, &policy, now(), !args.if_due).await {
            Ok(Refreshed::Now { expires_at }) => {
                say!("{}: refreshed, {}", a.alias, left(expires_at, now()));
            }
            Ok(Refreshed::Elsewhere) => say!("{}: refreshed by another process", a.alias),
            Ok(Refreshed::NotDue) if too_young(&a, now()) => say!(
                "{}: not due yet: the token is less than 24 hours old, and Instagram refreshes none younger (refreshable from {})",
                a.alias,
                date(a.issued_at.max(a.last_refreshed_at.unwrap_or(0)) + 24 * 3600)
            ),
            Ok(Refreshed::NotDue) => {
                say!("{}: not due ({})", a.alias, left(a.expires_at, now()));
            }
            Err(e) if e.needs_reauthorization() => {
                eprintln!("{}: {e}\n{}", a.alias, sign_in_again(&a.alias));
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

/// What `logout` does on the server before forgetting the account.
enum Revoke {
    Nothing,
    /// This machine's token (RFC 7009), with the app's secret.
    Token(Option<String>),
    /// The app's access for the user, everywhere.
    App,
}

async fn logout(vault: &Vault, account: Option<String>, how: Revoke) -> Result<()> {
    let accounts = vault.load()?;
    let a = accounts
        .find(account.as_deref())
        .cloned()
        .ok_or_else(|| no_account(account.as_deref()))?;
    if let Some(token) = a.token() {
        let client = client_for(&a.host)?;
        let nothing_forgotten = "nothing was forgotten";
        match how {
            Revoke::Nothing => {}
            Revoke::Token(_) if a.host == instagram() => bail!(
                "Instagram cannot revoke one token; `--remove-app` removes the app's access for {} everywhere (every device, every token); {nothing_forgotten}",
                a.alias
            ),
            Revoke::Token(None) => {
                return Err(usage(format!(
                    "--revoke needs the app's secret: set GRAMKEY_CLIENT_SECRET; {nothing_forgotten}"
                )));
            }
            Revoke::Token(_) if a.app_id == "-" => bail!(
                "{} was stored with --with-token and no --client-id, so its app is unknown and its token cannot be revoked here; `--remove-app` removes the app's access instead. {nothing_forgotten}",
                a.alias
            ),
            Revoke::Token(Some(secret)) => {
                match call(client.revoke(&a.app_id, &secret, token)).await {
                    Ok(()) => say!(
                        "{}: this machine's token was revoked on {}; other sign-ins to the app keep working",
                        a.alias,
                        a.host
                    ),
                    Err(e) => bail!("revoking failed, {nothing_forgotten}: {e}"),
                }
            }
            Revoke::App => match call(client.remove_app(token)).await {
                Ok(()) => say!(
                    "{}: the app's access was removed on {}, for every device and token",
                    a.alias,
                    a.host
                ),
                // A token that no longer works is as good as removed.
                Err(e) if e.error.needs_reauthorization() => {}
                Err(e) => bail!("removing the app failed, {nothing_forgotten}: {e}"),
            },
        }
    }
    vault.update(|all| {
        all.list.retain(|x| x.alias != a.alias);
        if all.default.as_deref() == Some(a.alias.as_str()) {
            all.default = all.list.first().map(|x| x.alias.clone());
        }
    })?;
    say!("{}: signed out", a.alias);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gramkey_client::ApiError;

    fn failed(status: u16, code: u32, retry_after: Option<u64>) -> CallError {
        CallError {
            error: gramkey_client::Error::Api(ApiError {
                status,
                code: Some(code),
                subcode: None,
                kind: "OAuthException".into(),
                message: "Application request limit reached".into(),
                retry_after: retry_after.map(Duration::from_secs),
            }),
            took: Duration::from_secs(3),
        }
    }

    #[test]
    fn a_rate_limit_says_when_to_try_again() {
        let shown = failed(429, 4, Some(90)).to_string();
        assert!(shown.contains("; rate limited: try again at 20"), "{shown}");
        assert!(shown.ends_with("Z (in 90 s)"), "{shown}");
        let shown = failed(429, 4, None).to_string();
        assert!(
            shown.ends_with("; rate limited: try again later"),
            "{shown}"
        );
        // Anything else is the server's words alone.
        let shown = failed(400, 100, None).to_string();
        assert_eq!(
            shown,
            "HTTP 400, code 100 (OAuthException): Application request limit reached"
        );
    }
}
