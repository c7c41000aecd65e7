//! How connections reach the router: plain TCP or TLS (rustls; HTTP/1.1 and HTTP/2 chosen by
//! ALPN), served by hyper-util's auto builder, with a graceful shutdown.
//!
//! Instagram served only HTTPS, and some clients call `https://` whatever host they are given
//! (wire protocol §11), so a sandbox must be able to speak TLS too. `--tls-self-signed` makes a
//! certificate for `localhost`, `127.0.0.1` and `::1` once and keeps it in the data directory,
//! so a client told to trust it keeps trusting it across restarts.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::connect_info::ConnectInfo;
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::{Service, ServiceExt};
use tower_http::timeout::TimeoutBody;

/// What a connection may cost the server: how long it may keep it waiting, and how many may be
/// open at once. Slow and silent clients are closed by these, not by the file-descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long the server waits for a request's head: on a new connection (its TLS handshake
    /// included), and on an idle
    /// keep-alive one (HTTP/1.1), whose idle timeout this is. Also the longest pause between
    /// two pieces of a request body. On HTTP/2, a ping unanswered for this long ends the
    /// connection.
    pub header_timeout: Duration,
    /// How long one request with a body may take from its head to its answer, reading the
    /// body included.
    pub request_timeout: Duration,
    /// The most connections open at once. Past it, new connections wait in the listen backlog
    /// until one closes, and the server says so in its log.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// What the server speaks on its listener.
#[derive(Clone, Default)]
pub enum Transport {
    #[default]
    Plain,
    Tls(Arc<rustls::ServerConfig>),
}

impl Transport {
    /// TLS from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn tls_from_pem(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Read(cert.to_owned(), e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::Read(
                cert.to_owned(),
                "no CERTIFICATE block in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Read(key.to_owned(), e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self::Tls(Arc::new(config)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    #[error("cannot use the certificate and key: {0}")]
    Config(String),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, io::Error),
}

/// The self-signed certificate and key in `dir` (`tls-self-signed.crt`, `tls-self-signed.key`),
/// made on first use for `localhost`, `127.0.0.1` and `::1` and kept afterwards. Returns
/// their paths and whether they were made now.
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    let cert_path = dir.join("tls-self-signed.crt");
    let key_path = dir.join("tls-self-signed.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path, false));
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gramkey sandbox (self-signed)");
    // Long enough for a sandbox to outlive it rarely; clients pin the file, not a CA.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Write(dir.to_owned(), e))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| TlsError::Write(cert_path.clone(), e))?;
    Ok((cert_path, key_path, true))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| TlsError::Write(path.to_owned(), e))?;
    f.write_all(bytes)
        .map_err(|e| TlsError::Write(path.to_owned(), e))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
/// Each request carries the peer's address as `ConnectInfo<SocketAddr>`, and one with a body
/// gets its deadlines ([`deadlines`]).
pub async fn run<S>(
    listener: TcpListener,
    transport: Transport,
    limits: ConnectionLimits,
    app: S,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let acceptor = match &transport {
        Transport::Plain => None,
        Transport::Tls(config) => Some(TlsAcceptor::from(config.clone())),
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut said_full = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !said_full {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                    said_full = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        // Said again only after the pressure has eased.
        if slots.available_permits() > limits.max_connections / 4 {
            said_full = false;
        }
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Set when the connection's first request has arrived whole (its head parsed).
        let started = Arc::new(AtomicBool::new(false));
        let seen = started.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(remote));
            deadlines(limits, app.clone(), req)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let deadline = limits.header_timeout;
        tokio::spawn(async move {
            // The connection's place under the cap, given back when this task ends.
            let _slot = slot;
            let io = match acceptor {
                None => Either::Left(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Either::Right(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %remote, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            let served = watcher.watch(conn);
            tokio::pin!(served);
            // hyper's header timeout starts once it knows the protocol; a connection that never
            // sends enough to tell (silent, or a partial HTTP/2 preface) is closed here, which
            // loses nothing since no request has begun.
            let outcome = tokio::select! {
                outcome = &mut served => outcome,
                () = tokio::time::sleep(deadline) => {
                    if !started.load(Ordering::Relaxed) {
                        tracing::debug!(peer = %remote, "no request in time; closing the connection");
                        return;
                    }
                    served.await
                }
            };
            if let Err(e) = outcome {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A request with a body gets the body pause timeout and the request deadline: a body that
/// stalls fails its extractor, which answers 408 in the route's own wire format, and the
/// deadline is the backstop (an empty 408). A request without a body (most GETs) has nothing
/// that can stall once its head has arrived, and costs no timers: two per request cost /me
/// about a sixth of its throughput.
async fn deadlines<S>(
    limits: ConnectionLimits,
    app: S,
    req: Request,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    use axum::body::HttpBody;
    use axum::response::IntoResponse;
    if req.body().is_end_stream() {
        return app.oneshot(req).await;
    }
    let req = req.map(|body| Body::new(TimeoutBody::new(limits.header_timeout, body)));
    Ok(
        match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
            Ok(Ok(resp)) => resp,
            Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
        },
    )
}

/// As hyper and axum do: connection-level errors are the peer's business; anything else (most
/// often EMFILE, out of file descriptors) is logged and accepting pauses for a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
