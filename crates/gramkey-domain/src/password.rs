//! Human passwords: Argon2id (RFC 9106) with the `argon2` crate's defaults (19 MiB, t=2, p=1,
//! the OWASP recommendation). Hashing costs tens of milliseconds on purpose, so callers run it
//! off the async executor.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::entropy::Entropy;
use crate::secret::Password;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("passwords must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("passwords must be at most 1024 characters")]
    TooLong,
    #[error("could not hash the password")]
    Hash,
}

/// Checks the password policy.
pub fn check_policy(password: &Password) -> Result<(), PasswordError> {
    let n = password.expose().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if n > 1024 {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Argon2id PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &Password, entropy: &dyn Entropy) -> Result<String, PasswordError> {
    check_policy(password)?;
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hash)?;
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// True when `password` matches the stored PHC string. A malformed hash never matches.
pub fn verify_password(password: &Password, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid Argon2id hash of a random password, verified against when the account does not exist
/// so that a failed login takes the same time either way.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3fAc1Yh3EAKQ3sRFLM7w1rBxbFVcqIaTV37DnXFkyS0"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn hash_then_verify() {
        let p = Password::new("correct horse");
        let h = hash_password(&p, &SeededEntropy::new(1)).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&p, &h));
        assert!(!verify_password(&Password::new("wrong horse"), &h));
        assert!(!verify_password(&p, "not a hash"));
    }

    #[test]
    fn policy() {
        assert_eq!(
            check_policy(&Password::new("short")),
            Err(PasswordError::TooShort)
        );
        assert!(check_policy(&Password::new("long enough")).is_ok());
        assert!(PasswordHash::new(dummy_hash()).is_ok());
    }
}
