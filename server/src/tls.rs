//! TLS on every listener (rustls, the `ring` provider).
//!
//! A service given a certificate and its key ([`TlsConfig`]: `[tls]` in its
//! config file, `--tls-cert` / `--tls-key` on `blobd`) speaks only TLS;
//! without them, plain HTTP. The handshake runs in [`TlsListener`], which
//! wraps any `axum::serve` listener (a `TcpListener` under a
//! [`LimitedListener`](crate::limits::LimitedListener)):
//!
//! - handshakes run concurrently, each in its own task, so a client that
//!   connects and says nothing holds up no other connection;
//! - each has [`HANDSHAKE_TIMEOUT`]; at most [`MAX_HANDSHAKES`] are under
//!   way at once (more connections wait in the listen backlog);
//! - a failed handshake (a plain-HTTP client, an untrusted certificate, a
//!   port scan) is logged at `debug` and dropped: the accept loop never
//!   stops for one.
//!
//! The S3 gateway, which runs hyper itself, calls [`Acceptor::handshake`]
//! in each connection's task instead.
//!
//! [`TlsConfig::ca_file`] is the other side: the CA a service trusts when
//! it calls another service (`blob_rpc::tls` reads it for every client).

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

/// Time a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at once on one listener.
pub const MAX_HANDSHAKES: usize = 256;

/// TLS settings of a service: what it serves with, and what it trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain the service presents (its own certificate
    /// first). With `key`, the service speaks only TLS; without both,
    /// plain HTTP.
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) trusted when this service calls another (the
    /// namenode, a datanode of a pipeline, an edge's origin). Without it,
    /// `https` URLs cannot be verified and are refused.
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Checks that the certificate and its key come together.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err("a TLS certificate needs its key (tls.key, --tls-key)".into()),
            (None, Some(_)) => Err("a TLS key needs its certificate (tls.cert, --tls-cert)".into()),
            _ => Ok(()),
        }
    }

    /// Whether the service serves TLS.
    pub fn serves_tls(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// The URL scheme of the service: `https` when it serves TLS.
    pub fn scheme(&self) -> &'static str {
        if self.serves_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The acceptor of a service that serves TLS (reads and checks the
    /// certificate and key now); `None` for plain HTTP.
    pub fn acceptor(&self) -> Result<Option<Acceptor>, Error> {
        self.validate().map_err(Error::Config)?;
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Acceptor::from_pem_files(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Why a TLS server could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings that do not go together.
    #[error("invalid TLS settings: {0}")]
    Config(String),
    /// A certificate or key file could not be read or parsed.
    #[error("reading {what} {path}: {detail}")]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS certificate {cert}: {source}")]
    Rustls {
        /// The certificate file.
        cert: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// Performs server handshakes with one certificate; cheap to clone.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    timeout: Duration,
}

impl Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor presenting the PEM chain in `cert` with the key in
    /// `key`, speaking HTTP/1.1.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Acceptor, Error> {
        let pem_err = |what, path: &Path, detail: String| Error::Pem {
            what,
            path: path.to_path_buf(),
            detail,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_err("certificate", cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err("certificate", cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_err(
                "certificate",
                cert,
                "no CERTIFICATE block found".into(),
            ));
        }
        let private =
            PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("key", key, e.to_string()))?;
        let rustls_err = |source| Error::Rustls {
            cert: cert.to_path_buf(),
            source,
        };
        // The provider is named rather than taken from the process default,
        // so that no other crate's choice of provider can change it.
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(rustls_err)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The server's order of cipher suites decides (AES-128-GCM first).
        config.ignore_client_order = true;
        Ok(Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// The same acceptor with another handshake timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the server side of a handshake on `io`, within the timeout.
    pub async fn handshake<IO>(&self, io: IO) -> io::Result<Stream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.timeout, self.inner.accept(io)).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {:?}", self.timeout),
            )),
        }
    }
}

/// *ring* with its cipher suites reordered: AES-128-GCM before AES-256-GCM
/// and ChaCha20-Poly1305. Chunk traffic is bulk data, and AES-128 takes 10
/// rounds per block where AES-256 takes 14: on a machine whose cores also
/// hash and checksum every chunk, that is throughput.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let aes128 = [
        cs::TLS13_AES_128_GCM_SHA256.suite(),
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite(),
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.suite(),
    ];
    let mut p = rustls::crypto::ring::default_provider();
    // Stable: TLS 1.3 suites stay ahead of TLS 1.2 ones within each group.
    p.cipher_suites
        .sort_by_key(|s| !aes128.contains(&s.suite()));
    p
}

/// A served connection: plain, or TLS over it.
#[derive(Debug)]
pub enum Stream<IO> {
    /// Plain HTTP.
    Plain(IO),
    /// TLS (boxed: a TLS session is large beside a socket).
    Tls(Box<TlsStream<IO>>),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(io) => io.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

type Handshakes<L> = JoinSet<
    Option<(
        Stream<<L as axum::serve::Listener>::Io>,
        <L as axum::serve::Listener>::Addr,
    )>,
>;

/// A listener for `axum::serve` that hands out TLS connections once their
/// handshake completed (or, without an acceptor, plain ones as accepted).
pub struct TlsListener<L: axum::serve::Listener> {
    inner: L,
    acceptor: Option<Acceptor>,
    handshakes: Handshakes<L>,
}

impl<L: axum::serve::Listener> TlsListener<L> {
    /// Wraps `inner`: TLS with `acceptor`, plain without.
    pub fn new(inner: L, acceptor: Option<Acceptor>) -> Self {
        Self {
            inner,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }
}

impl<L> axum::serve::Listener for TlsListener<L>
where
    L: axum::serve::Listener,
    L::Addr: Debug + 'static,
{
    type Io = Stream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Self {
            inner,
            acceptor,
            handshakes,
        } = self;
        let Some(acceptor) = acceptor else {
            let (io, addr) = inner.accept().await;
            return (Stream::Plain(io), addr);
        };
        // Both branches are cancel-safe (a dropped accept loses nothing:
        // pending handshakes stay in the set for the next call).
        loop {
            tokio::select! {
                done = handshakes.join_next(), if !handshakes.is_empty() => {
                    if let Some(Ok(Some(conn))) = done {
                        return conn;
                    }
                }
                (io, addr) = inner.accept(), if handshakes.len() < MAX_HANDSHAKES => {
                    let acceptor = acceptor.clone();
                    handshakes.spawn(async move {
                        match acceptor.handshake(io).await {
                            Ok(tls) => Some((tls, addr)),
                            Err(e) => {
                                tracing::debug!(peer = ?addr, error = %e, "TLS handshake failed");
                                None
                            }
                        }
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA, and a certificate for 127.0.0.1 it signed, as PEM files.
    fn certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        let paths = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("c.key"));
        std::fs::write(&paths.0, ca.pem()).expect("write");
        std::fs::write(&paths.1, cert.pem()).expect("write");
        std::fs::write(&paths.2, key.serialize_pem()).expect("write");
        paths
    }

    fn client(ca: &Path) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(c.expect("pem")).expect("root");
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let half = TlsConfig {
            cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(half.validate().is_err());
        assert!(half.acceptor().is_err());
        assert!(matches!(TlsConfig::default().acceptor(), Ok(None)));
        assert_eq!(TlsConfig::default().scheme(), "http");
        let missing = TlsConfig {
            cert: Some("/nonexistent/c.pem".into()),
            key: Some("/nonexistent/c.key".into()),
            ca_file: None,
        };
        assert_eq!(missing.scheme(), "https");
        let err = missing.acceptor().expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    }

    /// A plain-HTTP client and a silent one get nowhere; a TLS client
    /// after them is served.
    #[tokio::test]
    async fn failed_handshakes_never_stop_the_listener() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = certs(dir.path());
        let acceptor = Acceptor::from_pem_files(&cert, &key)
            .expect("acceptor")
            .with_timeout(Duration::from_millis(300));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut listener = TlsListener::new(tcp, Some(acceptor));
        let server = tokio::spawn(async move {
            let (mut io, _) = listener.accept().await;
            let mut buf = [0u8; 5];
            io.read_exact(&mut buf).await.expect("read");
            io.write_all(&buf).await.expect("write");
            io.flush().await.expect("flush");
            io
        });
        // Silent: holds a handshake until its timeout, blocks no one.
        let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Plain HTTP: answered with a TLS alert or a close, never data.
        let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
        // A TLS client is served.
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = client(&ca).connect(name, tcp).await.expect("handshake");
        assert_eq!(
            tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "the server's order decides"
        );
        tls.write_all(b"hello").await.expect("write");
        let mut echo = [0u8; 5];
        tls.read_exact(&mut echo).await.expect("read");
        assert_eq!(&echo, b"hello");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("served in time")
            .expect("server task");
    }
}
