//! Receiving the authorization redirect on the loopback interface (RFC 8252 §7.3), as a
//! command-line or desktop app does: listen on `127.0.0.1`, send the browser to the authorize
//! URL with this redirect URI, and take the one redirect that carries the request's `state`.
//!
//! ```no_run
//! use gramkey_client::loopback::LoopbackRedirect;
//! use gramkey_client::{AuthorizeRequest, Client, Hosts};
//! # async fn run(secret: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(Hosts::instagram());
//! // The app registered http://127.0.0.1/callback: any port is accepted for it.
//! let listener = LoopbackRedirect::bind(0, "/callback").await?;
//! let req = AuthorizeRequest::new("1955185181361652", &listener.redirect_uri(), &["user_profile"]);
//! println!("open {}", req.url(client.hosts()));
//! let code = listener.code(&req).await?;
//! let token = client
//!     .exchange_code("1955185181361652", secret, req.redirect_uri(), &code, Some(req.verifier()))
//!     .await?;
//! # let _ = token; Ok(()) }
//! ```

use std::net::SocketAddr;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};

use crate::{AuthorizeRequest, RedirectError};

const RECEIVED: &str = "<!doctype html><title>Signed in</title><p>Received. You can close this window and go back to the application.</p>";
const NOT_THIS: &str = "<!doctype html><title>Not this sign-in</title><p>This is not the sign-in the application is waiting for.</p>";

/// A listener on `127.0.0.1` for one authorization redirect.
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: tokio::net::TcpListener,
    path: String,
    port: u16,
}

/// Why no redirect could be received.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    /// The path is not one a redirect URI can have as registered.
    #[error("the redirect path {0:?} may hold only letters, digits and / - _ . ~")]
    BadPath(String),
    /// The port could not be listened on.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        /// The port asked for (0: any).
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener stopped before a redirect came.
    #[error("the loopback listener stopped: {0}")]
    Stopped(String),
    /// The redirect came, and gave no code.
    #[error(transparent)]
    Redirect(#[from] RedirectError),
}

impl LoopbackRedirect {
    /// Listens on `127.0.0.1:port` (0: any free port) for a redirect to `path`.
    pub async fn bind(port: u16, path: &str) -> Result<Self, LoopbackError> {
        let path = format!("/{}", path.trim_start_matches('/'));
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        {
            return Err(LoopbackError::BadPath(path));
        }
        let listen = |source| LoopbackError::Listen { port, source };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(listen)?;
        let port = listener.local_addr().map_err(listen)?.port();
        Ok(Self {
            listener,
            path,
            port,
        })
    }

    /// The redirect URI to authorize with: `http://127.0.0.1:PORT/path`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    /// Waits for the redirect that carries `state` and returns its query string. Anything else
    /// on the port (another tab, a page probing local ports) is turned away with a 400, and
    /// the wait goes on. The browser is told it may close the window.
    pub async fn redirect_query(self, state: &str) -> Result<String, LoopbackError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
        let state = state.to_owned();
        let app = axum::Router::new().route(
            &self.path,
            axum::routing::get(move |RawQuery(q): RawQuery| {
                let (tx, state) = (tx.clone(), state.clone());
                async move {
                    let q = q.unwrap_or_default();
                    let ours = url::form_urlencoded::parse(q.as_bytes())
                        .any(|(k, v)| k == "state" && v == state.as_str());
                    if !ours {
                        return (StatusCode::BAD_REQUEST, Html(NOT_THIS)).into_response();
                    }
                    let _ = tx.send(q).await;
                    Html(RECEIVED).into_response()
                }
            }),
        );
        let server = tokio::spawn(async move { axum::serve(self.listener, app).await });
        let got = rx.recv().await;
        // Let the page reach the browser before the listener goes.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        server.abort();
        got.ok_or_else(|| LoopbackError::Stopped("no redirect".into()))
    }

    /// Waits for `req`'s redirect and returns its code, or the refusal it carried.
    pub async fn code(self, req: &AuthorizeRequest) -> Result<String, LoopbackError> {
        let query = self.redirect_query(req.state()).await?;
        Ok(req.code_from_redirect(&query)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_requests_redirect_is_taken() {
        let listener = LoopbackRedirect::bind(0, "callback").await.unwrap();
        let uri = listener.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let req = AuthorizeRequest::new("1", &uri, &["user_profile"]);
        let state = req.state().to_owned();
        let waiting = tokio::spawn(async move { listener.code(&req).await });
        let http = reqwest::Client::new();
        let forged = http
            .get(format!("{uri}?code=AQforged&state=other"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        let ok = http
            .get(format!("{uri}?code=AQright&state={state}"))
            .send()
            .await
            .unwrap();
        assert!(ok.text().await.unwrap().contains("Received"));
        assert_eq!(waiting.await.unwrap().unwrap(), "AQright");
        assert!(matches!(
            LoopbackRedirect::bind(0, "/call back").await,
            Err(LoopbackError::BadPath(_))
        ));
    }
}
