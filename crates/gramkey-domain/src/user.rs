//! User accounts: username rules and the profile shape.

/// Why a username was refused. The rules are Instagram's: 1–30 characters, letters, digits,
/// periods and underscores; no leading or trailing period and no two periods in a row.
/// Usernames are case-insensitive and stored in lower case.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("usernames must be 1 to 30 characters long")]
    Length,
    #[error("usernames may only use letters, numbers, periods and underscores")]
    Characters,
    #[error("usernames cannot start or end with a period or have two periods in a row")]
    Periods,
}

/// A validated, lower-cased username.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let s = raw.trim().to_ascii_lowercase();
        if s.is_empty() || s.chars().count() > 30 {
            return Err(UsernameError::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            return Err(UsernameError::Characters);
        }
        if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
            return Err(UsernameError::Periods);
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `account_type` values Instagram reports.
pub const ACCOUNT_TYPES: [&str; 3] = ["BUSINESS", "MEDIA_CREATOR", "PERSONAL"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("Alice_01").unwrap().as_str(), "alice_01");
        assert_eq!(Username::parse("a.b").unwrap().as_str(), "a.b");
        assert_eq!(Username::parse(""), Err(UsernameError::Length));
        assert_eq!(Username::parse(&"a".repeat(31)), Err(UsernameError::Length));
        assert_eq!(Username::parse("a b"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("<script>"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("ümlaut"), Err(UsernameError::Characters));
        assert_eq!(Username::parse(".ab"), Err(UsernameError::Periods));
        assert_eq!(Username::parse("ab."), Err(UsernameError::Periods));
        assert_eq!(Username::parse("a..b"), Err(UsernameError::Periods));
    }
}
