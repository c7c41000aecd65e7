//! Scopes, their families, and the words the consent page uses for them.
//!
//! Instagram has three families of scopes, one per API generation, and a request must stay
//! within one family: it decides the token's [`Flavour`](crate::token::Flavour).

/// The API generation a scope belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Instagram Basic Display (`user_profile`, `user_media`).
    BasicDisplay,
    /// Instagram API with Instagram Login (`instagram_business_*`).
    InstagramLogin,
    /// The legacy v1 API (`basic`, `public_content`, ...).
    Legacy,
}

macro_rules! scopes {
    ($($variant:ident => $name:literal, $family:ident, $words:literal;)*) => {
        /// One permission an app may ask for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Scope { $($variant),* }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),*];

            /// The wire name, as in `scope=` and `permissions`.
            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name),* }
            }
            pub fn family(self) -> Family {
                match self { $(Scope::$variant => Family::$family),* }
            }
            /// What the consent page tells the user this lets the app do.
            pub fn plain_words(self) -> &'static str {
                match self { $(Scope::$variant => $words),* }
            }
            pub fn parse(s: &str) -> Option<Scope> {
                match s { $($name => Some(Scope::$variant),)* _ => None }
            }
        }
    };
}

scopes! {
    UserProfile => "user_profile", BasicDisplay, "See your profile: your username, account type and user ID";
    UserMedia => "user_media", BasicDisplay, "See your photos, videos and albums, with their captions";
    BusinessBasic => "instagram_business_basic", InstagramLogin, "See your profile and your posts";
    BusinessContentPublish => "instagram_business_content_publish", InstagramLogin, "Publish photos, videos and albums on your account";
    BusinessManageMessages => "instagram_business_manage_messages", InstagramLogin, "Read and reply to your direct messages";
    BusinessManageComments => "instagram_business_manage_comments", InstagramLogin, "Read, post, reply to and delete comments on your posts";
    BusinessManageInsights => "instagram_business_manage_insights", InstagramLogin, "See insights about your account and posts";
    Basic => "basic", Legacy, "See your profile information and your photos";
    PublicContent => "public_content", Legacy, "See public posts and profiles on your behalf";
    FollowerList => "follower_list", Legacy, "See the list of people you follow and who follow you";
    Comments => "comments", Legacy, "Post and delete comments on your behalf";
    Relationships => "relationships", Legacy, "Follow and unfollow accounts on your behalf";
    Likes => "likes", Legacy, "Like and unlike posts on your behalf";
}

impl Scope {
    /// The permission name Instagram reports for this scope. Basic Display scopes map to the
    /// `instagram_graph_*` permissions; the others are their own names.
    pub fn permission(self) -> &'static str {
        match self {
            Scope::UserProfile => "instagram_graph_user_profile",
            Scope::UserMedia => "instagram_graph_user_media",
            other => other.as_str(),
        }
    }
}

impl Family {
    /// The scope a request in this family must include.
    pub fn required_scope(self) -> Scope {
        match self {
            Family::BasicDisplay => Scope::UserProfile,
            Family::InstagramLogin => Scope::BusinessBasic,
            Family::Legacy => Scope::Basic,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("Invalid scope: {0}")]
    Unknown(String),
    #[error("Scopes from different Instagram APIs cannot be combined: {0}")]
    MixedFamilies(String),
    #[error("Missing required scope: {0}")]
    MissingRequired(&'static str),
    #[error("Missing required parameter: scope")]
    Empty,
}

/// A set of scopes, kept in the order first given and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut v: Vec<Scope> = Vec::new();
        for s in scopes {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        Self(v)
    }

    /// Parses a `scope` parameter: names separated by commas, spaces or `+` (legacy v1 used
    /// `+`, Instagram Login uses commas). Any unknown name is an error.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let mut out = Vec::new();
        for name in raw
            .split([',', ' ', '+'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push(Scope::parse(name).ok_or_else(|| ScopeError::Unknown(name.to_owned()))?);
        }
        if out.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Self::new(out))
    }

    /// Parses a stored comma-separated list, dropping names this version does not know.
    pub fn from_stored(raw: &str) -> Self {
        Self::new(raw.split(',').filter_map(|s| Scope::parse(s.trim())))
    }

    /// Comma-separated wire names.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
    pub fn contains(&self, s: Scope) -> bool {
        self.0.contains(&s)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.iter().all(|s| other.contains(*s))
    }

    /// The single family of a token request, with its required scope present.
    pub fn request_family(&self) -> Result<Family, ScopeError> {
        let first = self.0.first().ok_or(ScopeError::Empty)?.family();
        if let Some(other) = self.0.iter().find(|s| s.family() != first) {
            return Err(ScopeError::MixedFamilies(other.as_str().to_owned()));
        }
        let required = first.required_scope();
        if !self.contains(required) {
            return Err(ScopeError::MissingRequired(required.as_str()));
        }
        Ok(first)
    }

    /// Permission names, as reported in token responses and `debug_token`.
    pub fn permissions(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.permission()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_separators_and_dedups() {
        let s = ScopeSet::parse("user_profile,user_media user_profile+user_media").unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Scope::UserProfile, Scope::UserMedia]
        );
        assert_eq!(s.to_stored(), "user_profile,user_media");
        assert_eq!(
            ScopeSet::from_stored("user_profile,bogus"),
            ScopeSet::new([Scope::UserProfile])
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert_eq!(
            ScopeSet::parse("user_profile,nope"),
            Err(ScopeError::Unknown("nope".into()))
        );
        assert_eq!(ScopeSet::parse(" , "), Err(ScopeError::Empty));
    }

    #[test]
    fn family_rules() {
        let ok =
            ScopeSet::parse("instagram_business_basic,instagram_business_manage_comments").unwrap();
        assert_eq!(ok.request_family(), Ok(Family::InstagramLogin));
        let mixed = ScopeSet::parse("user_profile,basic").unwrap();
        assert!(matches!(
            mixed.request_family(),
            Err(ScopeError::MixedFamilies(_))
        ));
        let missing = ScopeSet::parse("user_media").unwrap();
        assert_eq!(
            missing.request_family(),
            Err(ScopeError::MissingRequired("user_profile"))
        );
        assert_eq!(
            ScopeSet::parse("basic").unwrap().request_family(),
            Ok(Family::Legacy)
        );
    }

    #[test]
    fn permissions_and_words() {
        let s = ScopeSet::parse("user_profile,user_media").unwrap();
        assert_eq!(
            s.permissions(),
            vec!["instagram_graph_user_profile", "instagram_graph_user_media"]
        );
        assert!(Scope::ALL.iter().all(|s| !s.plain_words().is_empty()));
        assert!(
            Scope::ALL
                .iter()
                .all(|s| Scope::parse(s.as_str()) == Some(*s))
        );
    }
}
