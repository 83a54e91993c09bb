//! TLS settings of the `amqps://` connections: an extra CA that signs the
//! broker's certificate (added to the system roots, which stay trusted) and
//! an optional client certificate. Both arrive as PEM text and are checked
//! when set, so a wrong file is a one-line configuration error before any
//! handshake; the private key never reaches a log or a `Debug` output.

use std::fmt;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// TLS material for RabbitMQ. Empty (the default) means: system roots, no
/// client certificate. Only used when the URL is `amqps://`.
#[derive(Clone, Default)]
pub struct RabbitTls {
    ca_pem: Option<String>,
    identity: Option<ClientIdentity>,
}

#[derive(Clone)]
struct ClientIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl RabbitTls {
    /// Trusts the certificates in `pem` (one or more `CERTIFICATE` blocks)
    /// besides the system roots.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self> {
        certificates(pem, "CA file")?;
        let text = std::str::from_utf8(pem)
            .map_err(|_| Error::config("CA file: PEM must be ASCII text"))?;
        self.ca_pem = Some(text.to_owned());
        Ok(self)
    }

    /// Presents the client certificate chain `cert_pem` with its private key
    /// `key_pem` (PKCS#8, PKCS#1 or SEC1 PEM, unencrypted).
    pub fn with_client_identity(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        certificates(cert_pem, "client certificate file")?;
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            Error::config(format!("client key file: no usable PEM private key ({e})"))
        })?;
        self.identity = Some(ClientIdentity {
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        });
        Ok(self)
    }

    /// True when a CA or a client certificate was given.
    pub fn is_configured(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }

    /// The form lapin takes.
    pub(crate) fn lapin_config(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self.identity.as_ref().map(|id| OwnedIdentity::PKCS8 {
                pem: id.cert_pem.clone(),
                key: id.key_pem.clone(),
            }),
            cert_chain: self.ca_pem.clone(),
        }
    }
}

impl fmt::Debug for RabbitTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitTls")
            .field("extra_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// At least one certificate, and every `CERTIFICATE` block well formed:
/// lapin's TLS layer skips what it cannot parse, which would turn a broken
/// file into a puzzling "unknown issuer" at the handshake.
fn certificates(pem: &[u8], what: &str) -> Result<usize> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| Error::config(format!("{what}: malformed PEM certificate ({e})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::config(format!(
            "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        )));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed certificate and its key, as PEM.
    fn self_signed() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let error = RabbitTls::default().with_ca_pem(b"hello").unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn a_broken_certificate_block_is_refused() {
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let error = RabbitTls::default()
            .with_ca_pem(broken.as_bytes())
            .unwrap_err();
        assert!(error.to_string().contains("malformed"), "{error}");
    }

    #[test]
    fn a_ca_is_kept_and_the_key_never_shows() {
        let (cert, key) = self_signed();
        let tls = RabbitTls::default().with_ca_pem(cert.as_bytes()).unwrap();
        assert!(tls.is_configured());
        assert_eq!(
            tls.lapin_config().cert_chain.as_deref(),
            Some(cert.as_str())
        );

        let tls = tls
            .with_client_identity(cert.as_bytes(), key.as_bytes())
            .unwrap();
        let shown = format!("{tls:?}");
        let key_body = key.lines().nth(1).unwrap();
        assert!(!shown.contains(key_body), "{shown}");
        assert!(shown.contains("client_certificate: true"), "{shown}");
    }

    #[test]
    fn a_client_certificate_needs_a_key() {
        let (cert, _) = self_signed();
        let error = RabbitTls::default()
            .with_client_identity(cert.as_bytes(), b"not a key")
            .unwrap_err();
        assert!(error.to_string().contains("private key"), "{error}");
    }

    #[test]
    fn nothing_configured_by_default() {
        let tls = RabbitTls::default();
        assert!(!tls.is_configured());
        assert_eq!(tls.lapin_config(), OwnedTLSConfig::default());
    }
}
