//! Deciding whether to trust a server: ssh-style pinning in `known_hosts`, or a CA file.
//!
//! With pinning, the certificate's SHA-256 fingerprint is compared with the one recorded for
//! `host:port`. An unknown host is let through the handshake (its TLS 1.3 signature is still checked,
//! so it proves it holds the key) and the caller decides, *before any password is sent*, whether to
//! trust it. A changed certificate fails the handshake itself.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a server's certificate was not trusted.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// No fingerprint is recorded for this host and none may be added without asking.
    #[error(
        "the authenticity of {host} cannot be established.\n\
         Its certificate fingerprint is {fingerprint}.\n\
         Check it against the one `wharfd setup` printed on the server, then connect again with\n\
         --accept-new-host (or interactively) to trust it."
    )]
    Unknown { host: String, fingerprint: String },
    /// The user said no.
    #[error("host {host} not trusted")]
    Declined { host: String },
    /// The certificate differs from the pinned one.
    #[error(
        "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: THE SERVER'S CERTIFICATE HAS CHANGED!       @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         The certificate of {host} is not the one you trusted before.\n\
         Someone could be intercepting this connection (a man-in-the-middle attack),\n\
         or the server's certificate was regenerated (`wharfd setup --force`).\n\
         Trusted:   {expected}\n\
         Presented: {presented}\n\
         If you know the change is legitimate, delete line {line} of {file}\n\
         and connect again. Refusing to connect."
    )]
    Changed { host: String, expected: String, presented: String, file: String, line: usize },
    /// The known-hosts file could not be read or written.
    #[error("known hosts file {file}: {source}")]
    File { file: String, source: std::io::Error },
    /// The CA file could not be loaded.
    #[error("CA file: {0}")]
    Ca(#[from] wharf_common::tls::TlsError),
}

/// One pinned fingerprint, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub fingerprint: String,
    pub line: usize,
}

/// The known-hosts file: lines of `host:port SHA256:...`; `#` starts a comment.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The default file: `$XDG_CONFIG_HOME/wharf/known_hosts` or `~/.config/wharf/known_hosts`.
    pub fn default_path() -> PathBuf {
        crate::config_dir().join("known_hosts")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_error(&self, source: std::io::Error) -> HostKeyError {
        HostKeyError::File { file: self.path.display().to_string(), source }
    }

    /// The pin for `host_key`, if any.
    pub fn lookup(&self, host_key: &str) -> Result<Option<Pin>, HostKeyError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.file_error(err)),
        };
        let pin = text.lines().enumerate().find_map(|(index, line)| {
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next()) {
                (Some(host), Some(fp)) if host == host_key && !host.starts_with('#') => {
                    Some(Pin { fingerprint: fp.to_owned(), line: index + 1 })
                }
                _ => None,
            }
        });
        Ok(pin)
    }

    /// Records `fingerprint` for `host_key`, creating the file and its directory if needed.
    pub fn add(&self, host_key: &str, fingerprint: &str) -> Result<(), HostKeyError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| self.file_error(err))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| self.file_error(err))?;
        writeln!(file, "{host_key} {fingerprint}").map_err(|err| self.file_error(err))
    }
}

/// What the handshake saw of the server's certificate.
#[derive(Debug, Default)]
pub struct Observed {
    pub fingerprint: Option<String>,
}

/// Verifies the server against a pinned fingerprint, or records it when there is no pin yet.
#[derive(Debug)]
pub struct PinVerifier {
    pin: Option<String>,
    observed: Arc<Mutex<Observed>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub fn new(pin: Option<String>) -> (Arc<PinVerifier>, Arc<Mutex<Observed>>) {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let verifier = PinVerifier {
            pin,
            observed: observed.clone(),
            provider: wharf_common::tls::provider(),
        };
        (Arc::new(verifier), observed)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = wharf_common::tls::fingerprint(end_entity);
        let matches = self.pin.as_ref().is_none_or(|pin| *pin == fingerprint);
        self.observed.lock().fingerprint = Some(fingerprint);
        if matches {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is ever negotiated.
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A verifier that checks the server against the certificates in a CA file (normal WebPKI checks,
/// including the host name).
pub fn ca_verifier(ca_file: &Path) -> Result<Arc<dyn ServerCertVerifier>, HostKeyError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in wharf_common::tls::load_certs(ca_file)? {
        roots.add(cert).map_err(wharf_common::tls::TlsError::Rustls)?;
    }
    roots_verifier(roots)
}

/// Verifies the server against the operating system's CA certificates (`--system-ca`): for servers
/// with a certificate from a public CA, which survives renewals where a pin would not.
pub fn system_verifier() -> Result<Arc<dyn ServerCertVerifier>, HostKeyError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or_else(String::new, |err| format!(": {err}"));
        return Err(wharf_common::tls::TlsError::Quic(format!(
            "no CA certificates found in the system's store{why}"
        ))
        .into());
    }
    roots_verifier(roots)
}

fn roots_verifier(
    roots: rustls::RootCertStore,
) -> Result<Arc<dyn ServerCertVerifier>, HostKeyError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        wharf_common::tls::provider(),
    )
    .build()
    .map_err(|err| wharf_common::tls::TlsError::Quic(err.to_string()))?;
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = KnownHosts::new(dir.path().join("sub/known_hosts"));
        assert_eq!(hosts.lookup("h:1").expect("lookup"), None);
        hosts.add("h:1", "SHA256:aaa").expect("add");
        hosts.add("[::1]:2", "SHA256:bbb").expect("add");
        assert_eq!(
            hosts.lookup("h:1").expect("lookup"),
            Some(Pin { fingerprint: "SHA256:aaa".into(), line: 1 })
        );
        assert_eq!(hosts.lookup("[::1]:2").expect("lookup").map(|p| p.line), Some(2));
        assert_eq!(hosts.lookup("h:2").expect("lookup"), None);
    }
}
