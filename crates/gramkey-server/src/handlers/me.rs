//! Token authentication for the resource API, and `DELETE /me/permissions`.
//!
//! Validating a token costs one SHA-256 and one indexed lookup.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::token::TokenRefusal;
use gramkey_domain::{AccessToken, AppMode, Flavour, TokenHash};
use serde_json::json;

use crate::audit::Entry;
use crate::handlers::QueryPairs;
use crate::limits::{Refusal, Standing};
use crate::observe::{Admitted, LimitHeaders};
use crate::origin::Origin;
use crate::state::AppState;
use crate::test_tools::{self, Injected};
use crate::tokens::{Bearer, Failure};
use crate::wire::graph::GraphResponse;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::ratelimit::{Budget, CallClass};

/// The access token of a request: `Authorization: Bearer …` (or `OAuth …`, as Graph accepts), or
/// the `access_token` query parameter. The same token in both is one token: OAuth compliance
/// shims send the v1 token in the query as well as the header (wire protocol §11). Two
/// different tokens are refused (RFC 6750 §2: one method per request).
pub fn bearer<K: AsRef<str>, V: AsRef<str>>(
    headers: &HeaderMap,
    query: &[(K, V)],
) -> Result<Option<AccessToken>, GraphError> {
    let from_header = match headers.get(AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| GraphError::invalid_token())?;
            let (scheme, rest) = v.split_once(' ').ok_or_else(GraphError::invalid_token)?;
            if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("oauth") {
                return Err(GraphError::invalid_token());
            }
            Some(rest.trim().to_owned())
        }
    };
    let mut from_query = query
        .iter()
        .filter(|(k, _)| k.as_ref() == "access_token")
        .map(|(_, v)| v.as_ref().to_owned());
    let q = from_query.next();
    if from_query.next().is_some() {
        return Err(GraphError::invalid_parameter(
            "access_token was given more than once",
        ));
    }
    match (from_header, q) {
        (Some(h), Some(q)) if h == q => Ok(Some(AccessToken::new(h))),
        (Some(_), Some(_)) => Err(GraphError::invalid_parameter(
            "The Authorization header and the access_token parameter hold different tokens; send one",
        )),
        (Some(t), None) | (None, Some(t)) => Ok(Some(AccessToken::new(t))),
        (None, None) => Ok(None),
    }
}

/// The credential of a resource call, usable now
/// ([`crate::tokens::Tokens::authenticate_token`]). A token of a development-mode app that is
/// refused (expired, revoked) is noted in `limits`, for the app's call log.
pub async fn authenticate(
    state: &AppState,
    origin: &Origin,
    token: Option<AccessToken>,
    limits: &mut LimitHeaders,
) -> Result<Bearer, GraphResponse> {
    match state
        .tokens(origin)
        .authenticate_token(token.as_ref())
        .await
    {
        Ok(bearer) => Ok(bearer),
        Err(refusal @ Failure::Token(TokenRefusal::Expired { .. } | TokenRefusal::Revoked(_))) => {
            if let Some(token) = &token {
                limits.admitted = refused_call(state, token).await;
            }
            Err(refusal.into())
        }
        Err(refusal) => Err(refusal.into()),
    }
}

/// The call of a refused token, when it is a development-mode app's.
async fn refused_call(state: &AppState, token: &AccessToken) -> Option<Admitted> {
    let found = state
        .ops
        .store
        .caller(&TokenHash::of_token(token))
        .await
        .ok()??;
    (found.app.mode == AppMode::Development).then_some(Admitted {
        offset: found.app.clock_offset,
        app: found.token.app_id.clone(),
        token_id: Some(found.token.id),
        fault: None,
        abort: false,
    })
}

/// Charges a resource call to its budgets (wire protocol §6), and notes where the token was
/// used from. On a refusal: Graph code 4 (the app's pool) or 17 (a user's calls or writes; a
/// legacy token's calls), or code 2 while a shared limiter is down and set to fail closed.
/// For a development-mode app, a fault rule matching the call (`method`, `path`) may answer
/// first ([`crate::test_tools::inject`]).
///
/// Beside the verdict it returns what the response must carry, refused or not: the standing
/// for the usage headers, a refusal's wait for `Retry-After`, and the admitted call
/// ([`crate::observe`] writes and notes them).
pub async fn admit(
    state: &AppState,
    origin: &Origin,
    bearer: &Bearer,
    class: CallClass,
    (method, path): (&str, &str),
) -> (LimitHeaders, Result<(), GraphResponse>) {
    let app = bearer.app_id();
    let stored = bearer.stored();
    let row = stored.map(|t| t.id);
    let user_id = stored.and_then(|t| t.user_id);
    let user = user_id.map(|u| u.0);
    // Only development-mode apps have a clock of their own and a call log: a live app's call
    // carries nothing more.
    let sandboxed = bearer.app.mode == AppMode::Development;
    let offset = if sandboxed {
        bearer.app.clock_offset
    } else {
        0
    };
    let mut headers = LimitHeaders {
        admitted: sandboxed.then(|| Admitted {
            app: app.clone(),
            offset,
            token_id: row,
            fault: None,
            abort: false,
        }),
        ..LimitHeaders::default()
    };
    let injected = match test_tools::inject(state, bearer, method, path).await {
        Ok(injected) => injected,
        Err(e) => return (headers, Err(e)),
    };
    let mut note = |fault: &'static str, abort: bool| {
        if let Some(a) = headers.admitted.as_mut() {
            a.fault = Some(fault);
            a.abort = abort;
        }
    };
    let refused = match injected {
        None => None,
        Some(Injected::Delayed(fault)) => {
            note(fault, false);
            None
        }
        Some(Injected::Abort(fault)) => {
            note(fault, true);
            return (headers, Err(GraphError::internal().into()));
        }
        Some(Injected::Refuse {
            error,
            spent,
            fault,
        }) => {
            note(fault, false);
            Some((error, spent))
        }
    };
    if !state.config.rate_limits && refused.is_none() {
        return (headers, Ok(()));
    }
    let (mode, users) = match state.app_facts(app).await {
        Ok(Some(facts)) => facts,
        Ok(None) => return (headers, Err(GraphError::invalid_token().into())),
        Err(e) => return (headers, Err(e.into())),
    };
    let business_user = stored
        .filter(|t| t.flavour == Flavour::InstagramLogin)
        .and_then(|t| t.scoped_id.as_ref().map(|s| s.as_str().to_owned()));
    if let Some((error, spent)) = refused {
        if let Some((_, wait)) = spent {
            let standing = state
                .limiter
                .exhausted(app, (mode, users), user, row, class);
            headers.standing = Some(Standing {
                business_user,
                ..standing
            });
            headers.retry_after = Some(wait);
        }
        return (headers, Err(error.into()));
    }
    state.alerts.call(app);
    if let (Some(ip), Some(row)) = (origin.ip, row) {
        state.alerts.token_used(row, app, user, ip);
    }
    let (standing, refusal) = match state
        .limiter
        .admit(app, (mode, users), user, row, class, offset)
        .await
    {
        Ok(standing) => (standing, None),
        Err((standing, refusal)) => (standing, Some(refusal)),
    };
    // Without a standing (the limiter could not be asked), no usage headers at all.
    headers.standing = standing.map(|standing| Standing {
        business_user,
        ..standing
    });
    let verdict = match refusal {
        None => Ok(()),
        Some(Refusal::Unavailable) => Err(GraphError::unavailable().into()),
        Some(Refusal::Limited {
            budget,
            retry_after,
        }) => {
            headers.retry_after = Some(retry_after);
            state.metrics.rate_limited(budget);
            if state.first_refusal_this_minute(&format!("{app}:{user:?}:{budget:?}")) {
                state
                    .ops
                    .audit(
                        origin,
                        AuditKind::RateLimited,
                        Outcome::Refused,
                        Entry::default()
                            .app(app)
                            .user(user_id)
                            .token_opt(row)
                            .detail(format!("{budget:?} budget; retry after {retry_after} s")),
                    )
                    .await;
            }
            Err(match budget {
                Budget::App => GraphError::app_rate_limited(),
                Budget::User | Budget::LegacyToken => GraphError::user_rate_limited(),
            }
            .into())
        }
    };
    (headers, verdict)
}

/// `DELETE /me/permissions`: the user (through the app) removes the app. Its grant is
/// forgotten, every token it holds for the user is revoked (190/458 from then on), and its
/// deauthorize callback, if it has one, is queued.
pub async fn remove_app(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let mut limits = LimitHeaders::default();
    let result = async {
        let caller = authenticate(&state, &origin, bearer(&headers, &query)?, &mut limits).await?;
        let verdict;
        (limits, verdict) = admit(
            &state,
            &origin,
            &caller,
            CallClass::Write,
            ("DELETE", "/me/permissions"),
        )
        .await;
        verdict?;
        let record = caller
            .into_user_token()
            .ok_or_else(GraphError::missing_token)?;
        let uid = record.user_id.ok_or_else(GraphError::missing_token)?;
        let removal = state
            .ops
            .remove_app_for_user(&origin, &record.app_id, uid, false)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "removing an app failed");
                GraphError::internal()
            })?;
        tracing::info!(app_id = %record.app_id, user_id = uid.0, revoked = removal.tokens, "user removed the app");
        state.forget_app_facts(&record.app_id);
        Ok::<_, GraphResponse>(Json(json!({"success": true})).into_response())
    }
    .await;
    (limits, result.unwrap_or_else(IntoResponse::into_response)).into_response()
}

/// `v19.0`, `v22.0`: the Graph version prefix.
pub fn is_graph_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    (1..=3).contains(&major.len())
        && major.bytes().all(|b| b.is_ascii_digit())
        && (1..=2).contains(&minor.len())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(is_graph_version("v19.0"));
        assert!(is_graph_version("v1.0"));
        assert!(!is_graph_version("v19"));
        assert!(!is_graph_version("19.0"));
        assert!(!is_graph_version("v19.0x"));
    }
}
