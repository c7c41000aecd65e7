//! The server's master key, from which the client-secret hashing key and the cookie keys are
//! derived. It comes from `GRAMKEY_SECRET_KEY` (64 hex characters) or `GRAMKEY_SECRET_KEY_FILE`;
//! without either, from `server.key` in the data directory, created on first start with mode
//! 0600. Every node sharing a database must use the same key: client secrets hashed under one
//! key do not verify under another.

use std::io::Write;
use std::path::Path;

use gramkey_domain::Entropy;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secret key must be 64 hex characters (32 bytes); got {0} characters")]
    Format(usize),
    #[error("cannot read or create the key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub fn parse_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let t = text.trim();
    match hex::decode(t) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(KeyError::Format(t.len())),
    }
}

/// Reads `path`, or creates it with a new random key when it does not exist.
pub fn load_or_create(path: &Path, entropy: &dyn Entropy) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            entropy.fill(&mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = match options.open(path) {
                Ok(f) => f,
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return parse_key(&std::fs::read_to_string(path).map_err(io)?);
                }
                Err(e) => return Err(io(e)),
            };
            f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key.to_vec())
        }
        Err(e) => Err(io(e)),
    }
}
