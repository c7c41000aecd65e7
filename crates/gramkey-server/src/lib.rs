//! gramkey's HTTP server: the OAuth endpoints, the login and consent pages, the admin API and
//! the Instagram-compatible resource API, over the domain crate and one [`gramkey_store::Store`].
//!
//! Handlers are thin: they parse into domain types, call the domain and the store, and render
//! in the wire flavour of their endpoint ([`wire`]). Every route is listed in [`router`].

pub mod callbacks;
pub mod handlers;
pub mod keys;
pub mod media_fetch;
pub mod ops;
pub mod pages;
pub mod router;
pub mod sandbox;
pub mod session;
pub mod state;
pub mod wire;

use std::future::Future;

pub use router::router;
pub use state::{AppState, ServerConfig};

/// Serves `state` on `listener` until `shutdown` completes. Tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
