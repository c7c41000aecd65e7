//! The store conformance suite: the same checks against every backend. SQLite always runs;
//! PostgreSQL runs when `GRAMKEY_TEST_POSTGRES_URL` is set (always under CI).

// Test helpers outside #[test] functions fail loudly too; real processes wait in real time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;

use gramkey_domain::account::InvitationState;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::callback::{CallbackKind, CallbackState, Confirmation};
use gramkey_domain::code::{CodeChallenge, CodeRefusal};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::{Page, PageRequest};
use gramkey_domain::graph::publish::{ContainerKind, ContainerStatus};
use gramkey_domain::token::{MintOrder, TokenMaterial};
use gramkey_domain::{
    AccessToken, AppId, AppMode, CommentId, ContainerId, Flavour, MediaId, OsEntropy, RedirectUri,
    Role, ScopeSet, ScopedUserId, TokenHash, TokenKind, UserId,
};
use gramkey_store::InvitationsOf;
use gramkey_store::test_support::{fresh_postgres, fresh_sqlite, postgres_url};
use gramkey_store::{
    App, Attempt, CodeClaim, CommentsOf, Container, Derivation, Media, NewCode, NewComment,
    NewToken, NewUser, Profile, Publication, PublishOutcome, Redemption, Revoke, Store, StoreError,
};
use gramkey_store::{AuditEvent, AuditQuery, NetworkSeen, NewAuditEvent, UsageDelta, UsageHour};

const NOW: i64 = 1_700_000_000;

fn app(id: &str) -> App {
    App {
        id: AppId::parse(id).unwrap(),
        name: "Test <App>".into(),
        secret_hash: vec![7; 32],
        redirect_uris: vec![
            RedirectUri::parse("https://a.example/cb").unwrap(),
            RedirectUri::parse("http://127.0.0.1/cb").unwrap(),
        ],
        scopes: ScopeSet::parse("user_profile,user_media").unwrap(),
        mode: AppMode::Development,
        created_at: NOW,
        previous_secret: None,
        refresh_tokens: true,
        secret_seed: Some(vec![1; 32]),
        deauthorize_url: Some("https://a.example/deauth".into()),
        data_deletion_url: None,
        signed_requests: false,
        device_flow: false,
        clock_offset: 0,
        fault_rules: 0,
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        password_hash: "$argon2id$fake".into(),
        profile: Profile {
            full_name: "Full Name".into(),
            account_type: "PERSONAL".into(),
            followers_count: 3,
            ..Profile::default()
        },
    }
}

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

fn code(n: u8, app: &App, user: UserId, scoped: &ScopedUserId) -> NewCode {
    NewCode {
        hash: hash(n),
        app_id: app.id.clone(),
        user_id: user,
        scoped_id: scoped.clone(),
        redirect_uri: "https://a.example/cb".into(),
        scopes: app.scopes.clone(),
        code_challenge: Some(CodeChallenge::from_stored(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )),
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

/// The RFC 7636 Appendix B verifier of [`code`]'s challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// What the client that asked for `code` presents at `now`.
fn claim(code: &NewCode, now: i64) -> CodeClaim {
    CodeClaim {
        app_id: code.app_id.clone(),
        redirect_uri: code.redirect_uri.clone(),
        code_verifier: Some(VERIFIER.into()),
        now,
        material: TokenMaterial::draw(&OsEntropy, MintOrder::at_micros(now * 1_000_000)),
        refresh: None,
    }
}

/// Redeems `code` as its client would at `now`; the hash of the access token it issued.
async fn redeem(s: &dyn Store, code: &NewCode, now: i64) -> TokenHash {
    match s.redeem_code(&code.hash, &claim(code, now)).await.unwrap() {
        Redemption::Issued { token, .. } => TokenHash::of_token(&token),
        other => panic!("expected a token, got {other:?}"),
    }
}

fn token_for(code: &NewCode, token_hash: TokenHash) -> NewToken {
    NewToken {
        hash: token_hash,
        kind: TokenKind::ShortLived,
        flavour: Flavour::BasicDisplay,
        app_id: code.app_id.clone(),
        user_id: Some(code.user_id),
        scopes: code.scopes.clone(),
        issued_at: NOW,
        expires_at: NOW + 3600,
    }
}

async fn apps_and_roles(s: &dyn Store) {
    let a = app("1000000000000001");
    s.create_app(&a).await.unwrap();
    assert!(matches!(
        s.create_app(&a).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.app(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.app(&AppId::parse("9").unwrap()).await.unwrap(), None);
    s.create_app(&app("1000000000000002")).await.unwrap();
    assert_eq!(s.apps().await.unwrap().len(), 2);
    assert!(
        s.set_app_secret(&a.id, &[9; 32], &[2; 32], None, NOW)
            .await
            .unwrap()
    );
    let stored = s.app(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.secret_hash, vec![9; 32]);
    assert_eq!(stored.secret_seed, Some(vec![2; 32]));
    assert!(
        !s.set_app_secret(&AppId::parse("9").unwrap(), &[9; 32], &[2; 32], None, NOW)
            .await
            .unwrap()
    );
    let edited = App {
        name: "Renamed".into(),
        redirect_uris: vec![RedirectUri::parse("https://b.example/cb").unwrap()],
        scopes: ScopeSet::parse("user_profile").unwrap(),
        mode: AppMode::Live,
        refresh_tokens: false,
        signed_requests: true,
        device_flow: true,
        clock_offset: 0,
        fault_rules: 0,
        deauthorize_url: None,
        data_deletion_url: Some("https://a.example/delete".into()),
        // Neither the secret nor the creation time is an editable setting.
        secret_hash: vec![1; 32],
        created_at: NOW + 99,
        ..stored.clone()
    };
    assert!(s.update_app(&edited).await.unwrap());
    assert_eq!(
        s.app(&a.id).await.unwrap().unwrap(),
        App {
            secret_hash: stored.secret_hash.clone(),
            created_at: stored.created_at,
            ..edited.clone()
        }
    );
    assert!(
        !s.update_app(&app("9000000000000009")).await.unwrap(),
        "no such app"
    );

    let u = s.create_user(&new_user("roleholder"), NOW).await.unwrap();
    assert_eq!(s.role(&a.id, u.id).await.unwrap(), None);
    s.set_role(&a.id, u.id, Role::Tester, NOW).await.unwrap();
    s.set_role(&a.id, u.id, Role::Developer, NOW).await.unwrap();
    assert_eq!(s.role(&a.id, u.id).await.unwrap(), Some(Role::Developer));
    assert_eq!(s.roles(&a.id).await.unwrap(), vec![(u.id, Role::Developer)]);
    let listed = s.apps_of(u.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].0.id.clone(), listed[0].1),
        (a.id.clone(), Role::Developer)
    );

    assert!(s.delete_app(&a.id).await.unwrap());
    assert!(!s.delete_app(&a.id).await.unwrap());
    assert_eq!(
        s.role(&a.id, u.id).await.unwrap(),
        None,
        "roles go with the app"
    );
}

async fn users_and_media(s: &dyn Store) {
    let u = s.create_user(&new_user("alice"), NOW).await.unwrap();
    assert!(matches!(
        s.create_user(&new_user("alice"), NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(got, u);
    assert_eq!(got.profile.followers_count, 3);
    assert_eq!(
        s.user(u.id).await.unwrap(),
        Some(std::sync::Arc::new(u.clone()))
    );
    assert_eq!(s.user_by_name("nobody").await.unwrap(), None);
    assert_eq!(s.media_count(u.id).await.unwrap(), 0);
    for i in 0..3 {
        s.add_media(&Media {
            id: mid(&format!("1790000000000000{i}")),
            user_id: u.id,
            media_type: MediaType::Image,
            caption: "hi".into(),
            media_url: "https://m/1.jpg".into(),
            permalink: "https://p/1".into(),
            thumbnail_url: None,
            created_at: NOW + i,
            like_count: 0,
            comments_count: 0,
            parent_id: None,
            position: 0,
        })
        .await
        .unwrap();
    }
    assert_eq!(s.media_count(u.id).await.unwrap(), 3);
    assert!(
        s.users()
            .await
            .unwrap()
            .iter()
            .any(|x| x.username == "alice")
    );
}

async fn grants_codes_tokens(s: &dyn Store) {
    let a = app("1000000000000003");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("bob"), NOW).await.unwrap();
    assert_eq!(s.grant(&a.id, u.id).await.unwrap(), None);
    let scoped = ScopedUserId::parse("17840000000000001").unwrap();
    let g = s
        .save_grant(
            &a.id,
            u.id,
            &ScopeSet::parse("user_profile").unwrap(),
            &scoped,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(g.scoped_id, scoped);
    let again = ScopedUserId::parse("17840000000000002").unwrap();
    let g2 = s
        .save_grant(&a.id, u.id, &a.scopes, &again, NOW + 1)
        .await
        .unwrap();
    assert_eq!(g2.scoped_id, scoped, "a grant keeps its scoped id");
    assert_eq!(g2.scopes, a.scopes);
    assert_eq!(s.grant(&a.id, u.id).await.unwrap(), Some(g2));

    // Unknown code.
    let c = code(2, &a, u.id, &scoped);
    let r = s.redeem_code(&hash(1), &claim(&c, NOW)).await.unwrap();
    assert!(matches!(r, Redemption::NotFound));

    // First redemption issues a token in the flavour of the code's scopes, made from the
    // claim's material.
    s.create_code(&c).await.unwrap();
    let first = claim(&c, NOW + 10);
    let r = s.redeem_code(&c.hash, &first).await.unwrap();
    let Redemption::Issued {
        record: t,
        token,
        refresh,
    } = r
    else {
        panic!("expected a token, got {r:?}")
    };
    assert!(refresh.is_none());
    assert_eq!(
        token.expose(),
        Flavour::BasicDisplay
            .format_token(&scoped, &first.material)
            .expose()
    );
    assert_eq!(t.scoped_id.as_ref(), Some(&scoped));
    assert_eq!((t.user_id, t.expires_at), (Some(u.id), NOW + 10 + 3600));
    let issued = TokenHash::of_token(&token);
    let looked_up = s.token(&issued).await.unwrap().unwrap();
    assert_eq!(looked_up.id, t.id);
    assert_eq!(looked_up.scoped_id, Some(scoped.clone()));
    assert_eq!(looked_up.revoked, None);
    assert_eq!(looked_up.kind, TokenKind::ShortLived);
    // What a resource call reads: the token, its app's facts and its user, in one lookup.
    let caller = s.caller(&issued).await.unwrap().unwrap();
    assert_eq!(
        (caller.token.id, caller.token.scoped_id.as_ref()),
        (looked_up.id, Some(&scoped))
    );
    assert_eq!(caller.app, gramkey_store::AppFacts::of(&a));
    assert_eq!(caller.user.as_deref(), Some(&u));
    assert!(s.caller(&hash(250)).await.unwrap().is_none());

    // Replay revokes what the code issued.
    let r = s.redeem_code(&c.hash, &claim(&c, NOW + 20)).await.unwrap();
    assert!(matches!(r, Redemption::Replayed { revoked: 1 }), "{r:?}");
    assert_eq!(
        s.token(&issued).await.unwrap().unwrap().revoked,
        Some(RevokeReason::CodeReplay)
    );
    assert_eq!(
        s.caller(&issued).await.unwrap().unwrap().token.revoked,
        Some(RevokeReason::CodeReplay),
        "a revocation reaches what resource calls read"
    );
    let r = s.redeem_code(&c.hash, &claim(&c, NOW + 30)).await.unwrap();
    assert!(matches!(r, Redemption::Replayed { revoked: 0 }));

    // A refusal burns the code.
    let c3 = code(3, &a, u.id, &scoped);
    s.create_code(&c3).await.unwrap();
    let wrong_verifier = CodeClaim {
        code_verifier: Some("x".repeat(43)),
        ..claim(&c3, NOW)
    };
    let r = s.redeem_code(&c3.hash, &wrong_verifier).await.unwrap();
    assert!(matches!(r, Redemption::Refused(CodeRefusal::PkceMismatch)));
    let r = s.redeem_code(&c3.hash, &claim(&c3, NOW)).await.unwrap();
    assert!(matches!(r, Redemption::Replayed { revoked: 0 }));
    let would_have = Flavour::BasicDisplay.format_token(&scoped, &wrong_verifier.material);
    assert!(
        s.token(&TokenHash::of_token(&would_have))
            .await
            .unwrap()
            .is_none()
    );

    // An app that opted in gets a refresh token, stored under the access token.
    let c4 = code(9, &a, u.id, &scoped);
    s.create_code(&c4).await.unwrap();
    let with_refresh = CodeClaim {
        refresh: Some(AccessToken::new("IGRT-conformance-refresh-token")),
        ..claim(&c4, NOW)
    };
    let Redemption::Issued { refresh, .. } = s.redeem_code(&c4.hash, &with_refresh).await.unwrap()
    else {
        panic!("expected tokens")
    };
    let refresh = refresh.expect("a refresh token");
    let stored = s
        .token(&TokenHash::of_token(&refresh))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.kind, stored.expires_at),
        (TokenKind::Refresh, NOW + 90 * 24 * 3600)
    );
}

async fn concurrent_redemption_has_one_winner(s: Arc<dyn Store>) {
    let a = app("1000000000000004");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("carol"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000009").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let c = code(4, &a, u.id, &scoped);
    s.create_code(&c).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, c) = (s.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            s.redeem_code(&c.hash, &claim(&c, NOW)).await.unwrap()
        }));
    }
    let mut issued = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Redemption::Issued { .. }) {
            issued += 1;
        }
    }
    assert_eq!(issued, 1, "exactly one concurrent redemption wins");
}

/// Many redemptions at once (PostgreSQL runs concurrent ones in one transaction): each caller
/// gets its own answer, as if it had been alone. Among them: codes claimed twice (one claim
/// wins, the other is a replay that revokes what the first issued, whichever came first),
/// refusals, unknown codes, refresh tokens, and a claim whose token cannot be stored, which
/// fails alone.
async fn concurrent_redemptions(s: Arc<dyn Store>) {
    let a = app("1000000000000077");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("crowd"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000777").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let code_n = |n: u32| NewCode {
        hash: round_hash(0xc0, n),
        ..code(0, &a, u.id, &scoped)
    };
    for n in 0..200 {
        s.create_code(&code_n(n)).await.unwrap();
    }
    // Code 7's token is already stored under another app's code: its insert conflicts.
    let clash = claim(&code_n(7), NOW);
    let clash_token = Flavour::BasicDisplay.format_token(&scoped, &clash.material);
    s.create_token(&token_for(&code_n(999), TokenHash::of_token(&clash_token)))
        .await
        .unwrap();

    // First all at once: 0..150 valid (every third with a refresh token; 150..160 claimed
    // twice), 160..180 with a wrong verifier, 180..200 for codes that were never made. Then
    // code 7 again, whose token clashes, with 200..220.
    let call = |n: u32| {
        let c = code_n(n);
        let mut claim = if n == 7 {
            clash.clone()
        } else {
            claim(&c, NOW + 1)
        };
        if n.is_multiple_of(3) {
            claim.refresh = Some(AccessToken::new(format!("IGRT-crowd-{n}")));
        }
        if (160..180).contains(&n) {
            claim.code_verifier = Some("x".repeat(43));
        }
        let hash = if (180..200).contains(&n) {
            round_hash(0xc1, n)
        } else {
            c.hash
        };
        let s = s.clone();
        tokio::spawn(async move { (n, s.redeem_code(&hash, &claim).await) })
    };
    for n in 200..220 {
        s.create_code(&code_n(n)).await.unwrap();
    }
    let first: Vec<_> = (0..200u32)
        .filter(|n| *n != 7)
        .chain(150..160)
        .map(call)
        .collect();
    let mut calls = Vec::new();
    for c in first {
        calls.push(c.await.unwrap());
    }
    let then: Vec<_> = std::iter::once(7).chain(200..220).map(call).collect();
    for c in then {
        calls.push(c.await.unwrap());
    }
    let mut twice: std::collections::HashMap<u32, Vec<Redemption>> = Default::default();
    for (n, answer) in calls {
        match n {
            7 => assert!(
                matches!(answer, Err(StoreError::Conflict(_))),
                "a clashing token fails its own call: {answer:?}"
            ),
            150..160 => twice.entry(n).or_default().push(answer.unwrap()),
            160..180 => assert!(
                matches!(answer, Ok(Redemption::Refused(CodeRefusal::PkceMismatch))),
                "{n}: {answer:?}"
            ),
            180..200 => assert!(
                matches!(answer, Ok(Redemption::NotFound)),
                "{n}: {answer:?}"
            ),
            _ => {
                let Ok(Redemption::Issued {
                    record,
                    token,
                    refresh,
                }) = answer
                else {
                    panic!("{n}: expected a token, got {answer:?}")
                };
                assert_eq!(record.issued_at, NOW + 1);
                let stored = s
                    .token(&TokenHash::of_token(&token))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!((stored.id, stored.revoked), (record.id, None), "{n}");
                assert_eq!(refresh.is_some(), n.is_multiple_of(3), "{n}");
                if let Some(refresh) = refresh {
                    let r = s
                        .token(&TokenHash::of_token(&refresh))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(r.kind, TokenKind::Refresh, "{n}");
                }
            }
        }
    }
    for (n, answers) in twice {
        let issued: Vec<_> = answers
            .iter()
            .filter_map(|a| match a {
                Redemption::Issued { token, .. } => Some(TokenHash::of_token(token)),
                _ => None,
            })
            .collect();
        assert_eq!(issued.len(), 1, "{n}: one claim wins: {answers:?}");
        assert!(
            answers
                .iter()
                .any(|a| matches!(a, Redemption::Replayed { .. })),
            "{n}: {answers:?}"
        );
        // Whichever ran first, the token the code gave is revoked in the end.
        assert_eq!(
            s.token(&issued[0]).await.unwrap().unwrap().revoked,
            Some(RevokeReason::CodeReplay),
            "{n}"
        );
    }
}

/// Many derivations at once (PostgreSQL runs concurrent exchanges and rotations in one
/// transaction): exchanges, some of one token twice (one wins); rotations, some twice (both
/// win, within the grace); parents that were revoked (refused); and `ig_refresh_token`
/// refreshes, which run alone.
async fn concurrent_derivations(s: Arc<dyn Store>) {
    let a = app("1000000000000078");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("crowd2"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000778").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let c = code(0, &a, u.id, &scoped);
    let parent = |n: u32| round_hash(0xd0, n);
    let child = |n: u32, k: u32| NewToken {
        kind: TokenKind::LongLived,
        ..token_for(&c, round_hash(0xd1 + u8::try_from(k).unwrap(), n))
    };
    // 0..60 exchanged (40..60 twice), 60..100 rotated (80..100 twice), 100..110 revoked, 110..120
    // refreshed.
    for n in 0..120u32 {
        let kind = if (60..100).contains(&n) {
            TokenKind::Refresh
        } else {
            TokenKind::ShortLived
        };
        s.create_token(&NewToken {
            kind,
            ..token_for(&c, parent(n))
        })
        .await
        .unwrap();
    }
    for n in 100..110 {
        s.revoke_tokens(Revoke::Token(parent(n)), RevokeReason::Revoked, NOW)
            .await
            .unwrap();
    }
    let calls: Vec<_> = (0..120u32)
        .map(|n| (n, 0))
        .chain((40..60).chain(80..100).map(|n| (n, 1)))
        .map(|(n, k)| {
            let how = match n {
                60..100 => Derivation::Rotate {
                    now: NOW + 1,
                    reusable_since: NOW - 60,
                },
                110.. => Derivation::Refresh {
                    now: NOW + 1,
                    parent_expires_at: NOW + 61,
                },
                _ => Derivation::Exchange { now: NOW + 1 },
            };
            let tokens = if (60..100).contains(&n) {
                vec![child(n, 2 * k), child(n, 2 * k + 1)]
            } else {
                vec![child(n, k)]
            };
            let s = s.clone();
            tokio::spawn(async move {
                (
                    n,
                    tokens.clone(),
                    s.derive_tokens(&parent(n), how, &tokens).await,
                )
            })
        })
        .collect();
    let mut exchanged = std::collections::HashMap::<u32, u32>::new();
    for call in calls {
        let (n, tokens, answer) = call.await.unwrap();
        let answer = answer.unwrap();
        if (100..110).contains(&n) {
            assert!(answer.is_none(), "{n}: a revoked parent: {answer:?}");
            continue;
        }
        if (40..60).contains(&n) {
            *exchanged.entry(n).or_default() += u32::from(answer.is_some());
            if answer.is_none() {
                continue;
            }
        }
        let records = answer.unwrap_or_else(|| panic!("{n}: refused"));
        assert_eq!(records.len(), tokens.len(), "{n}");
        for (record, token) in records.iter().zip(&tokens) {
            let stored = s.token(&token.hash).await.unwrap().unwrap();
            assert_eq!((stored.id, stored.kind), (record.id, token.kind), "{n}");
            assert_eq!(stored.revoked, None, "{n}");
        }
    }
    assert!(
        exchanged.values().all(|w| *w == 1),
        "one exchange each: {exchanged:?}"
    );
    for n in 0..100 {
        assert!(s.token(&parent(n)).await.unwrap().unwrap().exchanged, "{n}");
    }
}

/// A token hash of its own for round `n` of a race, `tag` telling the roles apart.
fn round_hash(tag: u8, n: u32) -> TokenHash {
    let mut h = [tag; 32];
    h[..4].copy_from_slice(&n.to_be_bytes());
    TokenHash(h)
}

/// Family revocation raced against derivation from the same family (issue 15: PostgreSQL let
/// tokens made at the same moment survive). Each round races a code replay against
/// `ig_exchange_token` of the code's token, and a refresh-token reuse (the whole family
/// revoked) against a refresh of the reused token's child. Whatever the order, no token of a
/// revoked family may stay valid.
async fn family_revocation_races_leave_no_survivor(s: Arc<dyn Store>, rounds: u32) {
    let a = app("1000000000000009");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("racer"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000019").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let mut survivors = Vec::new();
    for n in 0..rounds {
        let c = NewCode {
            hash: round_hash(201, n),
            ..code(0, &a, u.id, &scoped)
        };
        s.create_code(&c).await.unwrap();
        let root = redeem(&*s, &c, NOW).await;

        // A code replay against an exchange of the code's token.
        let long = NewToken {
            kind: TokenKind::LongLived,
            ..token_for(&c, round_hash(202, n))
        };
        let (replay, exchange) = tokio::join!(
            tokio::spawn({
                let (s, c) = (s.clone(), c.clone());
                async move { s.redeem_code(&c.hash, &claim(&c, NOW + 1)).await.unwrap() }
            }),
            tokio::spawn({
                let (s, long) = (s.clone(), long.clone());
                async move {
                    s.derive_tokens(&root, Derivation::Exchange { now: NOW + 1 }, &[long])
                        .await
                        .unwrap()
                }
            }),
        );
        assert!(matches!(replay.unwrap(), Redemption::Replayed { .. }));
        if exchange.unwrap().is_some()
            && s.token(&long.hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
                .is_none()
        {
            survivors.push(format!(
                "round {n}: the exchanged token outlived the code replay"
            ));
        }

        // A refresh-token reuse (its family revoked) against a refresh of its child.
        let child = round_hash(203, n);
        let c2 = NewCode {
            hash: round_hash(204, n),
            ..code(0, &a, u.id, &scoped)
        };
        s.create_code(&c2).await.unwrap();
        let reused = redeem(&*s, &c2, NOW).await;
        s.derive_tokens(
            &reused,
            Derivation::Exchange { now: NOW + 1 },
            &[token_for(&c2, child)],
        )
        .await
        .unwrap()
        .unwrap();
        let grandchild = token_for(&c2, round_hash(205, n));
        let (revoked, refreshed) = tokio::join!(
            tokio::spawn({
                let s = s.clone();
                async move {
                    s.revoke_tokens(Revoke::Family(reused), RevokeReason::Revoked, NOW + 2)
                        .await
                        .unwrap()
                }
            }),
            tokio::spawn({
                let (s, grandchild) = (s.clone(), grandchild.clone());
                async move {
                    s.derive_tokens(
                        &child,
                        Derivation::Refresh {
                            now: NOW + 2,
                            parent_expires_at: NOW + 3600,
                        },
                        &[grandchild],
                    )
                    .await
                    .unwrap()
                }
            }),
        );
        assert!(revoked.unwrap() >= 2);
        if refreshed.unwrap().is_some()
            && s.token(&grandchild.hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
                .is_none()
        {
            survivors.push(format!(
                "round {n}: the refreshed token outlived the family's revocation"
            ));
        }
    }
    assert!(
        survivors.is_empty(),
        "{} survivors: {survivors:?}",
        survivors.len()
    );
}

async fn deleting_an_app_removes_its_tokens(s: &dyn Store) {
    let a = app("1000000000000005");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("dave"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000005").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let c = code(5, &a, u.id, &scoped);
    s.create_code(&c).await.unwrap();
    let issued = redeem(s, &c, NOW).await;
    assert!(s.token(&issued).await.unwrap().is_some());
    s.delete_app(&a.id).await.unwrap();
    assert!(s.token(&issued).await.unwrap().is_none());
    assert!(s.grant(&a.id, u.id).await.unwrap().is_none());
}

async fn derived_tokens(s: &dyn Store) {
    let a = app("1000000000000006");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("frank"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000006").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let c = code(6, &a, u.id, &scoped);
    s.create_code(&c).await.unwrap();
    let short = redeem(s, &c, NOW).await;
    assert!(!s.token(&short).await.unwrap().unwrap().exchanged);

    let long = NewToken {
        hash: hash(61),
        kind: TokenKind::LongLived,
        expires_at: NOW + 100,
        ..token_for(&c, hash(61))
    };
    let issued = s
        .derive_tokens(
            &short,
            Derivation::Exchange { now: NOW + 1 },
            std::slice::from_ref(&long),
        )
        .await
        .unwrap()
        .unwrap()
        .remove(0);
    assert_eq!(issued.kind, TokenKind::LongLived);
    assert!(s.token(&short).await.unwrap().unwrap().exchanged);
    let again = NewToken {
        hash: hash(62),
        ..long.clone()
    };
    assert!(
        s.derive_tokens(
            &short,
            Derivation::Exchange { now: NOW + 2 },
            std::slice::from_ref(&again)
        )
        .await
        .unwrap()
        .is_none(),
        "once"
    );
    assert!(
        s.token(&hash(62)).await.unwrap().is_none(),
        "nothing written for the loser"
    );
    assert!(
        s.derive_tokens(
            &hash(99),
            Derivation::Exchange { now: NOW },
            std::slice::from_ref(&again)
        )
        .await
        .unwrap()
        .is_none()
    );

    let refreshed = NewToken {
        hash: hash(63),
        ..long.clone()
    };
    s.derive_tokens(
        &hash(61),
        Derivation::Refresh {
            now: NOW + 5,
            parent_expires_at: NOW + 10,
        },
        std::slice::from_ref(&refreshed),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s.token(&hash(61)).await.unwrap().unwrap().expires_at,
        NOW + 10,
        "cut to the grace period"
    );
    // Read once, so a cache holds it.
    assert!(s.token(&hash(63)).await.unwrap().unwrap().revoked.is_none());
    let later = NewToken {
        hash: hash(64),
        ..long.clone()
    };
    s.derive_tokens(
        &hash(61),
        Derivation::Refresh {
            now: NOW + 6,
            parent_expires_at: NOW + 50,
        },
        std::slice::from_ref(&later),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s.token(&hash(61)).await.unwrap().unwrap().expires_at,
        NOW + 10,
        "never extended"
    );
    // At most one valid successor: the second refresh revoked what the first made.
    assert!(s.token(&hash(63)).await.unwrap().unwrap().revoked.is_some());
    assert!(s.token(&hash(64)).await.unwrap().unwrap().revoked.is_none());
    assert_eq!(
        s.token(&hash(64)).await.unwrap().unwrap().scoped_id,
        Some(scoped)
    );

    // Refresh-token rotation: attach, rotate, reuse within the grace, reuse after it.
    let rt = NewToken {
        hash: hash(65),
        kind: TokenKind::Refresh,
        ..long.clone()
    };
    s.derive_tokens(&hash(64), Derivation::Attach, std::slice::from_ref(&rt))
        .await
        .unwrap()
        .unwrap();
    let pair = [
        NewToken {
            hash: hash(66),
            ..long.clone()
        },
        NewToken {
            hash: hash(67),
            kind: TokenKind::Refresh,
            ..long.clone()
        },
    ];
    let rotated = s
        .derive_tokens(
            &hash(65),
            Derivation::Rotate {
                now: NOW + 100,
                reusable_since: NOW + 90,
            },
            &pair,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.len(), 2);
    let again = [NewToken {
        hash: hash(68),
        ..long.clone()
    }];
    let within = Derivation::Rotate {
        now: NOW + 105,
        reusable_since: NOW + 95,
    };
    assert!(
        s.derive_tokens(&hash(65), within, &again)
            .await
            .unwrap()
            .is_some(),
        "within the grace"
    );
    let late = [NewToken {
        hash: hash(69),
        ..long.clone()
    }];
    let after = Derivation::Rotate {
        now: NOW + 200,
        reusable_since: NOW + 190,
    };
    assert!(
        s.derive_tokens(&hash(65), after, &late)
            .await
            .unwrap()
            .is_none(),
        "reuse after the grace"
    );
    assert!(s.token(&hash(69)).await.unwrap().is_none());
    let n = s
        .revoke_tokens(Revoke::Family(hash(65)), RevokeReason::Revoked, NOW + 200)
        .await
        .unwrap();
    assert!(n >= 6, "the whole family, from the code's token down: {n}");
    let family = [61, 64, 65, 66, 67, 68].map(hash);
    for h in std::iter::once(short).chain(family) {
        assert!(
            s.token(&h).await.unwrap().unwrap().revoked.is_some(),
            "token {h:?}"
        );
    }
}

async fn purging(s: &dyn Store) {
    let a = app("1000000000000007");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("gina"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000007").unwrap();
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    // Three codes expiring at NOW+3600 (one redeemed into a token expiring at NOW+3600).
    for n in 70..73 {
        s.create_code(&code(n, &a, u.id, &scoped)).await.unwrap();
    }
    let c = code(70, &a, u.id, &scoped);
    let issued = redeem(s, &c, NOW).await;
    let before = gramkey_domain::retention::Cutoffs {
        codes_before: NOW + 3600,
        tokens_before: NOW + 3600,
        callbacks_before: NOW,
        audit_before: 0,
        usage_before: 0,
    };
    let none = s.purge(before, 10).await.unwrap();
    assert_eq!(
        (none.codes, none.tokens),
        (0, 0),
        "nothing is past its retention yet"
    );
    let after = gramkey_domain::retention::Cutoffs {
        codes_before: NOW + 3601,
        tokens_before: NOW + 3601,
        callbacks_before: NOW,
        audit_before: 0,
        usage_before: 0,
    };
    let first = s.purge(after, 2).await.unwrap();
    assert_eq!((first.codes, first.tokens), (2, 1), "batches are bounded");
    let second = s.purge(after, 2).await.unwrap();
    assert_eq!(second.codes, 1);
    assert!(s.token(&issued).await.unwrap().is_none());

    // Revoked tokens go once their revocation is past the cutoff, however far off their expiry;
    // expired ones first, then revoked ones, within one batch.
    let c = code(70, &a, u.id, &scoped);
    let year = |n| NewToken {
        expires_at: NOW + 365 * 86_400,
        ..token_for(&c, hash(n))
    };
    for n in 74..77 {
        s.create_token(&year(n)).await.unwrap();
    }
    s.create_token(&NewToken {
        expires_at: NOW + 10,
        ..token_for(&c, hash(77))
    })
    .await
    .unwrap();
    for n in [74, 75] {
        s.revoke_tokens(Revoke::Token(hash(n)), RevokeReason::Revoked, NOW + 20)
            .await
            .unwrap();
    }
    let at = |tokens_before| gramkey_domain::retention::Cutoffs {
        tokens_before,
        ..after
    };
    assert_eq!(
        s.purge(at(NOW + 20), 10).await.unwrap().tokens,
        1,
        "the expired one"
    );
    let p = s.purge(at(NOW + 21), 2).await.unwrap();
    assert_eq!(p.tokens, 2, "both revoked ones, the batch full");
    assert_eq!(s.purge(at(NOW + 21), 2).await.unwrap().tokens, 0);
    for (n, kept) in [(74, false), (75, false), (76, true), (77, false)] {
        assert_eq!(
            s.token(&hash(n)).await.unwrap().is_some(),
            kept,
            "token {n}"
        );
    }
}

async fn callback_outbox(s: Arc<dyn Store>) {
    let a = app("1000000000000008");
    s.create_app(&a).await.unwrap();
    let u = s.create_user(&new_user("hank"), NOW).await.unwrap();
    let scoped = ScopedUserId::parse("17840000000000008").unwrap();
    let both = [CallbackKind::Deauthorize, CallbackKind::DataDeletion];
    let delivered = |at| Attempt::Delivered {
        at,
        url: "https://a.example/deauth".into(),
        confirmation: Confirmation::default(),
    };

    // No grant: nothing to remove, nothing queued.
    let r = s
        .remove_grant(&a.id, u.id, RevokeReason::AppRemoved, NOW, &both)
        .await
        .unwrap();
    assert!(!r.grant);
    assert!(s.callbacks(Some(&a.id), 10).await.unwrap().is_empty());

    // With a grant and a token: the grant goes, the token is revoked, both callbacks queue,
    // naming the user by the grant's app-scoped id.
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    let c = code(80, &a, u.id, &scoped);
    s.create_code(&c).await.unwrap();
    let issued = redeem(&*s, &c, NOW).await;
    s.create_code(&code(81, &a, u.id, &scoped)).await.unwrap();
    let r = s
        .remove_grant(&a.id, u.id, RevokeReason::AppRemoved, NOW, &both)
        .await
        .unwrap();
    assert!(r.grant);
    assert_eq!(r.tokens, 1);
    assert_eq!(s.grant(&a.id, u.id).await.unwrap(), None);
    assert_eq!(
        s.token(&issued).await.unwrap().unwrap().revoked,
        Some(RevokeReason::AppRemoved)
    );
    let burned = s.redeem_code(&hash(81), &claim(&c, NOW)).await.unwrap();
    assert!(matches!(burned, Redemption::Replayed { .. }), "{burned:?}");
    let listed = s.callbacks(Some(&a.id), 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].kind, CallbackKind::DataDeletion, "newest first");
    assert_eq!(listed[1].state, CallbackState::Pending);
    assert_eq!((listed[1].user_id, &listed[1].scoped_id), (u.id, &scoped));
    assert_eq!(listed[1].attempts, 0);

    // Claims from many tasks at once: each callback goes to exactly one claimer.
    let claims = (0..6).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.claim_callbacks(NOW + 1, NOW + 61, 1).await.unwrap() })
    });
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.unwrap());
    }
    assert_eq!(claimed.len(), 2, "each callback claimed once: {claimed:?}");
    assert_ne!(claimed[0].id, claimed[1].id);
    assert!(
        claimed
            .iter()
            .all(|c| c.attempts == 1 && c.next_attempt_at == NOW + 61)
    );
    assert!(
        s.claim_callbacks(NOW + 60, NOW + 120, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    let (deauth, deletion) = if claimed[0].kind == CallbackKind::Deauthorize {
        (claimed[0].id, claimed[1].id)
    } else {
        (claimed[1].id, claimed[0].id)
    };
    assert!(
        s.finish_attempt(deauth, 1, &delivered(NOW + 2))
            .await
            .unwrap()
    );
    let retry = Attempt::Retry {
        url: Some("https://a.example/delete".into()),
        error: "the app answered HTTP 503".into(),
        next_at: NOW + 100,
    };
    assert!(s.finish_attempt(deletion, 1, &retry).await.unwrap());
    assert!(
        !s.finish_attempt(deauth, 1, &retry).await.unwrap(),
        "a finished callback stays finished"
    );
    assert!(
        s.claim_callbacks(NOW + 99, NOW + 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A claimer that dies leaves its lease to run out; the callback comes due again, and the
    // late claimer's outcome, when it finally arrives, does not overwrite the new attempt's.
    let again = s.claim_callbacks(NOW + 100, NOW + 160, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("the app answered HTTP 503")
    );
    let again = s.claim_callbacks(NOW + 160, NOW + 220, 10).await.unwrap();
    assert_eq!(again[0].attempts, 3);
    assert!(
        !s.finish_attempt(deletion, 2, &delivered(NOW + 161))
            .await
            .unwrap(),
        "attempt 2's lease ran out"
    );
    let gave_up = Attempt::GaveUp {
        at: NOW + 161,
        url: None,
        error: "gave up".into(),
    };
    assert!(s.finish_attempt(deletion, 3, &gave_up).await.unwrap());
    let listed = s.callbacks(None, 100).await.unwrap();
    let find = |id| listed.iter().find(|c| c.id == id).unwrap().clone();
    let d = find(deauth);
    assert_eq!(d.state, CallbackState::Delivered);
    assert_eq!(d.finished_at, Some(NOW + 2));
    assert_eq!(d.url.as_deref(), Some("https://a.example/deauth"));
    let f = find(deletion);
    assert_eq!(f.state, CallbackState::Failed);
    assert_eq!(
        f.url.as_deref(),
        Some("https://a.example/delete"),
        "kept when not given"
    );
    assert_eq!(f.last_error.as_deref(), Some("gave up"));

    // Retry: a failed one is queued again with a fresh count; a delivered one is not.
    assert!(!s.retry_callback(deauth, NOW + 300).await.unwrap());
    assert!(!s.retry_callback(-1, NOW + 300).await.unwrap());
    assert!(s.retry_callback(deletion, NOW + 300).await.unwrap());
    let r = s.claim_callbacks(NOW + 300, NOW + 360, 10).await.unwrap();
    assert_eq!((r.len(), r[0].attempts), (1, 1));
    assert!(
        !s.retry_callback(deletion, NOW + 301).await.unwrap(),
        "a pending one (here: leased) is not requeued"
    );
    let confirmed = Attempt::Delivered {
        at: NOW + 301,
        url: "https://a.example/delete".into(),
        confirmation: Confirmation {
            confirmation_code: Some("c0de".into()),
            status_url: Some("https://a.example/status".into()),
        },
    };
    assert!(s.finish_attempt(deletion, 1, &confirmed).await.unwrap());
    let listed = s.callbacks(Some(&a.id), 10).await.unwrap();
    assert_eq!(
        listed[0].confirmation.confirmation_code.as_deref(),
        Some("c0de")
    );
    assert_eq!(listed[0].last_error, None);

    // The janitor deletes finished callbacks past their retention, never pending ones.
    s.save_grant(&a.id, u.id, &a.scopes, &scoped, NOW)
        .await
        .unwrap();
    s.remove_grant(&a.id, u.id, RevokeReason::AppRemoved, NOW, &both[..1])
        .await
        .unwrap();
    let cutoffs = |callbacks_before| gramkey_domain::retention::Cutoffs {
        codes_before: 0,
        tokens_before: 0,
        callbacks_before,
        audit_before: 0,
        usage_before: 0,
    };
    assert_eq!(s.purge(cutoffs(NOW + 2), 10).await.unwrap().callbacks, 0);
    assert_eq!(s.purge(cutoffs(NOW + 3), 10).await.unwrap().callbacks, 1);
    assert_eq!(s.purge(cutoffs(i64::MAX), 10).await.unwrap().callbacks, 1);
    let left = s.callbacks(Some(&a.id), 10).await.unwrap();
    assert_eq!(left.len(), 1, "the pending one stays");
    assert_eq!(left[0].state, CallbackState::Pending);

    // Deleting the app deletes its outbox.
    s.delete_app(&a.id).await.unwrap();
    assert!(s.callbacks(Some(&a.id), 10).await.unwrap().is_empty());
}

/// Subscriptions, who hears of an account, and the notification outbox: queued with the
/// comment that causes it, claimed once under a lease, retried, finished, purged.
async fn webhooks(s: &dyn Store) {
    use gramkey_domain::webhook::{Field, Fields, OBJECT};
    use gramkey_store::{AccountSubscription, AppSubscription, NewWebhook};
    let mut a = app("1000000000000011");
    a.mode = AppMode::Live;
    s.create_app(&a).await.unwrap();
    let dev = app("1000000000000012");
    s.create_app(&dev).await.unwrap();
    let owner = s.create_user(&new_user("wendy"), NOW).await.unwrap();
    let fields = Fields::parse("fields", "comments,mentions").unwrap();
    let sub = AppSubscription {
        object: OBJECT.into(),
        callback_url: "https://a.example/hook".into(),
        fields: fields.clone(),
        updated_at: NOW,
    };
    assert_eq!(s.app_subscription(&a.id, OBJECT).await.unwrap(), None);
    for app in [&a, &dev] {
        s.save_app_subscription(&app.id, &sub).await.unwrap();
    }
    assert_eq!(
        s.app_subscription(&a.id, OBJECT).await.unwrap(),
        Some(sub.clone())
    );
    let moved = AppSubscription {
        callback_url: "https://a.example/hook2".into(),
        ..sub.clone()
    };
    s.save_app_subscription(&a.id, &moved).await.unwrap();
    assert_eq!(
        s.app_subscription(&a.id, OBJECT).await.unwrap(),
        Some(moved)
    );

    // The account subscribes both apps but has authorized only the live one, then the
    // development one: only a live app with a grant hears of it.
    let scopes =
        ScopeSet::parse("instagram_business_basic,instagram_business_manage_comments").unwrap();
    let scoped = ScopedUserId::parse("17840000000000011").unwrap();
    for app in [&a, &dev] {
        s.subscribe_account(&AccountSubscription {
            app_id: app.id.clone(),
            user_id: owner.id,
            fields: fields.clone(),
            created_at: NOW,
        })
        .await
        .unwrap();
    }
    assert!(
        s.webhook_targets(owner.id).await.unwrap().is_empty(),
        "no grant yet"
    );
    s.save_grant(&a.id, owner.id, &scopes, &scoped, NOW)
        .await
        .unwrap();
    s.save_grant(
        &dev.id,
        owner.id,
        &scopes,
        &ScopedUserId::parse("17840000000000012").unwrap(),
        NOW,
    )
    .await
    .unwrap();
    let targets = s.webhook_targets(owner.id).await.unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0].app_id, a.id);
    assert_eq!(targets[0].account, scoped);
    assert_eq!(targets[0].scopes, scopes);
    assert_eq!(targets[0].fields, fields);
    assert_eq!(s.account_subscriptions(owner.id).await.unwrap().len(), 2);
    assert!(s.unsubscribe_account(&dev.id, owner.id).await.unwrap());
    assert!(!s.unsubscribe_account(&dev.id, owner.id).await.unwrap());
    assert_eq!(
        s.account_subscriptions(owner.id).await.unwrap()[0].app_id,
        a.id
    );

    // A comment and its notification commit together; a refused comment queues nothing.
    let m = media(9011, owner.id, NOW, None);
    s.add_media(&m).await.unwrap();
    let note = |body: &str| NewWebhook {
        app_id: a.id.clone(),
        field: Field::Comments,
        body: body.into(),
        test: false,
        created_at: NOW,
    };
    let comment = |id: &str, media_id: MediaId, body: &str| NewComment {
        id: cid(id),
        media_id,
        user_id: owner.id,
        parent_id: None,
        text: "hi".into(),
        created_at: NOW,
        notifications: vec![note(body)],
    };
    assert!(
        s.add_comment(&comment("18100000000000001", m.id.clone(), "{\"n\":1}"))
            .await
            .unwrap()
    );
    assert!(
        !s.add_comment(&comment(
            "18100000000000002",
            mid("17999999999999998"),
            "{\"n\":2}"
        ))
        .await
        .unwrap()
    );
    let listed = s.webhooks(Some(&a.id), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].body, "{\"n\":1}");
    assert_eq!(listed[0].state, CallbackState::Pending);
    s.enqueue_webhooks(&[NewWebhook {
        test: true,
        ..note("{\"n\":3}")
    }])
    .await
    .unwrap();

    // Claimed once under a lease; a late finisher of an older attempt changes nothing.
    let claimed = s.claim_webhooks(NOW, NOW + 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        s.claim_webhooks(NOW, NOW + 60, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let (first, test) = (&claimed[0], &claimed[1]);
    assert_eq!(first.attempts, 1);
    assert!(test.test);
    let retry = Attempt::Retry {
        url: Some("https://a.example/hook2".into()),
        error: "the endpoint answered HTTP 500".into(),
        next_at: NOW + 60,
    };
    assert!(
        s.finish_webhook(first.id, 1, &retry, Some(500))
            .await
            .unwrap()
    );
    let gave_up = Attempt::GaveUp {
        at: NOW + 61,
        url: None,
        error: "refused".into(),
    };
    assert!(s.finish_webhook(test.id, 1, &gave_up, None).await.unwrap());
    let again = s.claim_webhooks(NOW + 60, NOW + 120, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].status, Some(500));
    let done = Attempt::Delivered {
        at: NOW + 61,
        url: "https://a.example/hook2".into(),
        confirmation: Confirmation::default(),
    };
    assert!(
        !s.finish_webhook(first.id, 1, &done, Some(200))
            .await
            .unwrap(),
        "stale attempt"
    );
    assert!(
        s.finish_webhook(first.id, 2, &done, Some(200))
            .await
            .unwrap()
    );
    let listed = s.webhooks(Some(&a.id), 10).await.unwrap();
    assert_eq!(listed[0].state, CallbackState::Failed);
    assert_eq!(listed[1].state, CallbackState::Delivered);
    assert_eq!(listed[1].status, Some(200));
    assert_eq!(listed[1].last_error, None);
    assert!(
        !s.retry_webhook(first.id, NOW + 70).await.unwrap(),
        "delivered"
    );
    assert!(s.retry_webhook(test.id, NOW + 70).await.unwrap());
    assert_eq!(
        s.claim_webhooks(NOW + 70, NOW + 130, 10).await.unwrap()[0].attempts,
        1
    );

    // Finished deliveries go at the callbacks' cutoff.
    let p = s
        .purge(
            gramkey_domain::retention::Cutoffs {
                codes_before: 0,
                tokens_before: 0,
                callbacks_before: NOW + 1000,
                audit_before: 0,
                usage_before: 0,
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        p.webhooks, 1,
        "the delivered one; the requeued one is pending"
    );

    assert!(s.delete_app_subscription(&a.id, OBJECT).await.unwrap());
    assert!(!s.delete_app_subscription(&a.id, OBJECT).await.unwrap());
    assert!(s.webhook_targets(owner.id).await.unwrap().is_empty());
    s.delete_app(&a.id).await.unwrap();
    assert!(s.webhooks(Some(&a.id), 10).await.unwrap().is_empty());
}

/// Test clocks and fault rules (the sandbox tools): the clock moves due deliveries earlier;
/// counted rules are taken once per call, across callers; clearing forgets them.
async fn sandbox_tools(s: Arc<dyn Store>) {
    use gramkey_domain::sandbox::{Fault, FaultSpec};
    use gramkey_store::NewWebhook;
    let a = app("5000000000000001");
    s.create_app(&a).await.unwrap();
    let other = app("5000000000000002");
    s.create_app(&other).await.unwrap();
    let note = |app: &App| NewWebhook {
        app_id: app.id.clone(),
        field: gramkey_domain::webhook::Field::Comments,
        body: "{}".into(),
        test: true,
        created_at: NOW + 7200,
    };
    s.enqueue_webhooks(&[note(&a), note(&other)]).await.unwrap();
    assert!(
        s.claim_webhooks(NOW, NOW + 60, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(s.set_clock(&a.id, 90_000, 90_000).await.unwrap());
    assert_eq!(s.app(&a.id).await.unwrap().unwrap().clock_offset, 90_000);
    assert_eq!(s.app(&other.id).await.unwrap().unwrap().clock_offset, 0);
    let due = s.claim_webhooks(NOW, NOW + 60, 10).await.unwrap();
    assert_eq!(due.len(), 1, "only the advanced app's delivery came due");
    assert_eq!(due[0].app_id, a.id);
    // The janitor's view: an app whose clock runs ahead has its codes and tokens purged by its
    // own cutoffs, and no other app's.
    let token = |app: &App, n: u32| NewToken {
        hash: round_hash(0x5a, n),
        kind: TokenKind::App,
        flavour: Flavour::InstagramLogin,
        app_id: app.id.clone(),
        user_id: None,
        scopes: ScopeSet::default(),
        issued_at: NOW,
        expires_at: NOW + 3600,
    };
    s.create_token(&token(&a, 1)).await.unwrap();
    s.create_token(&token(&other, 2)).await.unwrap();
    assert_eq!(
        s.clocked_apps().await.unwrap(),
        vec![(a.id.clone(), 90_000)]
    );
    let cutoffs = gramkey_domain::retention::Cutoffs {
        codes_before: NOW + 90_000,
        tokens_before: NOW + 90_000,
        callbacks_before: 0,
        audit_before: 0,
        usage_before: 0,
    };
    let purged = s.purge_app(&a.id, cutoffs, 1000).await.unwrap();
    assert_eq!(purged.tokens, 1);
    assert!(s.token(&round_hash(0x5a, 1)).await.unwrap().is_none());
    assert!(
        s.token(&round_hash(0x5a, 2)).await.unwrap().is_some(),
        "not another app's"
    );

    assert!(s.set_clock(&a.id, 0, 0).await.unwrap());
    assert_eq!(s.app(&a.id).await.unwrap().unwrap().clock_offset, 0);
    assert!(s.clocked_apps().await.unwrap().is_empty());
    assert!(
        !s.set_clock(&AppId::parse("5000000000000099").unwrap(), 5, 5)
            .await
            .unwrap()
    );

    let params = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        FaultSpec::from_params(&pairs).unwrap()
    };
    assert!(s.faults(&a.id).await.unwrap().is_empty());
    let counted = s
        .add_fault(
            &a.id,
            &params(&[("fault", "app_rate_limit"), ("path", "/me"), ("count", "3")]),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(counted.remaining, Some(3));
    assert_eq!(counted.fault, Fault::AppRateLimit);
    let chance = s
        .add_fault(
            &a.id,
            &params(&[
                ("fault", "latency"),
                ("ms", "50"),
                ("method", "GET"),
                ("probability", "0.25"),
                ("expires_in", "60"),
            ]),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(chance.probability, Some(0.25));
    assert_eq!((chance.ms, chance.expires_at), (50, Some(NOW + 60)));
    assert_eq!(chance.method.as_deref(), Some("GET"));
    assert_eq!(s.app(&a.id).await.unwrap().unwrap().fault_rules, 2);
    let listed = s.faults(&a.id).await.unwrap();
    assert_eq!(listed, vec![counted.clone(), chance]);

    // Five callers race for three calls.
    let mut takers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let s = s.clone();
        let id = counted.id;
        takers.spawn(async move { s.take_fault(id).await.unwrap() });
    }
    let mut taken = 0;
    while let Some(t) = takers.join_next().await {
        taken += usize::from(t.unwrap());
    }
    assert_eq!(taken, 3);
    assert_eq!(s.faults(&a.id).await.unwrap()[0].remaining, Some(0));
    assert!(s.faults(&other.id).await.unwrap().is_empty());

    assert_eq!(s.clear_faults(&a.id).await.unwrap(), 2);
    assert!(s.faults(&a.id).await.unwrap().is_empty());
    assert_eq!(s.app(&a.id).await.unwrap().unwrap().fault_rules, 0);
    s.delete_app(&a.id).await.unwrap();
    s.delete_app(&other.id).await.unwrap();
}

async fn suite(s: Arc<dyn Store>) {
    apps_and_roles(&*s).await;
    users_and_media(&*s).await;
    grants_codes_tokens(&*s).await;
    concurrent_redemption_has_one_winner(s.clone()).await;
    concurrent_redemptions(s.clone()).await;
    concurrent_derivations(s.clone()).await;
    deleting_an_app_removes_its_tokens(&*s).await;
    derived_tokens(&*s).await;
    callback_outbox(s.clone()).await;
    webhooks(&*s).await;
    sandbox_tools(s.clone()).await;
    content(s.clone()).await;
    monitoring(s.clone()).await;
    concurrent_appends(s.clone()).await;
    access(&*s).await;
}

/// Tokens and audit events appended at once (PostgreSQL inserts them in batches): each caller
/// gets its own row's id, and a row that cannot be inserted fails its own caller only.
async fn concurrent_appends(s: Arc<dyn Store>) {
    let a = app("4000000000000009");
    s.create_app(&a).await.unwrap();
    let token = |n: u32| NewToken {
        hash: round_hash(0xa7, n),
        kind: TokenKind::App,
        flavour: Flavour::InstagramLogin,
        app_id: a.id.clone(),
        user_id: None,
        scopes: ScopeSet::default(),
        issued_at: NOW + i64::from(n),
        expires_at: NOW + 3600,
    };
    let taken = s.create_token(&token(0)).await.unwrap();
    // All spawned before any is awaited: they run at once.
    let issuances: Vec<_> = (0..200u32)
        .map(|n| {
            let (s, t) = (s.clone(), token(n));
            tokio::spawn(async move { (n, s.create_token(&t).await) })
        })
        .collect();
    let events: Vec<_> = (0..200u32)
        .map(|n| {
            let s = s.clone();
            let event = NewAuditEvent {
                at: NOW,
                kind: AuditKind::TokenIssued,
                outcome: Outcome::Success,
                app_id: Some(a.id.clone()),
                user_id: None,
                token_id: Some(i64::from(n)),
                ip: None,
                user_agent: None,
                detail: Some(format!("append {n}")),
            };
            tokio::spawn(async move { (n, s.append_audit(&event).await) })
        })
        .collect();
    for done in issuances {
        let (n, issued) = done.await.unwrap();
        if n == 0 {
            // Its hash is taken: refused, alone.
            assert!(
                matches!(issued, Err(StoreError::Conflict(_))),
                "a duplicate hash: {issued:?}"
            );
            continue;
        }
        let issued = issued.unwrap();
        let stored = s.token(&round_hash(0xa7, n)).await.unwrap().unwrap();
        assert_eq!(
            (issued.id, stored.issued_at),
            (stored.id, NOW + i64::from(n))
        );
        assert_ne!(issued.id, taken.id);
    }
    let mut appended = Vec::new();
    for done in events {
        appended.push(done.await.unwrap());
    }
    let log = s
        .audit(&AuditQuery {
            app: Some(a.id.clone()),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 200);
    for (n, id) in appended {
        let id = id.unwrap();
        let stored = log.iter().find(|e| e.id == id).unwrap();
        assert_eq!(
            stored.event.detail.as_deref(),
            Some(format!("append {n}").as_str())
        );
        assert_eq!(stored.event.token_id, Some(i64::from(n)));
    }
}

/// Invitations, a person's apps (granted and removed) and data-deletion requests.
async fn access(s: &dyn Store) {
    let a = app("5000000000000001");
    s.create_app(&a).await.unwrap();
    let b = App {
        data_deletion_url: Some("https://b.example/delete".into()),
        ..app("5000000000000002")
    };
    s.create_app(&b).await.unwrap();
    let u = s.create_user(&new_user("petra"), NOW).await.unwrap().id;
    let v = s.create_user(&new_user("quinn"), NOW).await.unwrap().id;

    // Invitations: pending until answered; accepting gives the role, declining does not.
    s.invite(&a.id, u, Role::Tester, Some(v), NOW)
        .await
        .unwrap();
    s.invite(&a.id, v, Role::Developer, None, NOW + 1)
        .await
        .unwrap();
    s.invite(&b.id, u, Role::Tester, None, NOW + 2)
        .await
        .unwrap();
    let of_a = s.invitations(InvitationsOf::App(&a.id)).await.unwrap();
    assert_eq!(
        of_a.iter()
            .map(|i| (i.username.as_str(), i.role, i.state))
            .collect::<Vec<_>>(),
        vec![
            ("quinn", Role::Developer, InvitationState::Pending),
            ("petra", Role::Tester, InvitationState::Pending),
        ],
        "newest first, with usernames"
    );
    assert_eq!(of_a[1].invited_by.as_deref(), Some("quinn"), "who sent it");
    assert_eq!(of_a[0].invited_by, None);
    let of_u = s.invitations(InvitationsOf::User(u)).await.unwrap();
    assert_eq!(of_u.len(), 2);
    assert_eq!(of_u[0].app_name, b.name);
    assert_eq!(
        s.role(&a.id, u).await.unwrap(),
        None,
        "not before accepting"
    );
    assert!(s.answer_invitation(&a.id, u, true, NOW + 5).await.unwrap());
    assert!(
        !s.answer_invitation(&a.id, u, false, NOW + 6).await.unwrap(),
        "answered already"
    );
    assert_eq!(s.role(&a.id, u).await.unwrap(), Some(Role::Tester));
    assert!(s.answer_invitation(&a.id, v, false, NOW + 5).await.unwrap());
    assert_eq!(s.role(&a.id, v).await.unwrap(), None);
    let answered = s.invitations(InvitationsOf::App(&a.id)).await.unwrap();
    assert_eq!(
        answered
            .iter()
            .map(|i| (i.state, i.answered_at))
            .collect::<Vec<_>>(),
        vec![
            (InvitationState::Declined, Some(NOW + 5)),
            (InvitationState::Accepted, Some(NOW + 5)),
        ]
    );
    // Inviting again makes a fresh pending invitation.
    s.invite(&a.id, v, Role::Tester, Some(u), NOW + 7)
        .await
        .unwrap();
    let again = s.invitations(InvitationsOf::User(v)).await.unwrap();
    assert_eq!(
        (again[0].role, again[0].state, again[0].answered_at),
        (Role::Tester, InvitationState::Pending, None)
    );
    assert_eq!(
        again[0].invited_by.as_deref(),
        Some("petra"),
        "the new inviter"
    );
    assert!(
        !s.answer_invitation(&b.id, v, true, NOW).await.unwrap(),
        "never invited"
    );
    // Off the team: a role and an invitation go; an admin's role stays.
    assert!(
        s.remove_member(&a.id, v).await.unwrap(),
        "a pending invitation"
    );
    assert!(
        s.invitations(InvitationsOf::User(v))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.remove_member(&a.id, u).await.unwrap(),
        "an accepted tester"
    );
    assert_eq!(s.role(&a.id, u).await.unwrap(), None);
    assert!(!s.remove_member(&a.id, u).await.unwrap(), "nothing left");
    s.set_role(&a.id, v, Role::Admin, NOW).await.unwrap();
    assert!(!s.remove_member(&a.id, v).await.unwrap());
    assert_eq!(s.role(&a.id, v).await.unwrap(), Some(Role::Admin));
    // An invitation accepted after becoming admin does not demote.
    s.invite(&a.id, v, Role::Tester, None, NOW).await.unwrap();
    assert!(s.answer_invitation(&a.id, v, true, NOW).await.unwrap());
    assert_eq!(s.role(&a.id, v).await.unwrap(), Some(Role::Admin));

    // Grants, with the latest expiry of their live tokens.
    let scoped_a = ScopedUserId::parse("17841400000000501").unwrap();
    let scoped_b = ScopedUserId::parse("17841400000000502").unwrap();
    s.save_grant(&a.id, u, &a.scopes, &scoped_a, NOW)
        .await
        .unwrap();
    s.save_grant(&b.id, u, &b.scopes, &scoped_b, NOW + 10)
        .await
        .unwrap();
    let mut t = token_for(&code(201, &a, u, &scoped_a), hash(201));
    t.expires_at = NOW + 500;
    s.create_token(&t).await.unwrap();
    let mut later = token_for(&code(202, &a, u, &scoped_a), hash(202));
    later.expires_at = NOW + 900;
    s.create_token(&later).await.unwrap();
    s.revoke_tokens(Revoke::Token(hash(202)), RevokeReason::Revoked, NOW)
        .await
        .unwrap();
    let grants = s.user_grants(u).await.unwrap();
    assert_eq!(
        grants
            .iter()
            .map(|g| (g.app_id.clone(), g.latest_expiry, g.accepts_data_deletion))
            .collect::<Vec<_>>(),
        vec![
            (b.id.clone(), None, true),
            (a.id.clone(), Some(NOW + 500), false),
        ],
        "newest grant first; a revoked token does not count"
    );
    assert_eq!(grants[1].granted_at, NOW);
    assert_eq!(grants[1].scopes, a.scopes);
    assert!(s.user_grants(v).await.unwrap().is_empty());

    // Removing remembers the removal; granting again forgets it from the Removed list.
    assert!(s.removed_grants(u).await.unwrap().is_empty());
    s.remove_grant(&b.id, u, RevokeReason::AppRemoved, NOW + 20, &[])
        .await
        .unwrap();
    let removed = s.removed_grants(u).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(
        (
            removed[0].app_id.clone(),
            removed[0].removed_at,
            removed[0].granted_at
        ),
        (b.id.clone(), Some(NOW + 20), NOW + 10)
    );
    assert_eq!(
        removed[0].deletion_requested_at, None,
        "removed without asking"
    );
    assert_eq!(s.user_grants(u).await.unwrap().len(), 1);

    // Data deletion: for a removed app and a granted one, naming the app-scoped id; not for
    // an app never authorized.
    assert!(s.request_data_deletion(&b.id, u, NOW + 30).await.unwrap());
    assert!(s.request_data_deletion(&a.id, u, NOW + 31).await.unwrap());
    assert!(!s.request_data_deletion(&a.id, v, NOW + 31).await.unwrap());
    assert_eq!(
        s.removed_grants(u).await.unwrap()[0].deletion_requested_at,
        Some(NOW + 30),
        "the removal remembers the request"
    );
    let queued = s.callbacks(Some(&b.id), 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].kind, queued[0].scoped_id.clone()),
        (CallbackKind::DataDeletion, scoped_b.clone())
    );
    assert_eq!(
        s.callbacks(Some(&a.id), 10).await.unwrap()[0].scoped_id,
        scoped_a
    );

    s.save_grant(&b.id, u, &b.scopes, &scoped_b, NOW + 40)
        .await
        .unwrap();
    assert!(s.removed_grants(u).await.unwrap().is_empty());

    // Removals are purged with the tokens' cutoff.
    s.remove_grant(&b.id, u, RevokeReason::AppRemoved, NOW + 50, &[])
        .await
        .unwrap();
    let cutoffs = gramkey_domain::retention::Cutoffs {
        codes_before: 0,
        tokens_before: NOW + 51,
        callbacks_before: 0,
        audit_before: 0,
        usage_before: 0,
    };
    let purged = s.purge(cutoffs, 100).await.unwrap();
    assert_eq!(purged.removals, 1);
    assert!(s.removed_grants(u).await.unwrap().is_empty());
}

/// Ids as a client would send them.
fn mid(id: &str) -> MediaId {
    MediaId::parse(id).unwrap()
}
fn cid(id: &str) -> CommentId {
    CommentId::parse(id).unwrap()
}
fn kid(id: &str) -> ContainerId {
    ContainerId::parse(id).unwrap()
}

fn media(id: u32, user: UserId, at: i64, parent: Option<&MediaId>) -> Media {
    Media {
        id: mid(&format!(
            "{}{id:05}",
            if parent.is_some() {
                "179300000000"
            } else {
                "179200000000"
            }
        )),
        user_id: user,
        media_type: if parent.is_some() {
            MediaType::Image
        } else {
            MediaType::CarouselAlbum
        },
        caption: format!("post {id}"),
        media_url: "https://m/1.jpg".into(),
        permalink: "https://p/1".into(),
        thumbnail_url: None,
        created_at: at,
        like_count: 0,
        comments_count: 0,
        parent_id: parent.cloned(),
        position: i64::from(id),
    }
}

fn container(id: &str, app: &App, user: UserId, item: bool, status: ContainerStatus) -> Container {
    Container {
        id: kid(id),
        app_id: app.id.clone(),
        user_id: user,
        kind: ContainerKind::Image,
        source_url: Some("https://m/1.jpg".into()),
        source_is_video: false,
        caption: "c".into(),
        is_carousel_item: item,
        children: if item {
            vec![]
        } else {
            vec![kid("1"), kid("2")]
        },
        status,
        status_reason: None,
        created_at: NOW,
        published_at: None,
        media_id: None,
    }
}

/// Media pages, albums, comments with their count, containers and atomic publishing.
async fn content(s: Arc<dyn Store>) {
    let u = s.create_user(&new_user("paula"), NOW).await.unwrap();
    // 30 media, several in the same second, so the id breaks ties.
    for i in 0..30u32 {
        s.add_media(&media(i, u.id, NOW + i64::from(i / 3), None))
            .await
            .unwrap();
    }
    let album = media(5, u.id, NOW, None).id;
    for i in 0..3 {
        s.add_media(&media(i, u.id, NOW, Some(&album)))
            .await
            .unwrap();
    }
    assert_eq!(s.media_count(u.id).await.unwrap(), 30);
    let kids = s.children(&album).await.unwrap();
    assert_eq!(
        kids.iter().map(|m| m.position).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        s.media(&kids[1].id).await.unwrap().unwrap().parent_id,
        Some(album.clone())
    );

    // Forward: every media once, newest first; backward from the end: the same, reversed.
    let mut seen: Vec<Media> = Vec::new();
    let mut req = PageRequest::first(7);
    loop {
        let page = Page::cut(s.media_page(u.id, &req).await.unwrap(), &req);
        seen.extend(page.items.iter().cloned());
        if !page.has_next {
            break;
        }
        req.after = Some(page.items.last().unwrap().place());
    }
    assert_eq!(seen.len(), 30);
    let keys: Vec<(i64, MediaId)> = seen.iter().map(|m| (m.created_at, m.id.clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(keys, sorted);
    let mut back: Vec<Media> = Vec::new();
    let mut req = PageRequest {
        before: Some(seen.last().unwrap().place()),
        ..PageRequest::first(4)
    };
    loop {
        let page = Page::cut(s.media_page(u.id, &req).await.unwrap(), &req);
        back.splice(0..0, page.items.iter().cloned());
        if !page.has_previous {
            break;
        }
        req.before = Some(page.items.first().unwrap().place());
    }
    assert_eq!(back, seen[..29].to_vec());
    let window = PageRequest {
        since: Some(NOW + 2),
        until: Some(NOW + 3),
        ..PageRequest::first(100)
    };
    assert_eq!(s.media_page(u.id, &window).await.unwrap().len(), 6);

    // Comments and replies keep comments_count; deleting a comment takes its replies.
    let m = &seen[0].id;
    let comment = |id: &str, parent: Option<&str>, at: i64| NewComment {
        id: cid(id),
        media_id: m.clone(),
        user_id: u.id,
        parent_id: parent.map(cid),
        text: format!("comment {id}"),
        created_at: at,
        notifications: Vec::new(),
    };
    assert!(
        s.add_comment(&comment("18000000000000001", None, NOW))
            .await
            .unwrap()
    );
    assert!(
        s.add_comment(&comment("18000000000000002", None, NOW + 1))
            .await
            .unwrap()
    );
    assert!(
        s.add_comment(&comment(
            "18000000000000003",
            Some("18000000000000001"),
            NOW + 2
        ))
        .await
        .unwrap()
    );
    assert!(
        !s.add_comment(&comment(
            "18000000000000004",
            Some("18099999999999999"),
            NOW
        ))
        .await
        .unwrap()
    );
    let orphan = NewComment {
        media_id: mid("17999999999999999"),
        ..comment("18000000000000005", None, NOW)
    };
    assert!(!s.add_comment(&orphan).await.unwrap());
    assert_eq!(s.media(m).await.unwrap().unwrap().comments_count, 3);
    let top = s
        .comments_page(CommentsOf::Media(m), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        top.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec!["18000000000000002", "18000000000000001"]
    );
    assert_eq!(top[0].username, "paula");
    let replies = s
        .comments_page(
            CommentsOf::Replies(&cid("18000000000000001")),
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        s.comment(&cid("18000000000000003"))
            .await
            .unwrap()
            .unwrap()
            .parent_id,
        Some(cid("18000000000000001"))
    );
    assert_eq!(
        s.delete_comment(&cid("18000000000000001")).await.unwrap(),
        2
    );
    assert_eq!(
        s.delete_comment(&cid("18000000000000001")).await.unwrap(),
        0
    );
    assert_eq!(s.media(m).await.unwrap().unwrap().comments_count, 1);
    assert_eq!(s.comment(&cid("18000000000000003")).await.unwrap(), None);

    // Containers: processing ends once; publishing is atomic, once, and capped.
    let a = app("3000000000000001");
    s.create_app(&a).await.unwrap();
    s.create_container(&container(
        "17920000000000001",
        &a,
        u.id,
        false,
        ContainerStatus::InProgress,
    ))
    .await
    .unwrap();
    assert!(
        s.finish_container(&kid("17920000000000001"), Ok(()))
            .await
            .unwrap()
    );
    assert!(
        !s.finish_container(&kid("17920000000000001"), Err("late".into()))
            .await
            .unwrap()
    );
    let got = s
        .container(&kid("17920000000000001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        container(
            "17920000000000001",
            &a,
            u.id,
            false,
            ContainerStatus::Finished
        )
    );
    s.create_container(&container(
        "17920000000000002",
        &a,
        u.id,
        true,
        ContainerStatus::InProgress,
    ))
    .await
    .unwrap();
    assert!(
        s.finish_container(&kid("17920000000000002"), Err("404 at the URL".into()))
            .await
            .unwrap()
    );
    let failed = s
        .container(&kid("17920000000000002"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status, failed.status_reason.as_deref()),
        (ContainerStatus::Error, Some("404 at the URL"))
    );

    let publication = |n: u32| Publication {
        container_id: kid("17920000000000001"),
        user_id: u.id,
        media: vec![media(100 + n, u.id, NOW + 100, None)],
        now: NOW + 100,
        quota_since: NOW + 100 - 86_400,
        quota_total: 1,
        notifications: Vec::new(),
    };
    let racers: Vec<_> = (0..4)
        .map(|n| {
            let s = s.clone();
            let p = publication(n);
            tokio::spawn(async move { s.publish(&p).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PublishOutcome::Published)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(s.media_count(u.id).await.unwrap(), 31);
    assert_eq!(s.publish_count(u.id, NOW).await.unwrap(), 1);
    let published = s
        .container(&kid("17920000000000001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(published.status, ContainerStatus::Published);
    assert_eq!(published.published_at, Some(NOW + 100));
    // At the cap (1 here), a second finished container is refused.
    s.create_container(&container(
        "17920000000000003",
        &a,
        u.id,
        false,
        ContainerStatus::Finished,
    ))
    .await
    .unwrap();
    let over = Publication {
        container_id: kid("17920000000000003"),
        ..publication(9)
    };
    assert_eq!(s.publish(&over).await.unwrap(), PublishOutcome::OverQuota);
    let later = Publication {
        quota_since: NOW + 101,
        now: NOW + 90_000,
        ..over
    };
    assert_eq!(s.publish(&later).await.unwrap(), PublishOutcome::Published);
}

/// The audit log, hourly usage, token networks, the gauges, and their retention. Runs in the
/// shared suite, so the global gauges are checked by how much they move.
async fn monitoring(s: Arc<dyn Store>) {
    let (a, b) = (app("4000000000000001"), app("4000000000000002"));
    s.create_app(&a).await.unwrap();
    s.create_app(&b).await.unwrap();
    let u = s.create_user(&new_user("mona"), NOW).await.unwrap().id;
    let v = s.create_user(&new_user("nils"), NOW).await.unwrap().id;
    let w = s.create_user(&new_user("olga"), NOW).await.unwrap().id;

    // Audit: appended in order, read newest first, each filter alone and together, paged.
    let event = |at, kind, app: Option<&App>, user: Option<UserId>| NewAuditEvent {
        at,
        kind,
        outcome: Outcome::Success,
        app_id: app.map(|a| a.id.clone()),
        user_id: user,
        token_id: None,
        ip: Some("203.0.113.7".into()),
        user_agent: Some("curl/8.5".into()),
        detail: None,
    };
    let events = [
        event(NOW, AuditKind::AppCreated, Some(&a), None),
        NewAuditEvent {
            outcome: Outcome::Failure,
            detail: Some("wrong password".into()),
            ip: None,
            user_agent: None,
            ..event(NOW + 1, AuditKind::LoginFailed, None, Some(u))
        },
        NewAuditEvent {
            token_id: Some(42),
            ..event(NOW + 2, AuditKind::TokenIssued, Some(&a), Some(u))
        },
        event(NOW + 3, AuditKind::TokenIssued, Some(&b), Some(v)),
        NewAuditEvent {
            outcome: Outcome::Refused,
            detail: Some("app_removed: 2".into()),
            ..event(NOW + 4, AuditKind::TokenRevoked, Some(&a), Some(u))
        },
    ];
    let mut ids = Vec::new();
    for e in &events {
        ids.push(s.append_audit(e).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Which of `events` a query returned, by index.
    let read = |q: AuditQuery| {
        let s = s.clone();
        let ids = ids.clone();
        async move {
            s.audit(&q)
                .await
                .unwrap()
                .iter()
                .map(|e| ids.iter().position(|&id| id == e.id).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let all = s.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 5, "a limit of 0 reads the default page");
    assert_eq!(
        all.last().unwrap(),
        &AuditEvent {
            id: ids[0],
            event: events[0].clone()
        }
    );
    assert_eq!(all[3].event, events[1], "every field round-trips");
    assert_eq!(all[0].event, events[4]);
    let q = AuditQuery::default;
    assert_eq!(read(q()).await, vec![4, 3, 2, 1, 0], "newest first");
    let by_app = AuditQuery {
        app: Some(a.id.clone()),
        ..q()
    };
    assert_eq!(read(by_app.clone()).await, vec![4, 2, 0]);
    let by_user = AuditQuery {
        user: Some(u),
        ..q()
    };
    assert_eq!(read(by_user).await, vec![4, 2, 1]);
    let by_kind = AuditQuery {
        kind: Some(AuditKind::TokenIssued),
        ..q()
    };
    assert_eq!(read(by_kind).await, vec![3, 2]);
    let since = AuditQuery {
        since: Some(NOW + 3),
        ..q()
    };
    assert_eq!(read(since).await, vec![4, 3]);
    let together = AuditQuery {
        kind: Some(AuditKind::TokenIssued),
        since: Some(NOW + 1),
        ..by_app.clone()
    };
    assert_eq!(read(together).await, vec![2]);
    let nobody = AuditQuery {
        user: Some(w),
        ..q()
    };
    assert_eq!(read(nobody).await, Vec::<usize>::new());
    // Paging: two at a time, each page before the last one's oldest.
    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let page = s
            .audit(&AuditQuery {
                before_id,
                limit: 2,
                ..q()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before_id = Some(last.id);
        pages.push(page.iter().map(|e| e.id).collect::<Vec<_>>());
    }
    assert_eq!(
        pages,
        vec![vec![ids[4], ids[3]], vec![ids[2], ids[1]], vec![ids[0]]]
    );
    let app_page = AuditQuery {
        before_id: Some(ids[4]),
        limit: 1,
        ..by_app
    };
    assert_eq!(read(app_page).await, vec![2]);

    // Usage: flushes add up; peaks keep the maximum; users are a set; errors add by code.
    let h = NOW - NOW % 3600;
    let delta = |app: &App, hour, calls, peak_call_pct| UsageDelta {
        app_id: Some(app.id.clone()),
        hour,
        calls,
        peak_call_pct,
        ..UsageDelta::default()
    };
    s.record_usage(&[
        UsageDelta {
            throttled: 1,
            errors: vec![(190, 1), (4, 2)],
            users: vec![u, v, u],
            ..delta(&a, h, 10, 20)
        },
        UsageDelta {
            app_id: None,
            users: vec![w],
            ..delta(&a, h, 99, 99)
        },
        UsageDelta {
            users: vec![u],
            ..delta(&b, h, 5, 1)
        },
    ])
    .await
    .unwrap();
    s.record_usage(&[
        UsageDelta {
            errors: vec![(4, 1), (17, 3)],
            users: vec![u],
            ..delta(&a, h, 5, 15)
        },
        UsageDelta {
            users: vec![u],
            ..delta(&a, h + 3600, 1, 50)
        },
        UsageDelta {
            users: vec![w],
            errors: vec![(4, 1)],
            ..delta(&a, h + 7200, 2, 0)
        },
    ])
    .await
    .unwrap();
    s.record_usage(&[]).await.unwrap();
    let first = UsageHour {
        hour: h,
        calls: 15,
        throttled: 1,
        peak_call_pct: 20,
        distinct_users: 2,
        errors: vec![(4, 3), (17, 3), (190, 1)],
    };
    let second = UsageHour {
        hour: h + 3600,
        calls: 1,
        throttled: 0,
        peak_call_pct: 50,
        distinct_users: 1,
        errors: vec![],
    };
    let third = UsageHour {
        hour: h + 7200,
        calls: 2,
        throttled: 0,
        peak_call_pct: 0,
        distinct_users: 1,
        errors: vec![(4, 1)],
    };
    assert_eq!(
        s.usage(&a.id, h, h + 7200).await.unwrap(),
        vec![first.clone(), second.clone()],
        "until is excluded"
    );
    assert_eq!(
        s.usage(&a.id, h + 1, h + 10_800).await.unwrap(),
        vec![second.clone(), third.clone()],
        "since is included, and an hour starting before it is not"
    );
    assert_eq!(s.usage(&a.id, h - 3600, h + 10_800).await.unwrap().len(), 3);
    assert!(
        s.usage(&a.id, h + 10_800, h + 20_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.usage(&b.id, h, h + 3600).await.unwrap(),
        vec![UsageHour {
            hour: h,
            calls: 5,
            throttled: 0,
            peak_call_pct: 1,
            distinct_users: 1,
            errors: vec![],
        }],
        "a delta without an app counts nowhere"
    );
    assert_eq!(s.distinct_users(&a.id, h, h + 10_800).await.unwrap(), 3);
    assert_eq!(s.distinct_users(&a.id, h, h + 7200).await.unwrap(), 2);
    assert_eq!(
        s.distinct_users(&a.id, h + 3600, h + 10_800).await.unwrap(),
        2
    );
    assert_eq!(s.distinct_users(&b.id, h, h + 10_800).await.unwrap(), 1);
    assert_eq!(s.distinct_users(&b.id, h + 1, h + 10_800).await.unwrap(), 0);

    // Gauges before this check's tokens, grants and callbacks.
    let active = |now| {
        let s = s.clone();
        async move {
            let kinds = s.active_tokens(now).await.unwrap();
            assert!(kinds.iter().all(|&(_, n)| n > 0), "{kinds:?}");
            let of = |k| kinds.iter().find(|(x, _)| *x == k).map_or(0, |(_, n)| *n);
            [
                TokenKind::ShortLived,
                TokenKind::LongLived,
                TokenKind::App,
                TokenKind::Refresh,
            ]
            .map(of)
        }
    };
    let active_before = active(NOW).await;
    let pending_before = s.pending_callbacks().await.unwrap();

    // Token networks: first use from each network is new; the count is of the others.
    let token = |n: u8, kind, user: Option<UserId>, expires_at| NewToken {
        hash: hash(n),
        kind,
        flavour: Flavour::BasicDisplay,
        app_id: a.id.clone(),
        user_id: user,
        scopes: a.scopes.clone(),
        issued_at: NOW,
        expires_at,
    };
    let t = s
        .create_token(&token(120, TokenKind::App, None, NOW + 3600))
        .await
        .unwrap()
        .id;
    let seen = |new, known_before| NetworkSeen { new, known_before };
    let net_a = "203.0.113.0/24";
    let net_b = "2001:db8:1::/48";
    assert_eq!(s.note_network(t, net_a, NOW).await.unwrap(), seen(true, 0));
    assert_eq!(s.note_network(t, net_b, NOW).await.unwrap(), seen(true, 1));
    assert_eq!(s.note_network(t, net_a, NOW).await.unwrap(), seen(false, 1));
    assert_eq!(s.note_network(t, net_b, NOW).await.unwrap(), seen(false, 1));
    assert_eq!(
        s.note_network(t, "198.51.100.0/24", NOW).await.unwrap(),
        seen(true, 2)
    );
    let t2 = s
        .create_token(&token(121, TokenKind::ShortLived, Some(u), NOW + 3600))
        .await
        .unwrap()
        .id;
    assert_eq!(
        s.note_network(t2, net_a, NOW).await.unwrap(),
        seen(true, 0),
        "networks are per token"
    );
    assert_eq!(
        s.note_network(-1, net_a, NOW).await.unwrap(),
        seen(false, 0),
        "an unknown token records nothing"
    );
    // Racing first uses from one network: exactly one is new.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.note_network(t2, net_b, NOW).await.unwrap() })
        })
        .collect();
    let mut news = 0;
    for r in racers {
        let seen = r.await.unwrap();
        assert_eq!(seen.known_before, 1);
        news += usize::from(seen.new);
    }
    assert_eq!(news, 1, "exactly one racer sees the network as new");

    // Active tokens: neither revoked nor expired (an expiry at `now` has expired).
    s.create_token(&token(122, TokenKind::LongLived, Some(u), NOW + 100))
        .await
        .unwrap();
    s.create_token(&token(123, TokenKind::LongLived, Some(u), NOW + 3600))
        .await
        .unwrap();
    s.create_token(&token(124, TokenKind::ShortLived, Some(v), NOW))
        .await
        .unwrap();
    s.create_token(&token(125, TokenKind::Refresh, Some(v), NOW - 1))
        .await
        .unwrap();
    assert_eq!(
        s.revoke_tokens(Revoke::Token(hash(123)), RevokeReason::Revoked, NOW)
            .await
            .unwrap(),
        1
    );
    let active_after = active(NOW).await;
    let moved: Vec<u64> = (0..4).map(|i| active_after[i] - active_before[i]).collect();
    assert_eq!(moved, vec![1, 1, 1, 0], "short, long, app, refresh");
    let later = active(NOW + 200).await;
    assert!(later[1] < active_after[1], "the long-lived one expired");

    // Authorized users: grants on the app; pending callbacks: queued by removals.
    assert_eq!(s.authorized_users(&a.id).await.unwrap(), 0);
    for (user, scoped) in [(u, "17840000000000041"), (v, "17840000000000042")] {
        let scoped = ScopedUserId::parse(scoped).unwrap();
        s.save_grant(&a.id, user, &a.scopes, &scoped, NOW)
            .await
            .unwrap();
    }
    s.save_grant(
        &b.id,
        u,
        &b.scopes,
        &ScopedUserId::parse("17840000000000043").unwrap(),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(s.authorized_users(&a.id).await.unwrap(), 2);
    assert_eq!(s.authorized_users(&b.id).await.unwrap(), 1);
    let both = [CallbackKind::Deauthorize, CallbackKind::DataDeletion];
    s.remove_grant(&a.id, v, RevokeReason::AppRemoved, NOW, &both)
        .await
        .unwrap();
    assert_eq!(s.authorized_users(&a.id).await.unwrap(), 1);
    assert_eq!(s.pending_callbacks().await.unwrap(), pending_before + 2);
    let claimed = s
        .claim_callbacks(NOW + 1_000_000, NOW + 1_000_060, 100)
        .await
        .unwrap();
    for c in claimed.iter().filter(|c| c.app_id == a.id) {
        let done = Attempt::Delivered {
            at: NOW,
            url: "https://a.example/deauth".into(),
            confirmation: Confirmation::default(),
        };
        assert!(s.finish_attempt(c.id, c.attempts, &done).await.unwrap());
    }
    assert_eq!(
        s.pending_callbacks().await.unwrap(),
        pending_before,
        "delivered ones are no longer pending"
    );

    // Retention: old events and hours go, a batch at a time; newer ones stay. A purged token's
    // networks go with it.
    let old = s
        .create_token(&token(126, TokenKind::ShortLived, Some(u), NOW - 1000))
        .await
        .unwrap()
        .id;
    assert_eq!(
        s.note_network(old, net_a, NOW).await.unwrap(),
        seen(true, 0)
    );
    let cutoffs = |tokens_before| gramkey_domain::retention::Cutoffs {
        codes_before: 0,
        tokens_before,
        callbacks_before: 0,
        audit_before: NOW + 2,
        usage_before: h + 3600,
    };
    let p = s.purge(cutoffs(0), 1).await.unwrap();
    assert_eq!(
        (p.codes, p.tokens, p.callbacks, p.audit, p.usage),
        (0, 0, 0, 1, 1),
        "bounded by the batch"
    );
    // Left past the cutoffs: 1 event; 1 hour (b's), 2 of a's error codes, 2 users.
    let p = s.purge(cutoffs(NOW - 500), 100).await.unwrap();
    assert_eq!((p.tokens, p.audit, p.usage), (1, 1, 2));
    assert!(s.token(&hash(126)).await.unwrap().is_none());
    let p = s.purge(cutoffs(NOW - 500), 100).await.unwrap();
    assert_eq!((p.tokens, p.audit, p.usage), (0, 0, 0), "nothing left");
    assert_eq!(read(q()).await, vec![4, 3, 2]);
    assert_eq!(
        s.usage(&a.id, 0, i64::MAX).await.unwrap(),
        vec![second, third]
    );
    assert!(s.usage(&b.id, 0, i64::MAX).await.unwrap().is_empty());
    assert_eq!(s.distinct_users(&a.id, 0, h + 3600).await.unwrap(), 0);
    assert_eq!(s.distinct_users(&a.id, 0, i64::MAX).await.unwrap(), 2);
    assert_eq!(
        s.note_network(t, net_a, NOW).await.unwrap(),
        seen(false, 2),
        "a live token keeps its networks"
    );

    // Deleting an app keeps its events (they outlive it) and takes its tokens' networks.
    s.delete_app(&a.id).await.unwrap();
    assert_eq!(s.note_network(t, net_a, NOW).await.unwrap(), seen(false, 0));
    assert_eq!(
        read(AuditQuery {
            app: Some(a.id.clone()),
            ..q()
        })
        .await,
        vec![4, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conforms() {
    let (store, _dir) = fresh_sqlite().unwrap();
    suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_sqlite_conforms() {
    let (store, _dir) =
        gramkey_store::test_support::fresh_sqlite_cached(std::time::Duration::from_secs(60))
            .unwrap();
    suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_family_revocation_races() {
    let (store, _dir) = fresh_sqlite().unwrap();
    family_revocation_races_leave_no_survivor(store, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_family_revocation_races() {
    let Some(url) = postgres_url("postgres_family_revocation_races") else {
        return;
    };
    family_revocation_races_leave_no_survivor(fresh_postgres(&url).await.unwrap(), 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conforms() {
    let Some(url) = postgres_url("postgres_conforms") else {
        return;
    };
    suite(fresh_postgres(&url).await.unwrap()).await;
}

/// The janitor's purge, on a store of its own so other checks' rows don't count.
#[tokio::test]
async fn sqlite_purges() {
    let (store, _dir) = fresh_sqlite().unwrap();
    purging(&*store).await;
}

#[tokio::test]
async fn postgres_purges() {
    let Some(url) = postgres_url("postgres_purges") else {
        return;
    };
    purging(&*fresh_postgres(&url).await.unwrap()).await;
}

/// `gramkey serve` and a CLI command started at once on a fresh data directory: every opener
/// succeeds and each migration is applied once.
#[test]
fn sqlite_opens_a_fresh_database_from_many_processes_at_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let start = Arc::new(std::sync::Barrier::new(6));
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    gramkey_store::sqlite::SqliteStore::open(&path).map(drop)
                })
            })
            .collect();
        for o in openers {
            o.join().unwrap().expect("every opener succeeds");
        }
    }
}

#[tokio::test]
async fn sqlite_schema_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = gramkey_store::sqlite::SqliteStore::open(&path).unwrap();
        gramkey_store::UserStore::create_user(&s, &new_user("eve"), NOW)
            .await
            .unwrap();
    }
    let s = gramkey_store::sqlite::SqliteStore::open(&path).unwrap();
    assert!(
        gramkey_store::UserStore::user_by_name(&s, "eve")
            .await
            .unwrap()
            .is_some()
    );
}

/// A long-lived token of `user` for `app`, valid for an hour from [`NOW`].
fn long_lived(app: &App, user: UserId, hash: TokenHash) -> NewToken {
    NewToken {
        hash,
        kind: TokenKind::LongLived,
        flavour: Flavour::BasicDisplay,
        app_id: app.id.clone(),
        user_id: Some(user),
        scopes: app.scopes.clone(),
        issued_at: NOW,
        expires_at: NOW + 3600,
    }
}

/// Polls `seen` every half millisecond until it holds; how long that took, or `None` after 5 s.
/// The caches' TTL is ten minutes, so only a notification (or a flush) makes it hold sooner.
async fn within_5s<F, Fut>(mut seen: F) -> Option<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        if seen().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_micros(500)).await;
    }
    None
}

/// Prints how long `what` took to reach the other nodes: p50, p99 and the longest of the
/// trials. A measurement, not a check: the figures go to BENCHMARKS.md (issue 17 asks for
/// 100 ms at p99).
fn spread(what: &str, mut took: Vec<std::time::Duration>) {
    took.sort();
    eprintln!(
        "{what} seen on every other node: p50 {:?}, p99 {:?}, max {:?} ({} trials)",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1],
        took.len()
    );
}

/// Nodes on one PostgreSQL database keep their caches in step: what one node (or the CLI,
/// which caches nothing) changes, the others stop serving from their caches at once, not after
/// their TTL; and a node that lost its listening connection flushes its cache when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_keep_their_caches_in_step() {
    use std::time::Duration;
    let Some(url) = postgres_url("postgres_nodes_keep_their_caches_in_step") else {
        return;
    };
    let ttl = Duration::from_secs(600);
    let (schema, nodes) =
        gramkey_store::test_support::postgres_nodes(&url, &[ttl, ttl, ttl, Duration::ZERO])
            .await
            .unwrap();
    let (a, b, c, cli) = (&nodes[0], &nodes[1], &nodes[2], &nodes[3]);
    let first = app("4000000001");
    a.create_app(&first).await.unwrap();
    let user = a.create_user(&new_user("nodes"), NOW).await.unwrap();
    let token = |n: u32| long_lived(&first, user.id, round_hash(9, n));
    // As a resource call reads it (`caller`), and as the token endpoints do (`token`).
    let revoked = |s: &Arc<dyn Store>, h: TokenHash| {
        let s = s.clone();
        async move {
            let caller = s.caller(&h).await.unwrap().unwrap();
            let token = s.token(&h).await.unwrap().unwrap();
            caller.token.revoked.is_some() && token.revoked.is_some()
        }
    };
    // The followers start listening in the background; wait until b and c hear a.
    a.create_token(&token(0)).await.unwrap();
    let _ = (
        b.token(&round_hash(9, 0)).await,
        c.token(&round_hash(9, 0)).await,
    );
    a.revoke_tokens(Revoke::Token(round_hash(9, 0)), RevokeReason::Revoked, NOW)
        .await
        .unwrap();
    assert!(within_5s(|| revoked(b, round_hash(9, 0))).await.is_some());
    assert!(within_5s(|| revoked(c, round_hash(9, 0))).await.is_some());

    // Revocations on one node, seen by the two others; from the CLI, seen by all three.
    let mut took = Vec::new();
    for n in 1..=200u32 {
        let h = round_hash(9, n);
        a.create_token(&token(n)).await.unwrap();
        for node in [a, b, c] {
            assert!(!revoked(node, h).await, "cached unrevoked first");
        }
        let (by, others) = if n % 4 == 0 {
            (cli, vec![a, b, c])
        } else {
            (a, vec![b, c])
        };
        let start = std::time::Instant::now();
        by.revoke_tokens(Revoke::Token(h), RevokeReason::Revoked, NOW)
            .await
            .unwrap();
        for node in others {
            assert!(
                within_5s(|| revoked(node, h)).await.is_some(),
                "revocation {n} never reached a node"
            );
        }
        took.push(start.elapsed());
    }
    spread("a revocation", took);

    // A refresh on one node cuts the old token's expiry to its grace, and a second refresh
    // revokes what the first made: both seen by a node that had them cached.
    let parent = round_hash(9, 1000);
    a.create_token(&token(1000)).await.unwrap();
    let refresh = |n: u32| Derivation::Refresh {
        now: NOW + n as i64,
        parent_expires_at: NOW + 10,
    };
    assert_eq!(
        b.token(&parent).await.unwrap().unwrap().expires_at,
        NOW + 3600
    );
    a.derive_tokens(&parent, refresh(1), &[token(1001)])
        .await
        .unwrap()
        .unwrap();
    assert!(
        within_5s(|| async { b.token(&parent).await.unwrap().unwrap().expires_at == NOW + 10 })
            .await
            .is_some(),
        "the refreshed token's expiry, cut to its grace"
    );
    b.token(&round_hash(9, 1001)).await.unwrap();
    a.derive_tokens(&parent, refresh(2), &[token(1002)])
        .await
        .unwrap()
        .unwrap();
    assert!(
        within_5s(|| revoked(b, round_hash(9, 1001)))
            .await
            .is_some(),
        "the successor a second refresh superseded"
    );

    // Password changes, secret rotations and app deletions, each seen by both other nodes,
    // which had the user or the app cached: 200 of each, timed from before the change.
    let mut took = Vec::new();
    for n in 0..200u32 {
        let password = format!("$argon2id$changed-{n}");
        let held = round_hash(9, 1000);
        for node in [b, c] {
            node.user(user.id).await.unwrap();
            node.caller(&held).await.unwrap();
        }
        let start = std::time::Instant::now();
        a.set_password(user.id, &password).await.unwrap();
        for node in [b, c] {
            let seen = within_5s(|| async {
                let caller = node.caller(&held).await.unwrap().unwrap();
                node.user(user.id).await.unwrap().unwrap().password_hash == password
                    && caller.user.is_some_and(|u| u.password_hash == password)
            });
            assert!(
                seen.await.is_some(),
                "password change {n} never reached a node"
            );
        }
        took.push(start.elapsed());
    }
    spread("a password change", took);
    let mut took = Vec::new();
    for n in 0..200u8 {
        b.app(&first.id).await.unwrap();
        c.app(&first.id).await.unwrap();
        let start = std::time::Instant::now();
        a.set_app_secret(&first.id, &[n; 32], &[8; 32], None, NOW)
            .await
            .unwrap();
        for node in [b, c] {
            let seen = within_5s(|| async {
                node.app(&first.id).await.unwrap().unwrap().secret_hash == vec![n; 32]
            });
            assert!(
                seen.await.is_some(),
                "secret rotation {n} never reached a node"
            );
        }
        took.push(start.elapsed());
    }
    spread("a secret rotation", took);
    let mut took = Vec::new();
    for n in 0..200u32 {
        let doomed = app(&format!("{}", 4100000000u64 + u64::from(n)));
        a.create_app(&doomed).await.unwrap();
        b.app(&doomed.id).await.unwrap().unwrap();
        c.app(&doomed.id).await.unwrap().unwrap();
        let by = if n % 4 == 0 { cli } else { a };
        let start = std::time::Instant::now();
        by.delete_app(&doomed.id).await.unwrap();
        for node in [b, c] {
            let seen = within_5s(|| async { node.app(&doomed.id).await.unwrap().is_none() });
            assert!(
                seen.await.is_some(),
                "app deletion {n} never reached a node"
            );
        }
        took.push(start.elapsed());
    }
    spread("an app deletion", took);

    // A change nobody announces (made in SQL) stays cached, until the listening connection
    // is lost: then the node flushes, since it may have missed something.
    let other = app("4000000002");
    a.create_app(&other).await.unwrap();
    assert_eq!(b.app(&other.id).await.unwrap().unwrap().name, other.name);
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let mut sql = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &options.options([("search_path", schema.as_str())]),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE apps SET name = 'renamed in SQL' WHERE id = $1")
        .bind(other.id.as_str())
        .execute(&mut sql)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.app(&other.id).await.unwrap().unwrap().name, other.name);
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE query = 'LISTEN \"gramkey_cache.' || current_schema() || '\"'",
    )
    .execute(&mut sql)
    .await
    .unwrap();
    assert!(
        within_5s(|| async { b.app(&other.id).await.unwrap().unwrap().name == "renamed in SQL" })
            .await
            .is_some(),
        "a node that lost its listening connection flushes its cache"
    );
}

/// An app, a user and a long-lived token of theirs with hash `h`, read once so that `store`
/// caches it (unrevoked); the user.
async fn cached_token(store: &dyn Store, app_id: &str, h: TokenHash) -> gramkey_store::User {
    let owner = app(app_id);
    store.create_app(&owner).await.unwrap();
    let user = store.create_user(&new_user(app_id), NOW).await.unwrap();
    store
        .create_token(&long_lived(&owner, user.id, h))
        .await
        .unwrap();
    assert!(store.token(&h).await.unwrap().unwrap().revoked.is_none());
    user
}

/// A server caching on SQLite notices another process's writes to the file (the CLI's) and
/// drops its cache, rather than serving them stale for its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_caches_notice_other_processes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let server: Arc<dyn Store> = Arc::new(
        gramkey_store::sqlite::SqliteStore::open(&path)
            .unwrap()
            .cached(std::time::Duration::from_secs(600)),
    );
    let cli: Arc<dyn Store> = Arc::new(gramkey_store::sqlite::SqliteStore::open(&path).unwrap());
    let user = cached_token(&*server, "5000000001", hash(5)).await;
    // The server's own writes do not flush: what it cached stays cached.
    server.create_user(&new_user("other"), NOW).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cli.revoke_tokens(Revoke::Token(hash(5)), RevokeReason::Revoked, NOW)
        .await
        .unwrap();
    let seen = within_5s(|| async {
        server
            .token(&hash(5))
            .await
            .unwrap()
            .unwrap()
            .revoked
            .is_some()
    })
    .await;
    eprintln!("a revocation by another process seen after {seen:?}");
    assert!(
        seen.is_some(),
        "the CLI's revocation reaches the caching server"
    );
    cli.set_password(user.id, "$argon2id$new").await.unwrap();
    server.user(user.id).await.unwrap();
    assert!(
        within_5s(|| async {
            server.user(user.id).await.unwrap().unwrap().password_hash == "$argon2id$new"
        })
        .await
        .is_some()
    );
}

/// A revocation whose caller goes away while it waits (a client that disconnects) still
/// commits, and then the caching store drops its copy: it does not go on serving the token as
/// unrevoked, even to a read made while the revocation was waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_went_away_still_clears_the_cache() {
    let (store, dir) =
        gramkey_store::test_support::fresh_sqlite_cached(std::time::Duration::from_secs(600))
            .unwrap();
    cached_token(&*store, "6000000001", hash(6)).await;
    // Another process holds the write lock, so the revocation waits in the writer's queue; its
    // caller gives up, a read caches the token meanwhile, and then the lock is released.
    let other = rusqlite::Connection::open(dir.path().join("gramkey.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let revoke = store.revoke_tokens(Revoke::Token(hash(6)), RevokeReason::Revoked, NOW);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), revoke)
            .await
            .is_err()
    );
    assert!(
        store
            .token(&hash(6))
            .await
            .unwrap()
            .unwrap()
            .revoked
            .is_none()
    );
    other.execute_batch("COMMIT").unwrap();
    assert!(
        within_5s(|| async {
            store
                .token(&hash(6))
                .await
                .unwrap()
                .unwrap()
                .revoked
                .is_some()
        })
        .await
        .is_some(),
        "the revocation committed and the cached copy was dropped"
    );
}
