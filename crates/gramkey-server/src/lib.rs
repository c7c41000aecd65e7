//! gramkey's HTTP server: the OAuth endpoints, the login and consent pages, the admin API and
//! the Instagram-compatible resource API, over the domain crate and one [`gramkey_store::Store`].
//!
//! Handlers are thin: they parse into domain types, call the domain and the store, and render
//! in the wire flavour of their endpoint ([`wire`]). Every route is listed in [`router`].

pub mod alerts;
pub mod audit;
pub mod callbacks;
pub mod handlers;
pub mod keys;
pub mod limits;
pub mod media_fetch;
pub mod metrics;
pub mod observe;
pub mod ops;
pub mod pages;
pub mod portal;
pub mod router;
pub mod sandbox;
pub mod session;
pub mod signin;
pub mod state;
pub mod test_support;
pub mod throttle;
pub mod tokens;
pub mod transport;
pub mod usage;
pub mod web;
pub mod wire;

use std::future::Future;

pub use router::router;
pub use state::{AppState, ServerConfig};

/// Serves only `/metrics`, unguarded, on its own listener (`--metrics-listen`), for a scraper
/// on a private network.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(
            |axum::extract::State(s): axum::extract::State<AppState>| async move {
                handlers::admin::render_metrics(&s).await
            },
        ),
    );
    axum::serve(listener, app.with_state(state)).await
}

/// How often app usage counted in memory is added to the store.
const USAGE_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `state` on `listener` until `shutdown` completes. Tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, transport::Transport::Plain, state, shutdown).await
}

/// [`serve`] over the given transport (plain TCP or TLS).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    transport: transport::Transport,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let usage = state.usage.clone();
    let store = state.ops.store.clone();
    tokio::spawn(usage.clone().run(store.clone(), USAGE_FLUSH));
    tokio::spawn(state.limiter.clone().run());
    transport::run(listener, transport, router(state), shutdown).await?;
    // What was counted since the last flush.
    usage.flush(&*store).await;
    Ok(())
}
