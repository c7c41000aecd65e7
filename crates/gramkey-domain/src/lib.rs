//! gramkey's domain: the Instagram token model without IO.
//!
//! Everything here is pure: time comes in through [`time::Clock`], randomness through
//! [`entropy::Entropy`], and nothing touches the network or the disk. The store and the HTTP
//! server build on these types; the rules that decide who gets a token live here, under unit tests.

pub mod account;
pub mod alert;
pub mod app;
pub mod audit;
pub mod authorize;
pub mod callback;
pub mod chart;
pub mod code;
pub mod device;
pub mod entropy;
pub mod error;
pub mod graph;
pub mod hashing;
pub mod ids;
pub mod outbound;
pub mod password;
pub mod ratelimit;
pub mod retention;
pub mod sandbox;
pub mod scope;
pub mod secret;
pub mod text;
pub mod time;
pub mod token;
pub mod user;
pub mod webhook;

pub use app::{AppMode, RedirectUri, Role};
pub use entropy::{Entropy, OsEntropy};
pub use hashing::{SecretHasher, TokenHash};
pub use ids::{AppId, CommentId, ContainerId, MediaId, ScopedUserId, UserId};
pub use scope::{Family, Scope, ScopeSet};
pub use secret::{AccessToken, AdminKey, AuthCode, ClientSecret, Password};
pub use time::{Clock, SystemClock, UnixTime};
pub use token::{Flavour, TokenKind};
