//! The audit log's vocabulary: what happened, and how it ended. Events carry ids (app, user,
//! token row), the client's address and user agent, never a token, code, secret or password.

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A token was issued from a code, or an app token from client credentials.
    TokenIssued,
    /// A short-lived token was exchanged for a long-lived one.
    TokenExchanged,
    /// A long-lived token or a refresh token was refreshed.
    TokenRefreshed,
    /// Tokens were revoked; the detail says why and how many.
    TokenRevoked,
    /// A code was presented a second time: its tokens were revoked.
    CodeReplay,
    /// A client presented a wrong secret, or was throttled for too many.
    ClientAuthFailed,
    /// A sign-in failed, or was refused while the account or address was throttled.
    LoginFailed,
    LoginSucceeded,
    ConsentGranted,
    /// The user removed the app (or an administrator removed it for them).
    ConsentRemoved,
    SecretRotated,
    AppCreated,
    /// Mode, callback URLs or roles changed.
    AppChanged,
    AppDeleted,
    /// A request was refused by a rate limit (at most one event per budget per minute).
    RateLimited,
    /// A person changed their password (their tokens were revoked with it).
    PasswordChanged,
    /// A person asked an app to delete their data.
    DataDeletionRequested,
}

impl AuditKind {
    pub const ALL: [AuditKind; 17] = [
        Self::TokenIssued,
        Self::TokenExchanged,
        Self::TokenRefreshed,
        Self::TokenRevoked,
        Self::CodeReplay,
        Self::ClientAuthFailed,
        Self::LoginFailed,
        Self::LoginSucceeded,
        Self::ConsentGranted,
        Self::ConsentRemoved,
        Self::SecretRotated,
        Self::AppCreated,
        Self::AppChanged,
        Self::AppDeleted,
        Self::RateLimited,
        Self::PasswordChanged,
        Self::DataDeletionRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenIssued => "token_issued",
            Self::TokenExchanged => "token_exchanged",
            Self::TokenRefreshed => "token_refreshed",
            Self::TokenRevoked => "token_revoked",
            Self::CodeReplay => "code_replay",
            Self::ClientAuthFailed => "client_auth_failed",
            Self::LoginFailed => "login_failed",
            Self::LoginSucceeded => "login_succeeded",
            Self::ConsentGranted => "consent_granted",
            Self::ConsentRemoved => "consent_removed",
            Self::SecretRotated => "secret_rotated",
            Self::AppCreated => "app_created",
            Self::AppChanged => "app_changed",
            Self::AppDeleted => "app_deleted",
            Self::RateLimited => "rate_limited",
            Self::PasswordChanged => "password_changed",
            Self::DataDeletionRequested => "data_deletion_requested",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The caller was wrong (bad secret, bad password).
    Failure,
    /// The caller was stopped before being checked (throttled, locked out).
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Refused => "refused",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Failure, Self::Refused]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AuditKind::parse("token"), None);
        assert_eq!(Outcome::parse("refused"), Some(Outcome::Refused));
    }
}
