//! What each node type offers, and which permission each field and edge needs.
//!
//! Every flavour sees the same fields; the token's scopes decide what it may read. A field
//! that was not asked for is never rendered, and one asked for without the permission is
//! refused whole (code 10), so a response never carries more than was asked and granted.

use crate::error::GraphError;
use crate::graph::fields::Field;
use crate::scope::{Scope, ScopeSet};
use crate::token::Flavour;

/// What a field, edge or operation needs from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The basic profile: `user_profile`, `instagram_business_basic` or `basic`.
    Profile,
    /// Media: `user_media`, `instagram_business_basic` or `basic`.
    Media,
    /// Comments: `instagram_business_manage_comments`, or `comments` on legacy v1.
    Comments,
    /// Publishing: `instagram_business_content_publish`.
    Publish,
    /// Media and account insights: `instagram_business_manage_insights`.
    Insights,
}

impl Need {
    fn scopes(self) -> &'static [Scope] {
        match self {
            Need::Profile => &[Scope::UserProfile, Scope::BusinessBasic, Scope::Basic],
            Need::Media => &[Scope::UserMedia, Scope::BusinessBasic, Scope::Basic],
            Need::Comments => &[Scope::BusinessManageComments, Scope::Comments],
            Need::Publish => &[Scope::BusinessContentPublish],
            Need::Insights => &[Scope::BusinessManageInsights],
        }
    }

    pub fn allowed(self, scopes: &ScopeSet) -> bool {
        self.scopes().iter().any(|s| scopes.contains(*s))
    }

    /// The permission to name in a refusal, in the token's own family.
    pub fn permission(self, flavour: Flavour) -> &'static str {
        match (self, flavour) {
            (Need::Profile, Flavour::BasicDisplay) => Scope::UserProfile.permission(),
            (Need::Media, Flavour::BasicDisplay) => Scope::UserMedia.permission(),
            (Need::Profile | Need::Media, Flavour::InstagramLogin) => Scope::BusinessBasic.as_str(),
            (Need::Profile | Need::Media, Flavour::Legacy) => Scope::Basic.as_str(),
            (Need::Comments, Flavour::Legacy) => Scope::Comments.as_str(),
            (Need::Comments, _) => Scope::BusinessManageComments.as_str(),
            (Need::Publish, _) => Scope::BusinessContentPublish.as_str(),
            (Need::Insights, _) => Scope::BusinessManageInsights.as_str(),
        }
    }

    /// Code 10 for reading, 200 for writing, as Graph does.
    pub fn check(self, scopes: &ScopeSet, flavour: Flavour) -> Result<(), GraphError> {
        if self.allowed(scopes) {
            Ok(())
        } else if matches!(self, Need::Publish) {
            Err(GraphError::permission_write(self.permission(flavour)))
        } else {
            Err(GraphError::permission(self.permission(flavour)))
        }
    }
}

/// The node types of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    User,
    Media,
    Comment,
    Container,
}

impl Node {
    /// The name Graph uses in "nonexisting field" errors.
    pub fn type_name(self) -> &'static str {
        match self {
            Node::User => "User",
            Node::Media => "Media",
            Node::Comment => "Comment",
            Node::Container => "ShadowIGMediaBuilder",
        }
    }

    /// Scalar fields and what each needs.
    fn scalars(self) -> &'static [(&'static str, Need)] {
        use Need::*;
        match self {
            Node::User => &[
                ("id", Profile),
                ("user_id", Profile),
                ("username", Profile),
                ("account_type", Profile),
                ("media_count", Media),
                ("name", Profile),
                ("profile_picture_url", Profile),
                ("followers_count", Profile),
                ("follows_count", Profile),
                ("biography", Profile),
                ("website", Profile),
            ],
            Node::Media => &[
                ("id", Media),
                ("caption", Media),
                ("media_type", Media),
                ("media_url", Media),
                ("permalink", Media),
                ("thumbnail_url", Media),
                ("timestamp", Media),
                ("username", Media),
                ("is_shared_to_feed", Media),
                ("like_count", Media),
                ("comments_count", Media),
            ],
            Node::Comment => &[
                ("id", Comments),
                ("text", Comments),
                ("timestamp", Comments),
                ("username", Comments),
                ("like_count", Comments),
                ("hidden", Comments),
                ("parent_id", Comments),
            ],
            Node::Container => &[
                ("id", Publish),
                ("status_code", Publish),
                ("status", Publish),
            ],
        }
    }

    /// Edges: the node type they list, and what they need.
    pub fn edge(self, name: &str) -> Option<(Node, Need)> {
        match (self, name) {
            (Node::User, "media") => Some((Node::Media, Need::Media)),
            (Node::Media, "children") => Some((Node::Media, Need::Media)),
            (Node::Media, "comments") => Some((Node::Comment, Need::Comments)),
            (Node::Comment, "replies") => Some((Node::Comment, Need::Comments)),
            _ => None,
        }
    }

    /// What an edge of this node type lists when no fields are asked for: `id` (the Graph
    /// convention), except comments, which Instagram lists with their text and time.
    pub fn default_fields(self) -> &'static [&'static str] {
        match self {
            Node::Comment => &["timestamp", "text", "id"],
            _ => &["id"],
        }
    }

    /// Checks a selection against this node type: every field exists, the token may read it,
    /// modifiers and sub-selections only on edges, recursively.
    pub fn check(
        self,
        fields: &[Field],
        scopes: &ScopeSet,
        flavour: Flavour,
    ) -> Result<(), GraphError> {
        for f in fields {
            if let Some((_, need)) = self.scalars().iter().find(|(n, _)| *n == f.name) {
                if f.sub.is_some() || f.limit.is_some() {
                    return Err(GraphError::invalid_parameter(format!(
                        "Field {} is not an edge and takes no {{…}} or .limit()",
                        f.name
                    )));
                }
                need.check(scopes, flavour)?;
            } else if let Some((child, need)) = self.edge(&f.name) {
                need.check(scopes, flavour)?;
                if let Some(sub) = &f.sub {
                    child.check(sub, scopes, flavour)?;
                }
            } else {
                return Err(GraphError::nonexisting_field(&f.name, self.type_name()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::fields::parse;

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn media_needs_the_media_permission_in_each_family() {
        let bd = scopes("user_profile");
        let e = Node::User
            .check(
                &parse("id,media_count").unwrap(),
                &bd,
                Flavour::BasicDisplay,
            )
            .unwrap_err();
        assert_eq!(e.code, 10);
        assert!(e.message.contains("instagram_graph_user_media"));
        assert!(
            Node::User
                .check(&parse("id,username").unwrap(), &bd, Flavour::BasicDisplay)
                .is_ok()
        );
        let bdm = scopes("user_profile,user_media");
        assert!(
            Node::User
                .check(
                    &parse("media_count,media{id,caption}").unwrap(),
                    &bdm,
                    Flavour::BasicDisplay
                )
                .is_ok()
        );
        let il = scopes("instagram_business_basic");
        assert!(
            Node::User
                .check(
                    &parse("media{comments_count}").unwrap(),
                    &il,
                    Flavour::InstagramLogin
                )
                .is_ok()
        );
        let e = Node::Media
            .check(
                &parse("comments{text}").unwrap(),
                &il,
                Flavour::InstagramLogin,
            )
            .unwrap_err();
        assert!(e.message.contains("instagram_business_manage_comments"));
    }

    #[test]
    fn unknown_fields_and_misplaced_modifiers() {
        let il = scopes("instagram_business_basic");
        let e = Node::User
            .check(&parse("bogus").unwrap(), &il, Flavour::InstagramLogin)
            .unwrap_err();
        assert_eq!(e.code, 100);
        assert!(
            e.message
                .contains("nonexisting field (bogus) on node type (User)")
        );
        for bad in ["username{id}", "id.limit(3)", "media{bogus}"] {
            assert_eq!(
                Node::User
                    .check(&parse(bad).unwrap(), &il, Flavour::InstagramLogin)
                    .unwrap_err()
                    .code,
                100,
                "{bad}"
            );
        }
    }

    #[test]
    fn writing_is_200() {
        let il = scopes("instagram_business_basic");
        let e = Need::Publish
            .check(&il, Flavour::InstagramLogin)
            .unwrap_err();
        assert_eq!(e.code, 200);
    }
}
