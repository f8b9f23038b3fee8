//! TLS 1.3 configuration for both ends, certificate loading and fingerprints.
//!
//! Only TLS 1.3 is offered (QUIC requires it), with the ALPN [`crate::limits::ALPN`], and 0-RTT is
//! disabled on both sides: a replayable first flight has no place in a protocol that carries passwords
//! and mutations.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::limits::ALPN;

/// Why TLS material could not be loaded or configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        what: &'static str,
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{0} contains no certificate")]
    NoCertificate(String),
    /// rustls refused the configuration (bad key, unsupported algorithm).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration (no TLS 1.3 suite usable for QUIC).
    #[error("QUIC TLS configuration rejected: {0}")]
    Quic(String),
}

/// The crypto provider used everywhere: *ring*.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 fingerprint of a DER certificate, as shown to users: `SHA256:` and unpadded base64,
/// the form OpenSSH uses for host keys.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// Reads every certificate from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err =
        |source| TlsError::Pem { what: "certificates", path: path.display().to_string(), source };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// Reads the private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        what: "private key",
        path: path.display().to_string(),
        source,
    })
}

/// The server's QUIC crypto: TLS 1.3 only, ALPN `wharf/1`, no client certificates, no 0-RTT.
pub fn server_crypto(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The client's QUIC crypto, checking the server with `verifier`: TLS 1.3 only, ALPN `wharf/1`, no 0-RTT.
pub fn client_crypto(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_early_data = false;
    quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The value both ends derive from the connection's TLS session for a key login as `user`
/// ([`crate::keys`]).
pub fn login_exporter(
    conn: &quinn::Connection,
    user: &str,
) -> Result<[u8; crate::keys::EXPORTER_LEN], crate::keys::KeyError> {
    let mut out = [0u8; crate::keys::EXPORTER_LEN];
    conn.export_keying_material(&mut out, crate::keys::EXPORTER_LABEL, user.as_bytes())
        .map_err(|_| crate::keys::KeyError("the TLS session exports no keying material".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_ssh_style() {
        let fp = fingerprint(b"certificate bytes");
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), "SHA256:".len() + 43, "32 bytes in unpadded base64");
        assert_ne!(fp, fingerprint(b"other bytes"));
    }
}
