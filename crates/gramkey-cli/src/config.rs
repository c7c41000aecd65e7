//! Where the database and the keys come from.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use gramkey_domain::{AdminKey, Clock, Entropy, OsEntropy, SecretHasher, SystemClock};
use gramkey_server::keys;
use gramkey_server::ops::Ops;
use gramkey_store::Store;
use gramkey_store::postgres::PgStore;
use gramkey_store::sqlite::SqliteStore;

#[derive(Args)]
pub struct Global {
    /// A TOML file of settings: keys are the long flags (`listen = "0.0.0.0:8080"`). Flags and
    /// GRAMKEY_* variables override it; any GRAMKEY_X may instead be GRAMKEY_X_FILE, a file
    /// holding the value (for secrets). `gramkey check-config` shows the result.
    #[arg(long, global = true, env = "GRAMKEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and the server key.
    #[arg(
        long,
        global = true,
        env = "GRAMKEY_DATA_DIR",
        default_value = "gramkey-data"
    )]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    #[arg(
        long,
        global = true,
        env = "GRAMKEY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// How long a PostgreSQL request waits for a pooled connection before it fails (while the
    /// database is down or saturated): clients get a fast, clear error instead of a hang.
    #[arg(
        long,
        global = true,
        env = "GRAMKEY_DB_ACQUIRE_TIMEOUT",
        default_value = "3s",
        value_parser = humantime::parse_duration
    )]
    pub db_acquire_timeout: std::time::Duration,
}

impl Global {
    pub async fn open(&self) -> Result<Ops> {
        self.open_with_key(&self.master_key()?, std::time::Duration::ZERO)
            .await
    }

    /// Opens the store with a master key already read (`serve` needs the key itself too), its
    /// cache on for `cache` (see `gramkey_store::cached`).
    pub async fn open_with_key(
        &self,
        master_key: &[u8],
        cache: std::time::Duration,
    ) -> Result<Ops> {
        let store: Arc<dyn Store> = match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(
                    PgStore::connect(url, self.db_acquire_timeout)
                        .await
                        .context("cannot open the PostgreSQL database")?
                        .cached(cache),
                )
            }
            Some(url) => anyhow::bail!(
                "unsupported --database-url {:?}: use postgres://… or leave it unset for SQLite",
                redact(url)
            ),
            None => {
                self.ensure_data_dir()?;
                let path = self.data_dir.join("gramkey.db");
                Arc::new(
                    SqliteStore::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?
                        .cached(cache),
                )
            }
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let entropy: Arc<dyn Entropy> = Arc::new(OsEntropy);
        Ok(Ops {
            store,
            clock,
            entropy,
            hasher: SecretHasher::new(master_key),
        })
    }

    fn ensure_data_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))
    }

    /// `GRAMKEY_SECRET_KEY`, `GRAMKEY_SECRET_KEY_FILE`, or `server.key` in the data directory.
    pub fn master_key(&self) -> Result<Vec<u8>> {
        if let Ok(k) = std::env::var("GRAMKEY_SECRET_KEY") {
            return keys::parse_key(&k).context("GRAMKEY_SECRET_KEY");
        }
        if let Ok(path) = std::env::var("GRAMKEY_SECRET_KEY_FILE") {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
            return keys::parse_key(&text)
                .with_context(|| format!("GRAMKEY_SECRET_KEY_FILE {path}"));
        }
        self.ensure_data_dir()?;
        Ok(keys::load_or_create(
            &self.data_dir.join("server.key"),
            &OsEntropy,
        )?)
    }

    /// `GRAMKEY_ADMIN_KEY` or `GRAMKEY_ADMIN_KEY_FILE`; none disables the admin API.
    pub fn admin_key(&self) -> Result<Option<AdminKey>> {
        let key = match (
            std::env::var("GRAMKEY_ADMIN_KEY"),
            std::env::var("GRAMKEY_ADMIN_KEY_FILE"),
        ) {
            (Ok(k), _) => k,
            (_, Ok(path)) => {
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?
            }
            _ => return Ok(None),
        };
        let key = key.trim().to_owned();
        anyhow::ensure!(
            key.len() >= 16,
            "the admin key must be at least 16 characters"
        );
        Ok(Some(AdminKey::new(key)))
    }
}

/// A database URL without its password, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
