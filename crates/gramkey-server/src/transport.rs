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
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A TLS handshake that has not finished by then is dropped, so a silent client cannot hold a
/// connection slot before it has sent a byte of HTTP.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish.
/// Each request carries the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn run(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    let acceptor = match &transport {
        Transport::Plain => None,
        Transport::Tls(config) => Some(TlsAcceptor::from(config.clone())),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req.map(axum::body::Body::new)
            });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &acceptor {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(async move {
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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
