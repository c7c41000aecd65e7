//! gramkey's HTTP server: the OAuth endpoints, the login and consent pages, the admin API and
//! the Instagram-compatible resource API, over the domain crate and one [`gramkey_store::Store`].
//!
//! Handlers are thin: they parse into domain types, call the domain and the store, and render
//! in the wire flavour of their endpoint ([`wire`]). Every route is listed in [`router`].

pub mod alerts;
pub mod audit;
pub mod call_log;
pub mod callbacks;
pub mod fixtures;
pub mod handlers;
pub mod keys;
pub mod limits;
pub mod media_fetch;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod ops;
pub mod origin;
pub mod outbound;
pub mod pages;
pub mod portal;
pub mod publishing;
pub mod router;
pub mod sandbox;
pub mod session;
pub mod signin;
pub mod state;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod test_tools;
pub mod throttle;
pub mod tokens;
pub mod transport;
pub mod usage;
pub mod web;
pub mod webhooks;
pub mod wire;

pub use node::Node;
pub use router::router;
pub use state::{AppState, ServerConfig};

/// Only `/metrics`, unguarded, for its own listener (`--metrics-listen`): for a scraper on a
/// private network.
pub(crate) fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    handlers::admin::render_metrics(&s).await
                },
            ),
        )
        .with_state(state)
}
