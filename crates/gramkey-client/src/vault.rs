//! The token vault: a file of accounts whose tokens are encrypted with AES-256-GCM.
//!
//! - The key is 32 bytes, from `GRAMKEY_VAULT_KEY` (64 hex characters) or the file named by
//!   `GRAMKEY_VAULT_KEY_FILE`. Without one the vault refuses to store tokens, unless it was
//!   opened with [`Protection::Plaintext`] on purpose (`--insecure-storage`).
//! - Each token is sealed on its own, with a fresh random nonce, and bound to its account
//!   (host, app, user) as associated data: a ciphertext moved to another account does not open.
//! - The file records a sealed check value, so a wrong or damaged key is told apart from a
//!   damaged file, and nothing is written back unless the whole vault opened.
//! - Changes are read-modify-write under an exclusive lock on `<vault>.lock` (across processes,
//!   removed when it is let go), written to a temporary file (mode 0600), synced, and renamed
//!   over the vault.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::model::AccessToken;

/// What is sealed with the key to recognise it.
const CHECK: &[u8] = b"gramkey vault v1";

/// Why the vault could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No key was given, and plaintext storage was not asked for.
    #[error(
        "no vault key: set GRAMKEY_VAULT_KEY (64 hex characters, e.g. from `openssl rand -hex 32`) or GRAMKEY_VAULT_KEY_FILE, or pass --insecure-storage to keep tokens in plaintext"
    )]
    NoKey,
    /// The key is not 64 hex characters; the text says why.
    #[error("the vault key is not 64 hex characters ({0})")]
    BadKey(&'static str),
    /// The key is not the one the vault at this path was written with.
    #[error(
        "the vault key does not open {0}: it was written with another key. Nothing was changed; set the key it was written with"
    )]
    WrongKey(PathBuf),
    /// The vault at this path is encrypted, but it was opened for plaintext.
    #[error("{0} is encrypted: give its key (GRAMKEY_VAULT_KEY), not --insecure-storage")]
    EncryptedVault(PathBuf),
    /// The vault at this path holds plaintext tokens, but it was opened with a key.
    #[error(
        "{0} holds plaintext tokens (written with --insecure-storage): pass --insecure-storage to use it, or move its accounts to a vault with a key: `gramkey auth --insecure-storage export FILE` (with GRAMKEY_EXPORT_KEY set), then `gramkey auth import FILE` with GRAMKEY_VAULT_KEY set"
    )]
    PlaintextVault(PathBuf),
    /// The vault file cannot be read as a vault, or could not be prepared for writing.
    #[error("{path} is damaged ({why}). Nothing was changed")]
    Corrupt {
        /// The vault file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read, written or locked.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// A vault key. `Debug` never shows it.
#[derive(Clone)]
pub struct VaultKey([u8; 32]);

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKey([redacted])")
    }
}

impl VaultKey {
    /// Parses a key from 64 hex characters, ignoring surrounding whitespace.
    pub fn from_hex(hex_key: &str) -> Result<Self, VaultError> {
        let hex_key = hex_key.trim();
        if hex_key.len() != 64 {
            return Err(VaultError::BadKey("wrong length"));
        }
        if !hex_key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::BadKey("not hexadecimal"));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex_key[2 * i..2 * i + 2], 16)
                .map_err(|_| VaultError::BadKey("not hexadecimal"))?;
        }
        Ok(Self(key))
    }

    /// The key as 64 hex characters, as [`VaultKey::from_hex`] reads it: to keep it somewhere.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `GRAMKEY_VAULT_KEY`, else the file named by `GRAMKEY_VAULT_KEY_FILE`; `None` if neither
    /// is set.
    pub fn from_env() -> Result<Option<Self>, VaultError> {
        if let Ok(k) = std::env::var("GRAMKEY_VAULT_KEY") {
            return Self::from_hex(&k).map(Some);
        }
        if let Ok(path) = std::env::var("GRAMKEY_VAULT_KEY_FILE") {
            let text = fs::read_to_string(&path).map_err(|source| VaultError::Io {
                path: path.into(),
                source,
            })?;
            return Self::from_hex(&text).map(Some);
        }
        Ok(None)
    }
}

/// How tokens are kept.
#[derive(Debug)]
pub enum Protection {
    /// Tokens are sealed with AES-256-GCM under this key.
    Encrypted(VaultKey),
    /// Only when asked for (`--insecure-storage`).
    Plaintext,
}

/// One signed-in account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    /// The server's base URL (`https://graph.instagram.com/` or a gramkey server).
    pub host: String,
    /// The app the user signed in to.
    pub app_id: String,
    /// The user's id, from `/me`.
    pub user_id: String,
    /// The user's username, when the server gave one.
    pub username: Option<String>,
    /// A short name to pick the account by (`gramkey token --account alias`).
    pub alias: String,
    /// The scopes asked for at sign-in.
    pub scopes: Vec<String>,
    /// When the token was obtained (signed in or refreshed), in Unix seconds.
    pub issued_at: i64,
    /// When the token expires, in Unix seconds.
    pub expires_at: i64,
    /// When the token was last refreshed, in Unix seconds; `None` until then.
    pub last_refreshed_at: Option<i64>,
    /// Why the last refresh failed, if it did (the token was kept).
    pub last_refresh_error: Option<String>,
    /// The refresh needs the user: sign in again.
    pub needs_reauthorization: bool,
    /// The token; the file keeps it apart from the account, sealed unless the vault is plaintext.
    #[serde(skip)]
    pub token: Option<AccessToken>,
}

impl Account {
    fn aad(&self) -> Vec<u8> {
        format!("{}\n{}\n{}", self.host, self.app_id, self.user_id).into_bytes()
    }
    /// The account's token, when it has one.
    pub fn token(&self) -> Option<&AccessToken> {
        self.token.as_ref()
    }
    /// The user must sign in again: a refresh said so, or the token ran out at `now`.
    pub fn needs_sign_in(&self, now: i64) -> bool {
        self.needs_reauthorization || self.expires_at <= now
    }
}

/// The vault's contents.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// Every account, in the order they were added.
    pub list: Vec<Account>,
    /// The alias used when none is named.
    pub default: Option<String>,
}

impl Accounts {
    /// By alias, username or user id; the default one for `None`.
    pub fn find(&self, name: Option<&str>) -> Option<&Account> {
        let name = name.or(self.default.as_deref())?;
        self.list
            .iter()
            .find(|a| a.alias == name || a.username.as_deref() == Some(name) || a.user_id == name)
    }
    /// The account with this alias, to change it.
    pub fn find_mut(&mut self, alias: &str) -> Option<&mut Account> {
        self.list.iter_mut().find(|a| a.alias == alias)
    }
    /// Adds or replaces the account of the same host, app and user (keeping its alias).
    pub fn upsert(&mut self, mut account: Account) {
        match self.list.iter_mut().find(|a| {
            a.host == account.host && a.app_id == account.app_id && a.user_id == account.user_id
        }) {
            Some(existing) => {
                account.alias = existing.alias.clone();
                *existing = account;
            }
            None => {
                // Aliases stay unique: the same user on two apps or servers gets `alice-2`.
                let base = account.alias.clone();
                let mut n = 1;
                while self.list.iter().any(|a| a.alias == account.alias) {
                    n += 1;
                    account.alias = format!("{base}-{n}");
                }
                if self.default.is_none() {
                    self.default = Some(account.alias.clone());
                }
                self.list.push(account);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    #[serde(flatten)]
    account: Account,
    /// base64(nonce ‖ ciphertext), or the token itself in a plaintext vault.
    token: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    protection: String,
    #[serde(default)]
    check: Option<String>,
    default: Option<String>,
    accounts: Vec<StoredAccount>,
}

/// An exclusive lock on the file `<path><suffix>` across processes, held until it is dropped.
/// The file is removed when the lock is let go, so none is left beside the vault.
pub struct FileLock {
    file: fs::File,
    path: PathBuf,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still held: whoever was waiting on this file finds it gone once it
        // gets the lock, and takes a fresh one (`lock_beside`).
        #[cfg(unix)]
        let _ = fs::remove_file(&self.path);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

/// Is `file` (locked) still the one at `path`? Not when the holder before removed it.
#[cfg(unix)]
fn still_there(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

/// Lock files are kept where they cannot be removed safely while another process waits.
#[cfg(not(unix))]
fn still_there(_: &fs::File, _: &Path) -> bool {
    true
}

/// Takes the lock `<path><suffix>`, creating its file; blocks until it is free.
pub fn lock_beside(path: &Path, suffix: &str) -> Result<FileLock, VaultError> {
    let path = PathBuf::from(format!("{}{suffix}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    loop {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        fs4::FileExt::lock(&file).map_err(io(&path))?;
        if still_there(&file, &path) {
            return Ok(FileLock { file, path });
        }
    }
}

/// A vault file, and how its tokens are kept.
pub struct Vault {
    path: PathBuf,
    protection: Protection,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Vault {
    /// The vault at `path`; nothing is read or created until it is used.
    pub fn new(path: impl Into<PathBuf>, protection: Protection) -> Self {
        Self {
            path: path.into(),
            protection,
        }
    }

    /// Where the vault file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the tokens are encrypted (a key was given), not plaintext.
    pub fn encrypted(&self) -> bool {
        matches!(self.protection, Protection::Encrypted(_))
    }

    /// Where the tokens are, in words, for `status`.
    pub fn backend(&self) -> String {
        match self.protection {
            Protection::Encrypted(_) => format!("{} (AES-256-GCM)", self.path.display()),
            Protection::Plaintext => {
                format!("{} (PLAINTEXT, --insecure-storage)", self.path.display())
            }
        }
    }

    fn cipher(key: &VaultKey) -> Aes256Gcm {
        Aes256Gcm::new((&key.0).into())
    }

    fn seal(key: &VaultKey, plain: &[u8], aad: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        // Without randomness no nonce is safe: refuse to go on rather than repeat one.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
        #[allow(clippy::expect_used)]
        let sealed = Self::cipher(key)
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("AES-GCM encryption of a short message cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        B64.encode(out)
    }

    fn open_sealed(key: &VaultKey, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        Self::cipher(key)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
    }

    /// Reads every account, tokens included. An absent vault is empty.
    pub fn load(&self) -> Result<Accounts, VaultError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Accounts::default()),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let corrupt = |why: String| VaultError::Corrupt {
            path: self.path.clone(),
            why,
        };
        let file: File = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        match (&self.protection, file.protection.as_str()) {
            (Protection::Encrypted(key), "aes-256-gcm") => {
                let check = file
                    .check
                    .as_deref()
                    .ok_or_else(|| corrupt("no key check".into()))?;
                if Self::open_sealed(key, check, b"check").as_deref() != Some(CHECK) {
                    return Err(VaultError::WrongKey(self.path.clone()));
                }
            }
            (Protection::Plaintext, "plaintext") => {}
            (Protection::Plaintext, "aes-256-gcm") => {
                return Err(VaultError::EncryptedVault(self.path.clone()));
            }
            (Protection::Encrypted(_), "plaintext") => {
                return Err(VaultError::PlaintextVault(self.path.clone()));
            }
            (_, other) => return Err(corrupt(format!("unknown protection {other:?}"))),
        }
        let mut list = Vec::with_capacity(file.accounts.len());
        for stored in file.accounts {
            let mut account = stored.account;
            let token = match &self.protection {
                Protection::Encrypted(key) => {
                    let plain =
                        Self::open_sealed(key, &stored.token, &account.aad()).ok_or_else(|| {
                            corrupt(format!("the token of {} does not open", account.alias))
                        })?;
                    String::from_utf8(plain).map_err(|e| corrupt(e.to_string()))?
                }
                Protection::Plaintext => stored.token,
            };
            account.token = Some(AccessToken::new(token));
            list.push(account);
        }
        Ok(Accounts {
            list,
            default: file.default,
        })
    }

    fn write(&self, accounts: &Accounts) -> Result<(), VaultError> {
        let mut stored = Vec::with_capacity(accounts.list.len());
        for a in &accounts.list {
            let token = a
                .token
                .as_ref()
                .map(AccessToken::expose)
                .unwrap_or_default();
            let token = match &self.protection {
                Protection::Encrypted(key) => Self::seal(key, token.as_bytes(), &a.aad()),
                Protection::Plaintext => token.to_owned(),
            };
            stored.push(StoredAccount {
                account: a.clone(),
                token,
            });
        }
        let file = File {
            version: 1,
            protection: match self.protection {
                Protection::Encrypted(_) => "aes-256-gcm".into(),
                Protection::Plaintext => "plaintext".into(),
            },
            check: match &self.protection {
                Protection::Encrypted(key) => Some(Self::seal(key, CHECK, b"check")),
                Protection::Plaintext => None,
            },
            default: accounts.default.clone(),
            accounts: stored,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| VaultError::Corrupt {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| VaultError::Corrupt {
            path: self.path.clone(),
            why: format!("no randomness for a temporary name: {e}"),
        })?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.unwrap_or_default(),
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        let written = f
            .write_all(&json)
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&self.path)(e));
        }
        // The rename itself must survive a crash.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Changes the vault: under the lock, reads it whole (so a vault that does not open is
    /// never written over), applies `change`, writes it back atomically.
    pub fn update<R>(&self, change: impl FnOnce(&mut Accounts) -> R) -> Result<R, VaultError> {
        let _lock = lock_beside(&self.path, ".lock")?;
        let mut accounts = self.load()?;
        let out = change(&mut accounts);
        self.write(&accounts)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: &str) -> VaultKey {
        VaultKey::from_hex(&byte.repeat(32)).unwrap()
    }

    #[test]
    fn a_key_is_kept_as_the_hex_it_was_read_from() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert_eq!(VaultKey::from_hex(hex).unwrap().to_hex(), hex);
        assert_eq!(key("ab").to_hex(), "ab".repeat(32));
    }

    fn account(alias: &str, token: &str) -> Account {
        Account {
            host: "http://127.0.0.1:8080/".into(),
            app_id: "1955185181361652".into(),
            user_id: format!("1784{alias}"),
            username: Some(alias.into()),
            alias: alias.into(),
            scopes: vec!["user_profile".into()],
            issued_at: 1,
            expires_at: 2,
            last_refreshed_at: None,
            last_refresh_error: None,
            needs_reauthorization: false,
            token: Some(AccessToken::new(token)),
        }
    }

    #[test]
    fn tokens_round_trip_encrypted_and_never_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        let v = Vault::new(&path, Protection::Encrypted(key("ab")));
        v.update(|a| a.upsert(account("alice", "IGQV-secret-token-alice")))
            .unwrap();
        v.update(|a| a.upsert(account("bob", "IGQV-secret-token-bob")))
            .unwrap();
        let raw = fs::read_to_string(&path).unwrap();
        assert!(!raw.contains("IGQV-secret-token"), "{raw}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let loaded = v.load().unwrap();
        assert_eq!(loaded.default.as_deref(), Some("alice"));
        assert_eq!(
            loaded.find(Some("bob")).unwrap().token().unwrap().expose(),
            "IGQV-secret-token-bob"
        );
    }

    #[test]
    fn a_wrong_key_or_a_damaged_file_is_named_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        Vault::new(&path, Protection::Encrypted(key("ab")))
            .update(|a| a.upsert(account("alice", "tok")))
            .unwrap();
        let before = fs::read(&path).unwrap();
        let wrong = Vault::new(&path, Protection::Encrypted(key("cd")));
        assert!(matches!(wrong.load(), Err(VaultError::WrongKey(_))));
        assert!(matches!(
            wrong.update(|a| a.list.clear()),
            Err(VaultError::WrongKey(_))
        ));
        let plain = Vault::new(&path, Protection::Plaintext);
        assert!(matches!(plain.load(), Err(VaultError::EncryptedVault(_))));
        assert_eq!(fs::read(&path).unwrap(), before, "nothing was written");
        // A token moved to another account does not open.
        let text = String::from_utf8(before)
            .unwrap()
            .replace("1784alice", "1784mallory");
        fs::write(&path, text).unwrap();
        let right = Vault::new(&path, Protection::Encrypted(key("ab")));
        assert!(matches!(right.load(), Err(VaultError::Corrupt { .. })));
        assert!(matches!(
            VaultKey::from_hex("abc"),
            Err(VaultError::BadKey(_))
        ));
        assert!(!format!("{:?}", key("ab")).contains("ab"));
        let non_ascii = format!("{}é", "a".repeat(62));
        assert_eq!(non_ascii.len(), 64);
        assert!(matches!(
            VaultKey::from_hex(&non_ascii),
            Err(VaultError::BadKey(_))
        ));
        let plus = format!("+a{}", "0".repeat(62));
        assert!(matches!(
            VaultKey::from_hex(&plus),
            Err(VaultError::BadKey(_))
        ));
    }

    #[test]
    fn an_account_signed_in_again_keeps_its_alias() {
        let mut a = Accounts::default();
        a.upsert(account("alice", "one"));
        let mut again = account("other-alias", "two");
        again.user_id = "1784alice".into();
        a.upsert(again);
        assert_eq!(a.list.len(), 1);
        assert_eq!(a.list[0].alias, "alice");
        assert_eq!(a.list[0].token().unwrap().expose(), "two");
        // The same user on another server is another account, with an alias of its own.
        let mut elsewhere = account("alice", "three");
        elsewhere.host = "https://graph.instagram.com/".into();
        a.upsert(elsewhere);
        let aliases: Vec<&str> = a.list.iter().map(|x| x.alias.as_str()).collect();
        assert_eq!(aliases, ["alice", "alice-2"]);
    }
}
