//! Authorization codes and PKCE (RFC 7636): how codes look, how long they live, and the checks
//! that decide whether a presented code may be redeemed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::entropy::{Entropy, random_alnum};
use crate::ids::AppId;
use crate::ids::ScopedUserId;
use crate::scope::ScopeSet;
use crate::secret::{AccessToken, AuthCode, ct_eq};
use crate::time::UnixTime;
use crate::token::{Flavour, REFRESH_TOKEN_SECS, SHORT_LIVED_SECS, TokenMaterial};

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

/// What a redeemed code issues (wire protocol §2): a short-lived token in the flavour of the
/// code's scopes, made from `material` for the code's user, and the refresh token drawn for an
/// app that opted in, each with its expiry.
#[derive(Debug, Clone)]
pub struct CodeIssue {
    pub flavour: Flavour,
    pub access: AccessToken,
    pub access_expires_at: UnixTime,
    pub refresh: Option<(AccessToken, UnixTime)>,
}

/// [`CodeIssue`] for a code with `scopes` for `user`, redeemed at `now`. A code whose scopes
/// are not of one family (never made so) is answered like an unknown one.
pub fn issue_for_code(
    scopes: &ScopeSet,
    user: &ScopedUserId,
    material: &TokenMaterial,
    refresh: Option<&AccessToken>,
    now: UnixTime,
) -> Result<CodeIssue, CodeRefusal> {
    let family = scopes.request_family().map_err(|_| CodeRefusal::NotFound)?;
    let flavour = Flavour::of(family);
    Ok(CodeIssue {
        flavour,
        access: flavour.format_token(user, material),
        access_expires_at: now + SHORT_LIVED_SECS,
        refresh: refresh.map(|r| (r.clone(), now + REFRESH_TOKEN_SECS)),
    })
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
    fn a_code_issues_a_token_in_its_flavour() {
        let e = SeededEntropy::new(3);
        let user = ScopedUserId::parse("17841400000000001").unwrap();
        let m = TokenMaterial::draw(&e, crate::token::MintOrder::at_micros(100_000_000));
        let scopes = |s: &str| ScopeSet::parse(s).unwrap();
        let bd = issue_for_code(&scopes("user_profile,user_media"), &user, &m, None, 100).unwrap();
        assert_eq!(bd.flavour, Flavour::BasicDisplay);
        assert!(bd.access.expose().starts_with("IGQV"));
        assert_eq!(bd.access_expires_at, 100 + SHORT_LIVED_SECS);
        assert!(bd.refresh.is_none());
        let refresh = AccessToken::new("IGRT-refresh");
        let il = issue_for_code(
            &scopes("instagram_business_basic"),
            &user,
            &m,
            Some(&refresh),
            100,
        )
        .unwrap();
        assert!(il.access.expose().starts_with("IGAA"));
        assert_eq!(
            il.refresh.map(|(t, at)| (t.expose().to_owned(), at)),
            Some(("IGRT-refresh".to_owned(), 100 + REFRESH_TOKEN_SECS))
        );
        let v1 = issue_for_code(&scopes("basic"), &user, &m, None, 100).unwrap();
        assert!(v1.access.expose().starts_with("17841400000000001."));
        // The same material, another flavour: the random part is shared, never the format.
        assert_eq!(&bd.access.expose()[4..], &il.access.expose()[4..]);
        assert_eq!(
            issue_for_code(&scopes("user_profile,basic"), &user, &m, None, 100).unwrap_err(),
            CodeRefusal::NotFound
        );
    }

    #[test]
    fn codes_look_like_instagram_codes() {
        let c = generate_code(&SeededEntropy::new(1));
        assert!(c.expose().starts_with("AQ"));
        assert_eq!(c.expose().len(), 128);
    }
}
