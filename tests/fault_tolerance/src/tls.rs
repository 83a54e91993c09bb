//! TLS in front of the real services, without touching their
//! configuration: a throwaway PKI made with rcgen ([`Pki`]) and a
//! TLS-terminating proxy in the test process ([`TlsProxy`]) that forwards
//! the decrypted stream to the plain RabbitMQ or Postgres on loopback.
//!
//! AMQP over TLS is TLS from the first byte. Postgres first sends an
//! `SSLRequest` in clear; the proxy answers `S`, then speaks TLS, and
//! forwards everything after it to the plain server (which never sees the
//! `SSLRequest`). A client that does not ask for TLS is cut off: the proxy
//! exists to prove the binary speaks TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Postgres' `SSLRequest` and `GSSENCRequest` codes (protocol 3.0).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Whether a certificate is valid today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// 1975 to 4096.
    Current,
    /// Ended in 2001.
    Expired,
}

/// A throwaway certificate authority whose files live in one directory.
pub struct Pki {
    name: String,
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("name", &self.name).finish()
    }
}

/// A certificate and its key, as PEM files and as rustls takes them.
#[derive(Debug)]
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
}

impl Pki {
    /// A new CA named `name`; writes `DIR/name-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("batchline test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
        let pki = Pki {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write the CA file");
        pki
    }

    /// `DIR/NAME-ca.pem`: the CA certificate clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) signed by
    /// this CA, written to `DIR/NAME-LABEL.pem` and `.key`.
    pub fn issue(&self, label: &str, names: &[&str], validity: Validity) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("valid subject alternative names");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("batchline test {label}"));
        if validity == Validity::Expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("sign a leaf");
        let cert_file = self.dir.join(format!("{}-{label}.pem", self.name));
        let key_file = self.dir.join(format!("{}-{label}.key", self.name));
        let key_pem = key.serialize_pem();
        std::fs::write(&cert_file, cert.pem()).expect("write a certificate");
        std::fs::write(&key_file, &key_pem).expect("write a key");
        Issued {
            cert_file,
            key_file,
            chain: vec![cert.der().clone()],
            key_pem,
        }
    }

    /// Roots holding only this CA (for a proxy that verifies clients).
    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("the CA as a root");
        Arc::new(roots)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `server`; with `clients_of`, every
/// client must present a certificate of that CA.
pub fn server_config(server: &Issued, clients_of: Option<&Pki>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match clients_of {
        Some(pki) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(pki.roots(), provider())
                .build()
                .expect("a client verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("the server key");
    Arc::new(
        builder
            .with_single_cert(server.chain.clone(), key)
            .expect("a server config"),
    )
}

/// What the proxy forwards to.
#[derive(Clone, Copy, Debug)]
pub enum Upstream {
    /// TLS from the first byte, then AMQP to this address.
    Amqp(SocketAddr),
    /// `SSLRequest`, `S`, TLS, then the Postgres protocol to this address.
    Postgres(SocketAddr),
}

/// A TLS-terminating proxy on `127.0.0.1:<random port>`, with its own
/// runtime; stops on drop.
pub struct TlsProxy {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for TlsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TlsProxy {
    pub fn start(upstream: Upstream, config: Arc<rustls::ServerConfig>) -> TlsProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let acceptor = TlsAcceptor::from(config);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    // A refused handshake is what some tests want: the
                    // client reports it, the proxy just drops the socket.
                    let _ = forward(client, upstream, acceptor, counted).await;
                });
            }
        });
        TlsProxy {
            addr,
            handshakes,
            runtime: Some(runtime),
        }
    }

    /// TLS handshakes that completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: Upstream,
    acceptor: TlsAcceptor,
    handshakes: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let target = match upstream {
        Upstream::Amqp(addr) => addr,
        Upstream::Postgres(addr) => {
            accept_ssl_request(&mut client).await?;
            addr
        }
    };
    let mut tls = acceptor.accept(client).await?;
    handshakes.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(target).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}

/// Reads the client's `SSLRequest` (declining a `GSSENCRequest` first, as
/// libpq may send one) and answers `S`. Anything else is refused.
async fn accept_ssl_request(client: &mut TcpStream) -> std::io::Result<()> {
    loop {
        let length = client.read_u32().await?;
        let code = client.read_u32().await?;
        match (length, code) {
            (8, SSL_REQUEST) => return client.write_all(b"S").await,
            (8, GSSENC_REQUEST) => client.write_all(b"N").await?,
            _ => {
                return Err(std::io::Error::other(
                    "a plain Postgres startup: this proxy only speaks TLS",
                ));
            }
        }
    }
}
