//! The HTTPS listener: TCP connections are accepted in a loop of their own
//! and each TLS handshake runs in its own task (bounded by a timeout), so a
//! slow or silent client never holds up the next one; finished handshakes
//! are handed to axum. The certificate is read through a slot that
//! [`ReloadableCertificate::reload`] swaps, so SIGHUP takes effect for new
//! connections without closing the listener or open connections.

use super::certificate::{load, CertificateError, CertificateInfo};
use crate::metrics::tls::CertificateExpiry;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use switchyard_core::config::TlsConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client gets to complete its handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// The listener's certificate, read from `TLS_CERT_FILE`/`TLS_KEY_FILE`
/// and read again by [`reload`](Self::reload), and the rustls
/// configuration that serves it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ReloadableCertificate {
    slot: Arc<Slot>,
    server_config: Arc<rustls::ServerConfig>,
}

#[derive(Debug)]
struct Slot {
    config: TlsConfig,
    current: RwLock<(Arc<CertifiedKey>, CertificateInfo)>,
    expiry: CertificateExpiry,
}

impl ReloadableCertificate {
    /// Reads the files; fails when they cannot be used. Sets the expiry gauge.
    pub fn load(config: &TlsConfig, expiry: CertificateExpiry) -> Result<Self, CertificateError> {
        let cert = load(config)?;
        expiry.set(cert.info.not_after);
        let slot = Arc::new(Slot {
            config: config.clone(),
            current: RwLock::new((cert.key, cert.info)),
            expiry,
        });
        let server_config = server_config(&slot).map_err(|e| CertificateError::Key {
            path: config.key_file.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            slot,
            server_config,
        })
    }

    /// Reads the files again and, when they can be used, serves the new
    /// certificate to every later handshake; otherwise keeps the one in
    /// use and says why.
    pub fn reload(&self) -> Result<CertificateInfo, CertificateError> {
        let cert = load(&self.slot.config)?;
        self.slot.expiry.set(cert.info.not_after);
        *self
            .slot
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = (cert.key, cert.info.clone());
        Ok(cert.info)
    }

    /// What the certificate in use says.
    pub fn info(&self) -> CertificateInfo {
        self.slot
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

/// TLS 1.2 and 1.3 with ring's cipher suites, HTTP/2 and HTTP/1.1 by ALPN,
/// the certificate taken from `slot` at each handshake.
fn server_config(slot: &Arc<Slot>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(slot.clone())));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Resolver(Arc<Slot>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// A TCP listener that hands axum TLS streams. Dropping it closes the
/// listening socket.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_loop: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` (bound to `local_addr`).
    pub fn new(
        listener: TcpListener,
        local_addr: SocketAddr,
        certificate: &ReloadableCertificate,
    ) -> Self {
        let acceptor = TlsAcceptor::from(certificate.server_config.clone());
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, tx));
        Self {
            local_addr,
            ready,
            accept_loop,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (only when aborted): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Errors of `accept` that concern one connection only.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // As on the plain listener: small writes (one SSE event per token)
        // go out at once.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
