//! Authorization codes and PKCE (RFC 7636): how codes look, how long they live, and the checks
//! that decide whether a presented code may be redeemed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::entropy::{Entropy, random_alnum};
use crate::ids::AppId;
use crate::secret::{AuthCode, ct_eq};
use crate::time::UnixTime;

/// A code may be redeemed for one hour (wire protocol §1).
pub const CODE_LIFETIME_SECS: i64 = 3600;

/// A new code: `AQ` followed by 126 letters and digits.
pub fn generate_code(entropy: &dyn Entropy) -> AuthCode {
    AuthCode::new(format!("AQ{}", random_alnum(entropy, 126)))
}

/// RFC 7636 §4.1 `unreserved` characters, 43 to 128 of them: the form of both a verifier and a
/// challenge.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A validated S256 code challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge_method must be S256")]
    Method,
    #[error("code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    Challenge,
    #[error("code_challenge_method was given without code_challenge")]
    MethodWithoutChallenge,
}

impl CodeChallenge {
    /// Only S256 is accepted: `plain` offers no protection against a leaked authorization
    /// request, and a challenge without a method defaults to `plain` (RFC 7636 §4.3).
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Option<Self>, PkceError> {
        match (challenge, method) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(PkceError::MethodWithoutChallenge),
            (Some(_), m) if m != Some("S256") => Err(PkceError::Method),
            (Some(c), _) if !is_pkce_string(c) => Err(PkceError::Challenge),
            (Some(c), _) => Ok(Some(Self(c.to_owned()))),
        }
    }
    pub fn from_stored(s: &str) -> Self {
        Self(s.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge.
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_pkce_string(verifier) {
            return false;
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        ct_eq(computed.as_bytes(), self.0.as_bytes())
    }
}

/// The S256 challenge for a verifier (what a client computes).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What the store knows about a code, for the redemption check.
#[derive(Debug, Clone)]
pub struct CodeFacts<'a> {
    pub app_id: &'a AppId,
    pub redirect_uri: &'a str,
    pub expires_at: UnixTime,
    pub challenge: Option<&'a CodeChallenge>,
}

/// What the client presented with the code.
#[derive(Debug, Clone)]
pub struct Presented<'a> {
    pub app_id: &'a AppId,
    pub redirect_uri: &'a str,
    pub code_verifier: Option<&'a str>,
}

/// Why a code may not be redeemed. The token endpoint renders each in its wire format
/// (`From<CodeRefusal> for TokenEndpointError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// Unknown, expired, or issued to another app: a client is not told which.
    NotFound,
    /// The `redirect_uri` differs from the authorization request's (RFC 6749 §4.1.3).
    RedirectDiffers,
    PkceMismatch,
    PkceMissing,
    PkceUnexpected,
}

/// May this unredeemed code be redeemed by this client now?
///
/// A code issued to another app is reported like an unknown one, so a client learns nothing
/// about codes that are not its own. Every refusal still burns the code (the store marks it
/// redeemed either way), which stops an attacker from trying verifiers one by one.
pub fn check_redemption(
    code: &CodeFacts<'_>,
    got: &Presented<'_>,
    now: UnixTime,
) -> Result<(), CodeRefusal> {
    if code.app_id != got.app_id || now >= code.expires_at {
        return Err(CodeRefusal::NotFound);
    }
    if code.redirect_uri != got.redirect_uri {
        return Err(CodeRefusal::RedirectDiffers);
    }
    match (code.challenge, got.code_verifier) {
        (Some(c), Some(v)) if c.verify(v) => Ok(()),
        (Some(_), Some(_)) => Err(CodeRefusal::PkceMismatch),
        (Some(_), None) => Err(CodeRefusal::PkceMissing),
        (None, Some(_)) => Err(CodeRefusal::PkceUnexpected),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256"))
            .unwrap()
            .unwrap();
        assert!(c.verify(VERIFIER));
        assert!(!c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"));
        assert!(!c.verify("short"));
    }

    #[test]
    fn challenge_parsing() {
        assert_eq!(CodeChallenge::parse(None, None), Ok(None));
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), None),
            Err(PkceError::Method)
        );
        assert_eq!(
            CodeChallenge::parse(Some(CHALLENGE), Some("plain")),
            Err(PkceError::Method)
        );
        assert_eq!(
            CodeChallenge::parse(Some("abc"), Some("S256")),
            Err(PkceError::Challenge)
        );
        assert_eq!(
            CodeChallenge::parse(None, Some("S256")),
            Err(PkceError::MethodWithoutChallenge)
        );
    }

    #[test]
    fn redemption_rules() {
        let app = AppId::parse("1").unwrap();
        let other = AppId::parse("2").unwrap();
        let ch = CodeChallenge::from_stored(CHALLENGE);
        let facts = CodeFacts {
            app_id: &app,
            redirect_uri: "https://a/cb",
            expires_at: 100,
            challenge: Some(&ch),
        };
        let ok = Presented {
            app_id: &app,
            redirect_uri: "https://a/cb",
            code_verifier: Some(VERIFIER),
        };
        assert_eq!(check_redemption(&facts, &ok, 99), Ok(()));
        assert_eq!(
            check_redemption(&facts, &ok, 100),
            Err(CodeRefusal::NotFound)
        );
        let wrong_app = Presented {
            app_id: &other,
            ..ok.clone()
        };
        assert_eq!(
            check_redemption(&facts, &wrong_app, 1),
            Err(CodeRefusal::NotFound)
        );
        let wrong_uri = Presented {
            redirect_uri: "https://a/other",
            ..ok.clone()
        };
        assert_eq!(
            check_redemption(&facts, &wrong_uri, 1),
            Err(CodeRefusal::RedirectDiffers)
        );
        let no_verifier = Presented {
            code_verifier: None,
            ..ok.clone()
        };
        assert_eq!(
            check_redemption(&facts, &no_verifier, 1),
            Err(CodeRefusal::PkceMissing)
        );
        let bad_verifier = Presented {
            code_verifier: Some(&"x".repeat(43)),
            ..ok.clone()
        };
        assert_eq!(
            check_redemption(&facts, &bad_verifier, 1),
            Err(CodeRefusal::PkceMismatch)
        );
        let plain = CodeFacts {
            challenge: None,
            ..facts.clone()
        };
        assert_eq!(
            check_redemption(&plain, &ok, 1),
            Err(CodeRefusal::PkceUnexpected)
        );
        assert_eq!(check_redemption(&plain, &no_verifier, 1), Ok(()));
    }

    #[test]
    fn codes_look_like_instagram_codes() {
        let c = generate_code(&SeededEntropy::new(1));
        assert!(c.expose().starts_with("AQ"));
        assert_eq!(c.expose().len(), 128);
    }
}
