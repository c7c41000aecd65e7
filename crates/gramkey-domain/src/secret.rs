//! Secret newtypes. Their `Debug` prints `[redacted]`, they compare in constant time, and the
//! only way to the text is the explicit [`expose`](AccessToken::expose) call, so a secret cannot
//! reach a log line by accident through `{:?}`.

use subtle::ConstantTimeEq;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret text. Call only to send it to its owner or to hash it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }
        impl Eq for $name {}
    };
}

secret_type!(
    /// A bearer access token (user or app).
    AccessToken
);
secret_type!(
    /// An app's client secret: 32 hex characters, as Meta issues them.
    ClientSecret
);
secret_type!(
    /// An authorization code (`AQ...`).
    AuthCode
);
secret_type!(
    /// A human password.
    Password
);
secret_type!(
    /// The key that guards the admin HTTP API.
    AdminKey
);

/// Constant-time comparison of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let t = AccessToken::new("IGQVsecretvalue");
        let s = format!("{t:?} {:?}", ClientSecret::new("abc123"));
        assert!(!s.contains("secretvalue"));
        assert!(!s.contains("abc123"));
        assert!(s.contains("[redacted]"));
    }

    #[test]
    fn equality_compares_content() {
        assert_eq!(Password::new("a"), Password::new("a"));
        assert_ne!(Password::new("a"), Password::new("b"));
        assert!(ct_eq(b"xy", b"xy"));
        assert!(!ct_eq(b"xy", b"xz"));
    }
}
