//! What a person sees of their own access, on the settings pages: the state of each app they
//! authorized (Instagram's Active / Expired / Removed tabs), their invitations to test apps, and
//! who may manage an app on the developer dashboard.

use crate::app::Role;
use crate::code::CODE_LIFETIME_SECS;
use crate::time::UnixTime;

/// Where an app the user authorized stands, as "Apps and Websites" sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessStatus {
    /// The app holds a live token, until `expires` (when the last of its tokens ends; `None`
    /// while the code has just been issued and no token exists yet).
    Active { expires: Option<UnixTime> },
    /// Still granted, but every token the app held has expired or been revoked (`since` then),
    /// or is long gone: the app must send the person through authorization again.
    Expired { since: Option<UnixTime> },
}

impl AccessStatus {
    /// Classifies a grant from `granted_at` and the latest expiry of its unrevoked tokens.
    /// A grant without any token is Active for as long as its code could still be redeemed.
    pub fn of(now: UnixTime, granted_at: UnixTime, latest_expiry: Option<UnixTime>) -> Self {
        match latest_expiry {
            Some(at) if at > now => AccessStatus::Active { expires: Some(at) },
            Some(at) => AccessStatus::Expired { since: Some(at) },
            None if granted_at + CODE_LIFETIME_SECS > now => AccessStatus::Active { expires: None },
            None => AccessStatus::Expired { since: None },
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, AccessStatus::Active { .. })
    }
}

/// The tabs of "Apps and Websites".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTab {
    Active,
    Expired,
    Removed,
}

impl AccessTab {
    pub const ALL: [AccessTab; 3] = [AccessTab::Active, AccessTab::Expired, AccessTab::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessTab::Active => "active",
            AccessTab::Expired => "expired",
            AccessTab::Removed => "removed",
        }
    }

    /// An unknown or missing tab is the first one, as a page link without `?tab=` expects.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("expired") => AccessTab::Expired,
            Some("removed") => AccessTab::Removed,
            _ => AccessTab::Active,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            AccessTab::Active => "Active",
            AccessTab::Expired => "Expired",
            AccessTab::Removed => "Removed",
        }
    }
}

/// An invitation to take a role on an app. The role is held only once it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Accepted,
    Declined,
}

impl InvitationState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "pending",
            InvitationState::Accepted => "accepted",
            InvitationState::Declined => "declined",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(InvitationState::Pending),
            "accepted" => Some(InvitationState::Accepted),
            "declined" => Some(InvitationState::Declined),
            _ => None,
        }
    }
}

/// The roles the dashboard can invite people to. Admin is held by the app's creator and is not
/// handed out by invitation.
pub fn invitable(role: Role) -> bool {
    matches!(role, Role::Developer | Role::Tester)
}

/// May someone with this role see and change an app's settings on the dashboard? Admins and
/// developers may; testers may only use the app.
pub fn may_manage(role: Option<Role>) -> bool {
    matches!(role, Some(Role::Admin | Role::Developer))
}

/// How often a person may ask one app to delete their data: each request is a callback the
/// server must deliver, so a button pressed again and again must not become a flood.
pub const DELETION_REQUEST_EVERY_SECS: i64 = 24 * 3600;

/// May a person ask an app to delete their data now, given when they last did? When not, the
/// time they may ask again.
pub fn deletion_request_allowed(last: Option<UnixTime>, now: UnixTime) -> Result<(), UnixTime> {
    match last {
        Some(at) if now < at + DELETION_REQUEST_EVERY_SECS => Err(at + DELETION_REQUEST_EVERY_SECS),
        _ => Ok(()),
    }
}

/// Only an app's admins may delete it; developers may change everything else.
pub fn may_delete(role: Role) -> bool {
    role == Role::Admin
}

/// The page to go back to after signing in: only a path on this site, so a crafted link cannot
/// send someone elsewhere (an open redirect). Anything else means the default page.
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_active_while_a_token_lives_then_expired() {
        let granted = 1_000;
        assert_eq!(
            AccessStatus::of(2_000, granted, Some(5_000)),
            AccessStatus::Active {
                expires: Some(5_000)
            }
        );
        assert_eq!(
            AccessStatus::of(5_000, granted, Some(5_000)),
            AccessStatus::Expired { since: Some(5_000) }
        );
    }

    #[test]
    fn a_grant_without_tokens_is_active_only_while_its_code_could_be_redeemed() {
        let granted = 1_000;
        assert!(AccessStatus::of(granted + CODE_LIFETIME_SECS - 1, granted, None).is_active());
        assert_eq!(
            AccessStatus::of(granted + CODE_LIFETIME_SECS, granted, None),
            AccessStatus::Expired { since: None }
        );
    }

    #[test]
    fn data_deletion_may_be_asked_once_a_day() {
        assert_eq!(deletion_request_allowed(None, 5), Ok(()));
        let day = DELETION_REQUEST_EVERY_SECS;
        assert_eq!(
            deletion_request_allowed(Some(100), 100 + day - 1),
            Err(100 + day)
        );
        assert_eq!(deletion_request_allowed(Some(100), 100 + day), Ok(()));
    }

    #[test]
    fn tabs_round_trip_and_default_to_active() {
        for t in AccessTab::ALL {
            assert_eq!(AccessTab::parse(Some(t.as_str())), t);
        }
        assert_eq!(AccessTab::parse(None), AccessTab::Active);
        assert_eq!(AccessTab::parse(Some("bogus")), AccessTab::Active);
    }

    #[test]
    fn invitation_states_round_trip() {
        for s in [
            InvitationState::Pending,
            InvitationState::Accepted,
            InvitationState::Declined,
        ] {
            assert_eq!(InvitationState::parse(s.as_str()), Some(s));
        }
        assert_eq!(InvitationState::parse("maybe"), None);
    }

    #[test]
    fn only_admins_and_developers_manage_and_only_lesser_roles_are_invited() {
        assert!(may_manage(Some(Role::Admin)));
        assert!(may_manage(Some(Role::Developer)));
        assert!(!may_manage(Some(Role::Tester)));
        assert!(!may_manage(None));
        assert!(invitable(Role::Tester) && invitable(Role::Developer));
        assert!(!invitable(Role::Admin));
        assert!(may_delete(Role::Admin));
        assert!(!may_delete(Role::Developer) && !may_delete(Role::Tester));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            local_path("/developers/apps?x=1"),
            Some("/developers/apps?x=1")
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "developers",
            "/a b",
            "",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
