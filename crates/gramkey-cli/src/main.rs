//! The `gramkey` binary: `gramkey serve` runs the server; `app` and `user` manage the same
//! database from the command line. Configuration: defaults, then `GRAMKEY_*` environment
//! variables, then flags.

mod config;
mod devcli;
mod layered;
mod tools;

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::retention::Retention;
use gramkey_domain::{AppMode, Password, Role};
use gramkey_server::ops::{NewAppInput, Ops, app_json, callback_json, user_json};
use gramkey_server::origin::Origin;
use gramkey_server::sandbox::{authorize_url, sandbox_app, seed_if_empty};
use gramkey_server::transport::Transport;
use gramkey_server::{AppState, Node, ServerConfig};
use gramkey_store::Profile;
use serde_json::json;

use crate::config::Global;

/// mimalloc, not the system allocator. Each Argon2id password check allocates 19 MiB; glibc's
/// malloc raises its mmap threshold once such a block is freed and then keeps the blocks in
/// per-thread arenas, so a node's heap grew by that much for every thread that ever checked a
/// password (450 MB after 24 sign-ins). mimalloc returns freed memory to the system within
/// milliseconds (BENCHMARKS.md, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "gramkey",
    version,
    about = "An Instagram-compatible OAuth server and its tools"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (seeds a sandbox on first start).
    Serve(Box<ServeArgs>),
    /// Print the effective configuration of `serve` (defaults, the --config file, GRAMKEY_*
    /// variables, flags) with where each value came from, secrets redacted; exit non-zero on
    /// an unknown key or a bad value, naming it.
    CheckConfig(Box<ServeArgs>),
    /// Manage apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Show and requeue deauthorize and data-deletion callbacks.
    #[command(subcommand)]
    Callbacks(CallbacksCommand),
    /// Show, test and requeue webhook notifications (docs/webhooks.md).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Delete expired codes, tokens and finished callbacks past their retention (the server
    /// does this on its own).
    Janitor(JanitorArgs),
    /// Generate sandbox data.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Read the audit log, newest first.
    Audit(AuditArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Sign in to Instagram or a gramkey server and keep the tokens: login, status, token,
    /// refresh, logout.
    Auth {
        #[command(flatten)]
        vault: devcli::VaultArgs,
        #[command(subcommand)]
        command: devcli::AuthCommand,
    },
}

#[derive(Args)]
struct AuditArgs {
    /// Only this app's events.
    #[arg(long)]
    app: Option<String>,
    /// Only this user's events (a username).
    #[arg(long)]
    user: Option<String>,
    /// Only this event (token_issued, token_exchanged, token_refreshed, token_revoked,
    /// code_replay, client_auth_failed, login_failed, login_succeeded, consent_granted,
    /// consent_removed, secret_rotated, app_created, app_changed, app_deleted, rate_limited).
    #[arg(long)]
    event: Option<String>,
    /// Only events since: Unix time, YYYY-MM-DD or RFC 3339.
    #[arg(long)]
    since: Option<String>,
    /// Only events older than this event id (to page back).
    #[arg(long)]
    before: Option<i64>,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Add users with media (images, videos, albums), captions with hashtags, and comments
    /// from each other. The same seed gives the same data; passwords are random and printed.
    Seed {
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        users: u32,
        /// Media per user.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        media: u32,
        /// 0 to 999999 (it is part of the usernames, which are at most 30 characters).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=999_999))]
        seed: u64,
        /// The URL the server is reached at: media URLs point at its placeholder images.
        #[arg(
            long,
            env = "GRAMKEY_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
    /// A sandbox user comments on a post (or replies to a comment), as in the Instagram app:
    /// the post owner's subscribed apps get a `comments` notification, and each @mentioned
    /// account's a `mentions` one.
    Comment {
        /// Who comments (a username).
        #[arg(long = "as")]
        author: String,
        /// The post's media id.
        media: String,
        /// The text; @username mentions an account.
        text: String,
        /// Reply to this top-level comment of the post.
        #[arg(long)]
        reply_to: Option<String>,
    },
    /// Make something happen to an app's user, through the API's code path: another sandbox
    /// user comments on their latest post, or @mentions them; a subscribed live app gets the
    /// webhook.
    Trigger {
        #[arg(value_parser = ["comment", "mention"])]
        what: String,
        /// The app that should hear of it.
        #[arg(long)]
        app: String,
        /// The app's user it happens to (a username who authorized the app).
        #[arg(long)]
        user: String,
        /// Who comments (default: the first other sandbox user).
        #[arg(long = "as")]
        author: Option<String>,
    },
    /// Save the sandbox's users, apps (with roles), media and comments as a JSON fixture
    /// (FILE, or - for standard output).
    Export { file: String },
    /// Create what a fixture holds and the sandbox does not; keep what exists (importing
    /// twice gives the same ids). Prints each app's client secret on this server.
    Import {
        file: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete every app and user, with everything issued to them or theirs (the audit log
    /// stays). The next `serve` seeds a fresh sandbox unless --no-sandbox.
    Reset {
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// The newest notifications: field, state, attempts, the endpoint's last answer.
    List {
        /// Only this app's.
        #[arg(long)]
        app: Option<String>,
        /// How many, newest first (1 to 1000).
        #[arg(long, default_value_t = gramkey_server::ops::CALLBACK_LIST_LIMIT,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print JSON, bodies included.
        #[arg(long)]
        json: bool,
    },
    /// Queue a test notification of FIELD to the app's subscribed URL, whatever its mode (the
    /// "Test" button of Meta's dashboard).
    Test {
        app: String,
        /// comments, mentions, live_comments, messages, …
        #[arg(default_value = "comments")]
        field: String,
    },
    /// Queue a failed notification for another round of attempts, now.
    Retry { id: i64 },
    /// Run a webhook endpoint on this machine, for trying an app's subscription: it answers the
    /// verification for --verify-token, checks each notification's X-Hub-Signature-256 with
    /// the app secret in GRAMKEY_CLIENT_SECRET, and prints it. Any path is the endpoint.
    Listen {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// The verify token given with the subscription (hub.verify_token).
        #[arg(long, env = "GRAMKEY_WEBHOOK_VERIFY_TOKEN")]
        verify_token: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MediaKind {
    Image,
    Video,
    Album,
}

#[derive(Subcommand)]
enum CallbacksCommand {
    /// The newest callbacks: state, attempts, last error, confirmation code.
    List {
        /// Only this app's.
        #[arg(long)]
        app: Option<String>,
        /// How many, newest first (1 to 1000).
        #[arg(long, default_value_t = gramkey_server::ops::CALLBACK_LIST_LIMIT,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed callback for another round of attempts, now.
    Retry { id: i64 },
}

#[derive(Args)]
struct RetentionArgs {
    /// Keep codes this long after they expire (a replay is detected only while the code row
    /// exists).
    #[arg(long, env = "GRAMKEY_RETAIN_CODES", default_value = "1d", value_parser = humantime::parse_duration)]
    retain_codes: std::time::Duration,
    /// Keep tokens this long after they expire or are revoked.
    #[arg(long, env = "GRAMKEY_RETAIN_TOKENS", default_value = "30d", value_parser = humantime::parse_duration)]
    retain_tokens: std::time::Duration,
    /// Keep delivered and failed callbacks this long after their last attempt.
    #[arg(long, env = "GRAMKEY_RETAIN_CALLBACKS", default_value = "30d", value_parser = humantime::parse_duration)]
    retain_callbacks: std::time::Duration,
    /// Keep audit events this long.
    #[arg(long, env = "GRAMKEY_RETAIN_AUDIT", default_value = "365d", value_parser = humantime::parse_duration)]
    retain_audit: std::time::Duration,
    /// Keep hourly app usage (what app insights read) this long.
    #[arg(long, env = "GRAMKEY_RETAIN_USAGE", default_value = "30d", value_parser = humantime::parse_duration)]
    retain_usage: std::time::Duration,
}

impl RetentionArgs {
    fn retention(&self) -> Retention {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Retention {
            codes_after_expiry: secs(self.retain_codes),
            tokens_after_end: secs(self.retain_tokens),
            callbacks_after_end: secs(self.retain_callbacks),
            audit: secs(self.retain_audit),
            usage: secs(self.retain_usage),
        }
    }
}

#[derive(Args)]
struct JanitorArgs {
    /// Run one pass and exit.
    #[arg(long, required = true)]
    once: bool,
    #[command(flatten)]
    retention: RetentionArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GRAMKEY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients use to reach this server (default: http://LISTEN, or https://LISTEN
    /// with TLS).
    #[arg(long, env = "GRAMKEY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "GRAMKEY_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "GRAMKEY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve HTTPS with a certificate for localhost, 127.0.0.1 and ::1, made once and kept in
    /// the data directory (`tls-self-signed.crt`); point clients at it to trust it.
    #[arg(long, env = "GRAMKEY_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// How long the server waits for a request's head, on a new connection or an idle
    /// keep-alive one, and the longest pause inside a request's body (408 past it).
    #[arg(long, env = "GRAMKEY_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// How long one request that has a body may take, reading it included (408 past it).
    #[arg(long, env = "GRAMKEY_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: std::time::Duration,
    /// The most connections open at once; past it, new connections wait until one closes, and
    /// the log says so. Default: what the open-file limit allows (raised to its hard limit at
    /// start), less 256 kept for the database, logs and outbound requests.
    #[arg(long, env = "GRAMKEY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Do not seed the sandbox app and users into an empty database.
    #[arg(long, env = "GRAMKEY_NO_SANDBOX")]
    no_sandbox: bool,
    /// Seconds apps, users and tokens may be served from memory (0: off). Changes made through
    /// this server apply at once. On PostgreSQL every node and the CLI announce their changes
    /// (LISTEN/NOTIFY), so other nodes apply them at once too and this is only a backstop:
    /// default 60. On SQLite the server notices another process's writes (the CLI's) within
    /// 100 ms and drops its cache: default 2.
    #[arg(long, env = "GRAMKEY_CACHE_TTL")]
    cache_ttl: Option<u64>,
    #[command(flatten)]
    retention: RetentionArgs,
    /// How long after its first use a rotated refresh token may be used again (parallel
    /// refreshes); later reuse revokes the whole grant.
    #[arg(long, env = "GRAMKEY_REFRESH_REUSE_GRACE", default_value_t = std::time::Duration::from_secs(
        gramkey_domain::token::REFRESH_REUSE_GRACE_SECS.unsigned_abs()).into())]
    refresh_reuse_grace: humantime::Duration,
    /// How often the janitor runs.
    #[arg(long, env = "GRAMKEY_JANITOR_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    janitor_interval: std::time::Duration,
    /// Do not fetch the media a publishing container names: containers finish at once and
    /// the URL is stored unchecked (for sandboxes without network access).
    #[arg(long, env = "GRAMKEY_NO_FETCH_MEDIA")]
    no_fetch_media: bool,
    /// Let the server's own requests (media fetches, deauthorize and data-deletion callbacks,
    /// webhook verifications and notifications, alert webhooks) reach loopback, private and
    /// link-local addresses. Off, only public
    /// addresses are called, checked on every resolved address and redirect (SSRF policy in
    /// docs/security.md). Turn it on for a sandbox whose media or callbacks are on this machine.
    #[arg(long, env = "GRAMKEY_FETCH_ALLOW_PRIVATE")]
    fetch_allow_private: bool,
    /// How often due deauthorize and data-deletion callbacks and webhook notifications are
    /// looked for and sent.
    #[arg(long, env = "GRAMKEY_CALLBACK_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    callback_interval: std::time::Duration,
    /// Posts an account may publish through the API in 24 hours: what `media_publish` enforces
    /// and `content_publishing_limit` reports as `quota_total` (Instagram's has been 25, 50
    /// and 100).
    #[arg(long, env = "GRAMKEY_PUBLISH_QUOTA", default_value_t = gramkey_domain::graph::publish::QUOTA_TOTAL,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    publish_quota: u64,
    /// Log format. `json` puts the request id on every line logged while serving a request.
    #[arg(long, env = "GRAMKEY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A user who may open the admin console (/console) when signed in; repeat for more, or
    /// separate with commas. Anyone with the admin key may open it too.
    #[arg(
        long = "admin-user",
        env = "GRAMKEY_ADMIN_USERS",
        value_delimiter = ','
    )]
    admin_users: Vec<String>,
    /// This node's name in the sandbox's call log (default: the host name and the port).
    #[arg(long, env = "GRAMKEY_NODE_NAME")]
    node_name: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    watch: WatchArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnFailure {
    Open,
    Closed,
}

#[derive(Args)]
struct LimitArgs {
    /// Keep rate-limit budgets in this Redis (redis://host:port/db), shared by every node that
    /// uses it. Default: in this process.
    #[arg(long, env = "GRAMKEY_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// While Redis cannot be reached: `open` lets requests through unlimited, `closed` refuses
    /// them (Graph code 2, HTTP 503). Either way it is logged as an error once a minute.
    #[arg(
        long,
        env = "GRAMKEY_REDIS_FAILURE",
        value_enum,
        default_value = "open"
    )]
    redis_failure: OnFailure,
    /// Do not limit or watch resource calls (no usage headers, insights, rate or network
    /// alerts): for load tests. Sign-in and client-authentication throttling stay on.
    #[arg(long, env = "GRAMKEY_NO_RATE_LIMITS")]
    no_rate_limits: bool,
    /// The app pool: calls per rolling hour per user who authorized the app.
    #[arg(long, env = "GRAMKEY_APP_CALLS_PER_USER", default_value_t = 200)]
    app_calls_per_user: u64,
    /// Calls per rolling hour by one user through one app (Graph code 17 beyond).
    #[arg(long, env = "GRAMKEY_USER_CALLS", default_value_t = 1000)]
    user_calls: u64,
    /// Writes (publishing, comments) per rolling hour by one user through one live app; half
    /// as many in development mode.
    #[arg(long, env = "GRAMKEY_WRITES_PER_HOUR", default_value_t = 60)]
    writes_per_hour: u64,
    /// Legacy v1 calls per rolling hour per token of a live app (development mode: a tenth).
    #[arg(long, env = "GRAMKEY_LEGACY_CALLS_PER_TOKEN", default_value_t = 5000)]
    legacy_calls_per_token: u64,
    /// Wall-clock milliseconds per call of the app pool (`total_time`'s budget).
    #[arg(long, env = "GRAMKEY_APP_TIME_MS_PER_CALL", default_value_t = 100)]
    app_time_ms_per_call: u64,
    /// CPU milliseconds per call of the app pool (`total_cputime`'s budget).
    #[arg(long, env = "GRAMKEY_APP_CPU_MS_PER_CALL", default_value_t = 50)]
    app_cpu_ms_per_call: u64,
    /// Failed sign-ins per 15 minutes per account before it is locked (until the oldest
    /// failure is 15 minutes old).
    #[arg(long, env = "GRAMKEY_LOGIN_FAILURES", default_value_t = 5)]
    login_failures: u64,
    /// Failed client authentications per 15 minutes from one address before it is throttled.
    #[arg(long, env = "GRAMKEY_CLIENT_AUTH_FAILURES", default_value_t = 30)]
    client_auth_failures: u64,
    /// Take the client address from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(long, env = "GRAMKEY_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
}

impl LimitArgs {
    fn limits(&self) -> gramkey_domain::ratelimit::Limits {
        gramkey_domain::ratelimit::Limits {
            app_calls_per_user: self.app_calls_per_user,
            app_time_ms_per_call: self.app_time_ms_per_call,
            app_cpu_ms_per_call: self.app_cpu_ms_per_call,
            user_calls: self.user_calls,
            writes_live: self.writes_per_hour,
            writes_development: self.writes_per_hour / 2,
            legacy_token_live: self.legacy_calls_per_token,
            legacy_token_development: self.legacy_calls_per_token / 10,
            client_auth_failures_per_ip: self.client_auth_failures,
            login_failures_per_account: self.login_failures,
            login_failures_per_ip: self.login_failures * 4,
        }
    }
}

#[derive(Args)]
struct WatchArgs {
    /// Serve /metrics without the admin key on this separate address (e.g. 127.0.0.1:9090).
    #[arg(long, env = "GRAMKEY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// POST anomaly alerts as JSON to this URL (they are logged either way).
    #[arg(long, env = "GRAMKEY_ALERT_WEBHOOK", hide_env_values = true)]
    alert_webhook: Option<String>,
    /// A rate jump: calls in 5 minutes above this many times the app's baseline...
    #[arg(long, env = "GRAMKEY_ALERT_RATE_FACTOR", default_value_t = 10.0)]
    alert_rate_factor: f64,
    /// ...and at least this many.
    #[arg(long, env = "GRAMKEY_ALERT_RATE_MIN_CALLS", default_value_t = 500)]
    alert_rate_min_calls: u64,
    /// A burst: this many failed sign-ins or client authentications in 15 minutes for one
    /// account, client or address.
    #[arg(long, env = "GRAMKEY_ALERT_FAILURE_BURST", default_value_t = 20)]
    alert_failure_burst: u64,
    /// Do not alert when a token is used from a network it was never used from.
    #[arg(long, env = "GRAMKEY_ALERT_NO_NEW_NETWORK")]
    alert_no_new_network: bool,
    /// The same alert is sent at most once per this long.
    #[arg(long, env = "GRAMKEY_ALERT_COOLDOWN", default_value = "1h", value_parser = humantime::parse_duration)]
    alert_cooldown: std::time::Duration,
}

impl WatchArgs {
    fn thresholds(&self) -> gramkey_domain::alert::Thresholds {
        gramkey_domain::alert::Thresholds {
            rate_factor: self.alert_rate_factor,
            rate_min_calls: self.alert_rate_min_calls,
            failure_burst: self.alert_failure_burst,
            new_network: !self.alert_no_new_network,
            cooldown_secs: i64::try_from(self.alert_cooldown.as_secs()).unwrap_or(i64::MAX),
        }
    }
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register an app; prints its client id and (once) its secret.
    Create {
        #[arg(long)]
        name: String,
        /// A redirect URI; repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Scopes the app may request, comma- or space-separated.
        #[arg(long)]
        scopes: String,
        /// Issue RFC 6749 refresh tokens (rotated on every use) with the code exchange.
        #[arg(long)]
        refresh_tokens: bool,
        /// Legacy v1's "Enforce signed requests": every v1 call must carry a valid `sig`.
        #[arg(long)]
        signed_requests: bool,
        /// Allow the device authorization grant (RFC 8628): sign-in from a device without a
        /// browser, with a code entered on /device.
        #[arg(long)]
        device_flow: bool,
        #[arg(long, value_parser = ["development", "live"], default_value = "development")]
        mode: String,
        /// Where to POST a signed request when a user removes the app.
        #[arg(long)]
        deauthorize_url: Option<String>,
        /// Where to POST a signed request when a user asks for their data to be deleted.
        #[arg(long)]
        data_deletion_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Turn legacy v1's "Enforce signed requests" on or off for an app.
    SignedRequests {
        id: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Turn the device authorization grant (RFC 8628) on or off for an app.
    DeviceFlow {
        id: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Set an app's callback URLs. A URL left out keeps its value; an empty one clears it.
    SetCallbacks {
        id: String,
        #[arg(long)]
        deauthorize_url: Option<String>,
        #[arg(long)]
        data_deletion_url: Option<String>,
    },
    /// List apps.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one app.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace an app's client secret; the old one stops working at once.
    RotateSecret {
        id: String,
        /// Keep the old secret working this long (e.g. 24h, 30m), so deployed apps can switch
        /// over. Without it the old secret stops at once.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Delete an app and every code, grant and token issued to it.
    Delete { id: String },
    /// Revoke every token issued to an app.
    RevokeTokens { id: String },
    /// Give a user a role on an app (needed to authorize it in development mode).
    AddRole {
        id: String,
        #[arg(long)]
        user: String,
        #[arg(long, value_parser = ["admin", "developer", "tester"])]
        role: String,
    },
    /// A development-mode app's test clock, on a running server: show, advance (25h, 61d),
    /// reset.
    Clock {
        id: String,
        #[command(subcommand)]
        action: tools::ClockAction,
        #[command(flatten)]
        server: tools::ServerArg,
    },
    /// Fault injection for a development-mode app, on a running server: add, list, clear.
    Faults {
        id: String,
        #[command(subcommand)]
        action: tools::FaultsAction,
        #[command(flatten)]
        server: tools::ServerArg,
    },
    /// A development-mode app's latest calls on a running server (its call log); --follow
    /// streams them.
    Log {
        id: String,
        #[command(flatten)]
        args: tools::LogArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// The password (visible to other local users in the process list; prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a user's password; every token they hold is revoked (clients see 190/460).
    SetPassword {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// The password (visible in the process list; prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an app for a user, as they would from their settings: the grant is forgotten,
    /// the tokens revoked, and the app's deauthorize callback queued.
    RemoveApp {
        #[arg(long)]
        username: String,
        #[arg(long)]
        app: String,
        /// Also ask the app to delete the user's data (its data-deletion callback).
        #[arg(long)]
        delete_data: bool,
    },
    /// Add one media to a user's profile, dated now; prints its id.
    AddMedia {
        #[arg(long)]
        username: String,
        #[arg(long = "type", value_enum, default_value = "image")]
        kind: MediaKind,
        #[arg(long, default_value = "")]
        caption: String,
        /// The image or video URL (default: one of the server's placeholder images).
        #[arg(long)]
        url: Option<String>,
        /// Images in an album.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=10))]
        children: u32,
        /// The URL the server is reached at, for placeholder images and permalinks.
        #[arg(
            long,
            env = "GRAMKEY_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
}

/// The command line. The server's global flags (database, data directory, configuration file)
/// mean nothing to `gramkey auth`, which talks to servers over HTTP: they are hidden from its
/// help (hidden copies, so the root's are not propagated there), and still accepted.
fn command() -> clap::Command {
    let root = <Cli as clap::CommandFactory>::command();
    let server_flags: Vec<clap::Arg> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    root.mut_subcommand("auth", |auth| {
        server_flags
            .into_iter()
            .fold(auth, |auth, flag| auth.arg(flag))
    })
}

fn main() -> std::process::ExitCode {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: jemalloc's background purging is off: {e}");
    }
    let parsed = match layered::parse::<Cli>(command(), std::env::args_os().collect()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = parsed.cli;
    if let Command::CheckConfig(args) = &cli.command {
        return check_config(args, &parsed.settings);
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            if e.downcast_ref::<devcli::NeedsReauth>().is_some() {
                std::process::ExitCode::from(devcli::EXIT_REAUTH as u8)
            } else if e.downcast_ref::<devcli::Usage>().is_some() {
                std::process::ExitCode::from(devcli::EXIT_USAGE as u8)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let log_format = match &cli.command {
        Command::Serve(a) => a.log_format,
        _ => LogFormat::Text,
    };
    // `gramkey auth` talks to a person: warnings only, unless GRAMKEY_LOG asks for more
    // (`GRAMKEY_LOG=gramkey_client=debug` shows the SDK's pacing and retries).
    let default_filter = match &cli.command {
        Command::Auth { .. } => "warn",
        _ => "info,sqlx=warn",
    };
    init_logging(log_format, default_filter);
    match cli.command {
        Command::Serve(args) => serve(&cli.global, *args).await,
        // Answered in `main`, before the runtime starts.
        Command::CheckConfig(_) => Ok(()),
        Command::Audit(args) => audit(&cli.global, args).await,
        Command::Auth { vault, command } => devcli::run(&vault, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "gramkey", &mut std::io::stdout());
            Ok(())
        }
        Command::App(AppCommand::Clock { id, action, server }) => {
            tools::clock(&cli.global, &id, server, action).await
        }
        Command::App(AppCommand::Faults { id, action, server }) => {
            tools::faults(&cli.global, &id, server, action).await
        }
        Command::App(AppCommand::Log { id, args }) => tools::log(&cli.global, &id, args).await,
        Command::App(cmd) => app(&cli.global.open().await?, cmd).await,
        Command::User(cmd) => user(&cli.global.open().await?, cmd).await,
        Command::Callbacks(cmd) => callbacks(&cli.global.open().await?, cmd).await,
        Command::Webhooks(WebhooksCommand::Listen {
            listen,
            verify_token,
        }) => listen_for_webhooks(listen, verify_token).await,
        Command::Webhooks(cmd) => webhooks(&cli.global.open().await?, cmd).await,
        Command::Sandbox(cmd) => sandbox(&cli.global.open().await?, cmd).await,
        Command::Janitor(args) => {
            let p = cli
                .global
                .open()
                .await?
                .purge_expired(args.retention.retention(), false)
                .await?;
            println!(
                "purged {} codes, {} tokens, {} callbacks and {} webhook deliveries",
                p.codes, p.tokens, p.callbacks, p.webhooks
            );
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRAMKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a terminal: redirected logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn audit(global: &Global, args: AuditArgs) -> Result<()> {
    let ops = global.open().await?;
    let since = match &args.since {
        Some(s) => Some(
            gramkey_domain::graph::paging::parse_time("since", s).map_err(|e| {
                anyhow::anyhow!("--since: {}", e.message.trim_start_matches("(#100) "))
            })?,
        ),
        None => None,
    };
    let filter = gramkey_server::audit::AuditFilter {
        app: args.app,
        user: args.user,
        event: args.event,
        since,
        before_id: args.before,
        limit: Some(args.limit),
    };
    let events = ops.audit_log(&filter).await?;
    if args.json {
        let list: Vec<_> = events
            .iter()
            .map(gramkey_server::audit::audit_json)
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for e in &events {
        let ev = &e.event;
        let line = writeln!(
            out,
            "{:>6}  {}  {:<18} {:<8} app={} user={} token={} ip={}  {}",
            e.id,
            gramkey_domain::time::graph_timestamp(ev.at),
            ev.kind.as_str(),
            ev.outcome.as_str(),
            ev.app_id.as_ref().map_or("-", |a| a.as_str()),
            ev.user_id.map_or("-".into(), |u| u.0.to_string()),
            ev.token_id.map_or("-".into(), |t| t.to_string()),
            ev.ip.as_deref().unwrap_or("-"),
            ev.detail.as_deref().unwrap_or(""),
        );
        // `gramkey audit | head` closes the pipe early: that is not an error.
        match line {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    if events.is_empty() {
        println!("no audit events match");
    }
    Ok(())
}

impl ServeArgs {
    /// What can be checked without starting anything (`serve` and `check-config`).
    fn check(&self) -> Result<()> {
        let urls = [
            ("--public-url", &self.public_url),
            ("--alert-webhook", &self.watch.alert_webhook),
            ("--redis-url", &self.limits.redis_url),
        ];
        for (flag, url) in urls {
            if let Some(u) = url {
                url::Url::parse(u).with_context(|| format!("{flag} is not a URL"))?;
            }
        }
        if let Some(u) = &self.watch.alert_webhook {
            let url = url::Url::parse(u).context("--alert-webhook is not a URL")?;
            gramkey_domain::outbound::check_url(&url, self.fetch_allow_private).map_err(|e| {
                anyhow::anyhow!(
                    "--alert-webhook would be refused by the outbound guard ({e}); \
                     pass --fetch-allow-private to let the server call private addresses"
                )
            })?;
        }
        for (flag, path) in [("--tls-cert", &self.tls_cert), ("--tls-key", &self.tls_key)] {
            if let Some(p) = path {
                std::fs::metadata(p).with_context(|| format!("{flag} {}", p.display()))?;
            }
        }
        Ok(())
    }
}

/// The transport's limits. Without `--max-connections`, the open-file limit is raised to its
/// hard limit and the cap set below it, so the server refuses to accept before it runs out of
/// descriptors (which would also fail its database and outbound connections).
fn connection_limits(args: &ServeArgs) -> gramkey_server::transport::ConnectionLimits {
    const RESERVED_FILES: u64 = 256;
    let max_connections = args.max_connections.unwrap_or_else(|| {
        let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
        usize::try_from(files.saturating_sub(RESERVED_FILES).max(64)).unwrap_or(usize::MAX)
    });
    tracing::info!(max_connections, "connection limit");
    gramkey_server::transport::ConnectionLimits {
        header_timeout: args.header_timeout,
        request_timeout: args.request_timeout,
        max_connections,
    }
}

/// `gramkey check-config`: the effective configuration, or what is wrong with it.
fn check_config(args: &ServeArgs, settings: &[layered::Setting]) -> std::process::ExitCode {
    if let Err(e) = args.check() {
        eprintln!("Error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    use std::io::Write as _;
    let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for s in settings {
        let line = match s.source.as_str() {
            "unset" => writeln!(out, "{:<width$} = (unset)", s.key),
            source => writeln!(out, "{:<width$} = {}    ({source})", s.key, s.value),
        };
        // `gramkey check-config | head` closes the pipe early: that is not an error.
        if line.is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn serve(global: &Global, args: ServeArgs) -> Result<()> {
    args.check()?;
    let master_key = global.master_key()?;
    let default_ttl = if global.database_url.is_some() { 60 } else { 2 };
    let ttl = std::time::Duration::from_secs(args.cache_ttl.unwrap_or(default_ttl));
    let ops = global.open_with_key(&master_key, ttl).await?;
    // Configuration errors first, before anything is seeded or printed.
    let admin_key = global.admin_key()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let transport = tls_transport(global, &args)?;
    let limits = connection_limits(&args);
    let scheme = if transport.is_tls() { "https" } else { "http" };
    let public_url = args
        .public_url
        .unwrap_or_else(|| {
            let ip = if bound.ip().is_unspecified() {
                "127.0.0.1".parse().unwrap_or(bound.ip())
            } else {
                bound.ip()
            };
            format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
        })
        .trim_end_matches('/')
        .to_owned();
    url::Url::parse(&public_url)
        .with_context(|| format!("--public-url {public_url:?} is not a URL"))?;

    // The rate limiter before anything is seeded or printed: a bad Redis URL stops here.
    let backend: Arc<dyn gramkey_server::limits::Backend> = match &args.limits.redis_url {
        Some(url) => {
            let backend = gramkey_server::limits::redis::RedisBackend::connect(url)
                .await
                .with_context(|| "cannot use the Redis given by --redis-url".to_owned())?;
            let at = url::Url::parse(url)
                .ok()
                .map(|u| {
                    format!(
                        "{}:{}",
                        u.host_str().unwrap_or("?"),
                        u.port().unwrap_or(6379)
                    )
                })
                .unwrap_or_default();
            println!("rate limits: shared through Redis at {at}");
            Arc::new(backend)
        }
        None => {
            println!("rate limits: kept in this process (--redis-url shares them between nodes)");
            Arc::new(gramkey_server::limits::memory::MemoryBackend::default())
        }
    };

    if !args.no_sandbox {
        if let Some(info) = seed_if_empty(&ops, &public_url).await? {
            println!("gramkey sandbox created. These credentials are shown once:");
            println!("  app \"{}\" (development mode)", info.app.name);
            println!("    client_id:     {}", info.app.id);
            println!("    client_secret: {}", info.secret.expose());
            println!("  users:");
            for (name, password, role) in &info.users {
                let note = match role {
                    Some(r) => format!("{} of the app", r.as_str()),
                    None => "no role: refused while the app is in development mode".into(),
                };
                println!("    {name:<6} password {}  ({note})", password.expose());
            }
            println!("  sign in from a terminal (the secret above in GRAMKEY_CLIENT_SECRET):");
            println!(
                "    gramkey auth login --host {public_url} --client-id {}",
                info.app.id
            );
            println!(
                "  on a machine without a browser, add --device: it shows a code to enter at {public_url}/device"
            );
        }
        if let Some(app) = sandbox_app(&ops).await? {
            println!("Open this URL in a browser to authorize the sandbox app:");
            println!("  {}", authorize_url(&public_url, &app));
        }
    }

    let config = ServerConfig {
        admin_key,
        refresh_reuse_grace_secs: i64::try_from(args.refresh_reuse_grace.as_secs())
            .unwrap_or(i64::MAX),
        fetch_media: !args.no_fetch_media,
        fetch_allow_private: args.fetch_allow_private,
        publish_quota: args.publish_quota,
        limits: args.limits.limits(),
        rate_limits: !args.limits.no_rate_limits,
        on_limiter_failure: match args.limits.redis_failure {
            OnFailure::Open => gramkey_server::limits::OnFailure::Open,
            OnFailure::Closed => gramkey_server::limits::OnFailure::Closed,
        },
        trust_forwarded_for: args.limits.trust_forwarded_for,
        alert_thresholds: args.watch.thresholds(),
        alert_webhook: args.watch.alert_webhook.clone(),
        admin_users: args
            .admin_users
            .iter()
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty())
            .collect(),
        node_name: args.node_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "gramkey".to_owned());
            format!("{host}:{}", bound.port())
        }),
        ..ServerConfig::new(public_url.clone())
    };
    let state = AppState::with_limiter(
        ops.store.clone(),
        ops.clock.clone(),
        ops.entropy.clone(),
        &master_key,
        config,
        backend,
    );
    let mut node = Node::new(state, listener)
        .transport(transport)
        .connection_limits(limits)
        .janitor(args.retention.retention(), args.janitor_interval)
        .callbacks(args.callback_interval);
    if let Some(addr) = args.watch.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        println!("metrics on http://{}/metrics", metrics.local_addr()?);
        node = node.metrics(metrics);
    }
    println!("gramkey listening on {bound} ({public_url})");
    tracing::info!(address = %bound, "listening");
    node.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM (what `docker stop` and orchestrators send).
async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// `--tls-cert`/`--tls-key`, `--tls-self-signed`, or plain HTTP.
fn tls_transport(global: &Global, args: &ServeArgs) -> Result<Transport> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Transport::tls_from_pem(cert, key)?);
    }
    if !args.tls_self_signed {
        return Ok(Transport::Plain);
    }
    let (cert, key, made) = gramkey_server::transport::self_signed(&global.data_dir)?;
    let path = std::fs::canonicalize(&cert).unwrap_or(cert.clone());
    println!(
        "TLS: self-signed certificate for localhost, 127.0.0.1 and ::1 {} {}",
        if made { "made at" } else { "kept at" },
        path.display()
    );
    println!(
        "  trust it with NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE or SSL_CERT_FILE set to that path"
    );
    Ok(Transport::tls_from_pem(&cert, &key)?)
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_app(app: &gramkey_store::App) {
    println!("{}  {}  [{}]", app.id, app.name, app.mode.as_str());
    println!(
        "  redirect URIs: {}",
        app.redirect_uris
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  scopes:        {}", app.scopes.to_stored());
    if let Some(u) = &app.deauthorize_url {
        println!("  deauthorize:   {u}");
    }
    if let Some(u) = &app.data_deletion_url {
        println!("  data deletion: {u}");
    }
    if app.device_flow {
        println!("  device flow:   on");
    }
}

async fn app(ops: &Ops, cmd: AppCommand) -> Result<()> {
    match cmd {
        AppCommand::Create {
            name,
            redirect_uris,
            scopes,
            mode,
            refresh_tokens,
            signed_requests,
            device_flow,
            deauthorize_url,
            data_deletion_url,
            json,
        } => {
            let mode = AppMode::parse(&mode).context("mode must be development or live")?;
            let (app, secret) = ops
                .create_app(
                    &Origin::LOCAL,
                    NewAppInput {
                        name,
                        redirect_uris,
                        scopes,
                        mode,
                        refresh_tokens,
                        signed_requests,
                        device_flow,
                        deauthorize_url,
                        data_deletion_url,
                    },
                )
                .await?;
            if json {
                let mut v = app_json(&app);
                v["client_secret"] = json!(secret.expose());
                print_json(&v)?;
            } else {
                print_app(&app);
                println!("client_id:     {}", app.id);
                println!("client_secret: {}", secret.expose());
                println!(
                    "The secret is shown only now; `gramkey app rotate-secret {}` makes a new one.",
                    app.id
                );
            }
        }
        AppCommand::List { json } => {
            let apps = ops.store.apps().await?;
            if json {
                print_json(&json!(apps.iter().map(app_json).collect::<Vec<_>>()))?;
            } else if apps.is_empty() {
                println!("no apps");
            } else {
                apps.iter().for_each(print_app);
            }
        }
        AppCommand::Show { id, json } => {
            let app = ops.app(&id).await?;
            let mut roles = Vec::new();
            for (uid, role) in ops.store.roles(&app.id).await? {
                let name = ops
                    .store
                    .user(uid)
                    .await?
                    .map(|u| u.username.clone())
                    .unwrap_or_default();
                roles.push((name, role));
            }
            if json {
                let mut v = app_json(&app);
                v["roles"] = json!(
                    roles
                        .iter()
                        .map(|(n, r)| json!({"username": n, "role": r.as_str()}))
                        .collect::<Vec<_>>()
                );
                print_json(&v)?;
            } else {
                print_app(&app);
                for (n, r) in roles {
                    println!("  {}: {n}", r.as_str());
                }
            }
        }
        AppCommand::RotateSecret { id, grace, json } => {
            let grace = grace.map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
            let secret = ops.rotate_secret(&Origin::LOCAL, &id, grace).await?;
            if json {
                print_json(&json!({"id": id, "client_secret": secret.expose()}))?;
            } else {
                println!("client_secret: {}", secret.expose());
            }
        }
        AppCommand::SignedRequests { id, state } => {
            let app = ops
                .set_signed_requests(&Origin::LOCAL, &id, state == "on")
                .await?;
            print_app(&app);
            println!("signed requests: {state}");
        }
        AppCommand::DeviceFlow { id, state } => {
            let app = ops
                .set_device_flow(&Origin::LOCAL, &id, state == "on")
                .await?;
            print_app(&app);
            println!("device flow: {state}");
        }
        AppCommand::SetCallbacks {
            id,
            deauthorize_url,
            data_deletion_url,
        } => {
            let app = ops
                .set_app_callbacks(
                    &Origin::LOCAL,
                    &id,
                    deauthorize_url.as_deref(),
                    data_deletion_url.as_deref(),
                )
                .await?;
            print_app(&app);
            if app.secret_seed.is_none() {
                println!(
                    "note: this app's secret predates signed callbacks; rotate it \
                     (gramkey app rotate-secret {id}) so callbacks can be signed"
                );
            }
        }
        AppCommand::Delete { id } => {
            ops.delete_app(&Origin::LOCAL, &id).await?;
            println!("deleted app {id}");
        }
        AppCommand::RevokeTokens { id } => {
            let n = ops.revoke_app_tokens(&Origin::LOCAL, &id).await?;
            println!("revoked {n} tokens of app {id}");
        }
        AppCommand::AddRole { id, user, role } => {
            let role = Role::parse(&role).context("role must be admin, developer or tester")?;
            ops.set_role(&Origin::LOCAL, &id, &user, role).await?;
            println!("{user} is now {} of app {id}", role.as_str());
        }
        // Answered in `run`: they need no database when the secret is given.
        AppCommand::Clock { .. } | AppCommand::Faults { .. } | AppCommand::Log { .. } => {}
    }
    Ok(())
}

/// The password from the first line of standard input, or from the flag.
fn read_password(from_stdin: bool, flag: Option<String>) -> Result<String> {
    match (from_stdin, flag) {
        (true, _) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }
        (false, Some(p)) => Ok(p),
        (false, None) => bail!("give the password with --password-stdin (or --password)"),
    }
}

async fn user(ops: &Ops, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::SetPassword {
            username,
            password_stdin,
            password,
        } => {
            let password = read_password(password_stdin, password)?;
            let n = ops
                .change_password(&Origin::LOCAL, &username, Password::new(password))
                .await?;
            println!("password changed; revoked {n} tokens of {username}");
        }
        UserCommand::Create {
            username,
            password_stdin,
            password,
            json,
        } => {
            let password = read_password(password_stdin, password)?;
            let profile = Profile {
                account_type: "PERSONAL".into(),
                ..Profile::default()
            };
            let user = ops
                .create_user(&username, Password::new(password), profile)
                .await?;
            if json {
                print_json(&user_json(&user))?;
            } else {
                println!("created user {}", user.username);
            }
        }
        UserCommand::RemoveApp {
            username,
            app,
            delete_data,
        } => {
            let removal = ops
                .remove_app_by_name(&Origin::LOCAL, &username, &app, delete_data)
                .await?;
            println!(
                "removed app {app} for {username}; revoked {} tokens",
                removal.tokens
            );
        }
        UserCommand::AddMedia {
            username,
            kind,
            caption,
            url,
            children,
            public_url,
        } => {
            let public_url = public_url.trim_end_matches('/');
            let user = ops
                .store
                .user_by_name(&username.to_ascii_lowercase())
                .await?
                .with_context(|| format!("no user {username:?}"))?;
            gramkey_domain::graph::publish::check_caption(&caption)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            if let Some(u) = &url {
                let parsed =
                    url::Url::parse(u).with_context(|| format!("--url {u:?} is not a URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("--url must be http or https");
                }
            }
            let now = ops.clock.now();
            let id = gramkey_domain::ids::generate_media_id(&*ops.entropy, now);
            let placeholder =
                |id: &gramkey_domain::MediaId| format!("{public_url}/sandbox/media/{id}.svg");
            let source = url.clone().unwrap_or_else(|| placeholder(&id));
            let media = gramkey_store::Media {
                media_type: match kind {
                    MediaKind::Image => MediaType::Image,
                    MediaKind::Video => MediaType::Video,
                    MediaKind::Album => MediaType::CarouselAlbum,
                },
                caption,
                media_url: source.clone(),
                permalink: format!("{public_url}/p/{id}"),
                thumbnail_url: matches!(kind, MediaKind::Video).then(|| placeholder(&id)),
                created_at: now,
                like_count: 0,
                comments_count: 0,
                user_id: user.id,
                parent_id: None,
                position: 0,
                id: id.clone(),
            };
            ops.store.add_media(&media).await?;
            if matches!(kind, MediaKind::Album) {
                for position in 0..children {
                    let child = gramkey_domain::ids::generate_media_id(&*ops.entropy, now);
                    ops.store
                        .add_media(&gramkey_store::Media {
                            media_type: MediaType::Image,
                            caption: String::new(),
                            media_url: url.clone().unwrap_or_else(|| placeholder(&child)),
                            permalink: format!("{public_url}/p/{child}"),
                            parent_id: Some(id.clone()),
                            position: i64::from(position),
                            id: child,
                            ..media.clone()
                        })
                        .await?;
                }
            }
            println!("{id}");
        }
        UserCommand::List { json } => {
            let users = ops.store.users().await?;
            if json {
                print_json(&json!(users.iter().map(user_json).collect::<Vec<_>>()))?;
            } else if users.is_empty() {
                println!("no users");
            } else {
                for u in users {
                    println!("{}  ({})", u.username, u.profile.account_type);
                }
            }
        }
    }
    Ok(())
}

async fn sandbox(ops: &Ops, cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Seed {
            users,
            media,
            seed,
            public_url,
        } => {
            let made = gramkey_server::sandbox::seed(
                ops,
                users as usize,
                media as usize,
                seed,
                public_url.trim_end_matches('/'),
            )
            .await?;
            println!(
                "seeded {} users, {} media, {} comments (seed {seed}). Passwords, shown once:",
                made.users.len(),
                made.media,
                made.comments
            );
            for (name, password) in &made.users {
                println!("  {name}  {}", password.expose());
            }
        }
        SandboxCommand::Comment {
            author,
            media,
            text,
            reply_to,
        } => {
            let id =
                gramkey_server::sandbox::comment(ops, &author, &media, reply_to.as_deref(), &text)
                    .await?;
            println!(
                "comment {id} by {author} on {media}; subscribed live apps are notified at the server's next delivery pass"
            );
        }
        SandboxCommand::Trigger {
            what,
            app,
            user,
            author,
        } => {
            use gramkey_server::sandbox::{Trigger, trigger};
            let kind = if what == "mention" {
                Trigger::Mention
            } else {
                Trigger::Comment
            };
            let done = trigger(ops, &app, kind, &user, author.as_deref()).await?;
            let (did, field) = match kind {
                Trigger::Comment => ("commented on", "comments"),
                Trigger::Mention => ("mentioned", "mentions"),
            };
            println!(
                "{} {did} {user} (comment {} on post {}); app {app} gets a `{field}` webhook if it is live and subscribed, at the server's next delivery pass",
                done.author, done.comment, done.media
            );
        }
        SandboxCommand::Export { file } => {
            let fixture = ops.export_fixture().await?;
            let text = serde_json::to_string_pretty(&fixture)? + "\n";
            if file == "-" {
                print!("{text}");
            } else {
                std::fs::write(&file, text).with_context(|| format!("cannot write {file}"))?;
                eprintln!(
                    "wrote {file}: {} users, {} apps, {} media, {} comments",
                    fixture.users.len(),
                    fixture.apps.len(),
                    fixture.media.len(),
                    fixture.comments.len()
                );
            }
        }
        SandboxCommand::Import { file, json } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
            let fixture: gramkey_server::fixtures::Fixture = serde_json::from_str(&text)
                .with_context(|| format!("{file} is not a gramkey fixture"))?;
            let done = ops.import_fixture(&Origin::LOCAL, &fixture).await?;
            let apps: Vec<_> = done
                .apps_created
                .iter()
                .map(|(id, s)| (id, Some(s), true))
                .chain(done.apps_kept.iter().map(|(id, s)| (id, s.as_ref(), false)))
                .collect();
            if json {
                let apps: Vec<_> = apps
                    .iter()
                    .map(|(id, s, created)| json!({"id": id.as_str(), "client_secret": s.map(|s| s.expose()), "created": created}))
                    .collect();
                print_json(&json!({
                    "apps": apps,
                    "users_created": done.users_created,
                    "users_kept": done.users_kept,
                    "media_added": done.media_added,
                    "comments_added": done.comments_added,
                }))?;
            } else {
                println!(
                    "imported {file}: {} users created ({} kept), {} apps created ({} kept), {} media, {} comments added",
                    done.users_created.len(),
                    done.users_kept.len(),
                    done.apps_created.len(),
                    done.apps_kept.len(),
                    done.media_added,
                    done.comments_added
                );
                for (id, secret, created) in apps {
                    let state = if created { "created" } else { "kept" };
                    match secret {
                        Some(s) => println!("  app {id} ({state})  client_secret {}", s.expose()),
                        None => println!(
                            "  app {id} ({state})  its secret cannot be derived on this server"
                        ),
                    }
                }
            }
        }
        SandboxCommand::Reset { yes } => {
            if !yes {
                bail!("this deletes every app and user of the sandbox; run again with --yes");
            }
            let (apps, users) = ops.reset_sandbox(&Origin::LOCAL).await?;
            println!("deleted {apps} apps and {users} users; the sandbox is empty");
        }
    }
    Ok(())
}

async fn webhooks(ops: &Ops, cmd: WebhooksCommand) -> Result<()> {
    const NEXT_PASS: &str =
        "a running server sends it at its next pass (--callback-interval, 1 s by default)";
    match cmd {
        WebhooksCommand::List { app, limit, json } => {
            let list = ops.webhook_deliveries(app.as_deref(), limit).await?;
            if json {
                let list: Vec<_> = list
                    .iter()
                    .map(gramkey_server::webhooks::delivery_json)
                    .collect();
                print_json(&json!(list))?;
            } else if list.is_empty() {
                println!("no webhook notifications");
            } else {
                for w in list {
                    println!(
                        "{:>6}  {:<13}  app {}  {}{} after {} attempt(s)",
                        w.id,
                        w.field,
                        w.app_id,
                        if w.test { "test, " } else { "" },
                        w.state.as_str(),
                        w.attempts
                    );
                    if let Some(u) = &w.url {
                        println!("        url: {u}");
                    }
                    if let Some(status) = w.status {
                        println!("        answer: HTTP {status}");
                    }
                    if let Some(e) = &w.last_error {
                        println!("        last error: {e}");
                    }
                }
            }
        }
        WebhooksCommand::Test { app, field } => {
            ops.send_test_webhook(&app, &field).await?;
            println!("test notification of {field} queued for app {app}; {NEXT_PASS}");
        }
        WebhooksCommand::Retry { id } => {
            ops.retry_webhook(id).await?;
            println!("webhook notification {id} queued; {NEXT_PASS}");
        }
        WebhooksCommand::Listen { .. } => unreachable!("answered without a store"),
    }
    Ok(())
}

/// `gramkey webhooks listen`: a webhook endpoint that prints what arrives.
async fn listen_for_webhooks(addr: std::net::SocketAddr, verify_token: String) -> Result<()> {
    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use gramkey_client::webhooks::{Notification, answer_verification};
    use std::io::Write as _;
    let secret = std::env::var("GRAMKEY_CLIENT_SECRET").map_err(|_| {
        anyhow::anyhow!(
            "set GRAMKEY_CLIENT_SECRET to the app secret: notifications are signed with it"
        )
    })?;
    type Shared = std::sync::Arc<(String, String)>;
    async fn verify(State(s): State<Shared>, RawQuery(q): RawQuery) -> (StatusCode, String) {
        match answer_verification(&q.unwrap_or_default(), &s.0) {
            Some(challenge) => {
                println!("verification: answered the challenge");
                (StatusCode::OK, challenge)
            }
            None => {
                println!("verification refused: not hub.mode=subscribe with your verify token");
                (StatusCode::FORBIDDEN, String::new())
            }
        }
    }
    async fn notify(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let signature = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let status = match Notification::verify(&body, signature, &s.1) {
            Ok(n) => {
                for entry in &n.entry {
                    for change in &entry.changes {
                        println!(
                            "notification: {} for account {} (signature verified)\n{}",
                            change.field,
                            entry.id,
                            serde_json::to_string_pretty(&change.value).unwrap_or_default()
                        );
                    }
                }
                StatusCode::OK
            }
            Err(e) => {
                println!("refused a notification: {e}");
                StatusCode::FORBIDDEN
            }
        };
        let _ = std::io::stdout().flush();
        status
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!(
        "listening for webhooks on http://{}/ (any path); Ctrl-C to stop",
        listener.local_addr()?
    );
    let _ = std::io::stdout().flush();
    let app = axum::Router::new()
        .fallback(axum::routing::get(verify).post(notify))
        .with_state(std::sync::Arc::new((verify_token, secret)));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn callbacks(ops: &Ops, cmd: CallbacksCommand) -> Result<()> {
    match cmd {
        CallbacksCommand::List { app, limit, json } => {
            let list = ops.callbacks(app.as_deref(), limit).await?;
            if json {
                print_json(&json!(list.iter().map(callback_json).collect::<Vec<_>>()))?;
            } else if list.is_empty() {
                println!("no callbacks");
            } else {
                for c in list {
                    println!(
                        "{:>6}  {:<13}  app {}  user {}  {} after {} attempt(s)",
                        c.id,
                        c.kind.as_str(),
                        c.app_id,
                        c.scoped_id,
                        c.state.as_str(),
                        c.attempts
                    );
                    if let Some(u) = &c.url {
                        println!("        url: {u}");
                    }
                    if let Some(e) = &c.last_error {
                        println!("        last error: {e}");
                    }
                    if let Some(code) = &c.confirmation.confirmation_code {
                        println!("        confirmation code: {code}");
                    }
                }
            }
        }
        CallbacksCommand::Retry { id } => {
            ops.retry_callback(id).await?;
            println!(
                "callback {id} queued; a running server sends it at its next pass (--callback-interval, 1 s by default)"
            );
        }
    }
    Ok(())
}
