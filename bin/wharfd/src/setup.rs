//! `wharfd setup`: a self-signed certificate, the default configuration and the `var/` layout.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;

use crate::config::DEFAULT_CONFIG_TOML;
use crate::layout::Layout;

/// Bytes of the stateless-reset secret.
pub const RESET_KEY_LEN: usize = 64;

/// The secrets of the QUIC endpoint that must outlive a restart: the key stateless resets are made
/// with, and the key connection ids are signed with. With both the same after a restart, the server
/// recognises packets of connections it no longer knows as its own and answers them with a reset
/// their clients accept at once, instead of leaving them to time out (30 s) behind a frozen transfer.
/// Made on first use.
pub fn endpoint_config(layout: &Layout) -> anyhow::Result<quinn::EndpointConfig> {
    if !layout.reset_key().exists() {
        let mut secret = [0u8; RESET_KEY_LEN];
        argon2::password_hash::rand_core::RngCore::fill_bytes(
            &mut argon2::password_hash::rand_core::OsRng,
            &mut secret,
        );
        write_private(&layout.reset_key(), &secret)?;
    }
    let secret = fs::read(layout.reset_key())
        .with_context(|| format!("reading {}", layout.reset_key().display()))?;
    anyhow::ensure!(
        secret.len() == RESET_KEY_LEN,
        "{} is not a {RESET_KEY_LEN}-byte key: delete it and run wharfd setup",
        layout.reset_key().display()
    );
    let (reset, cid) = secret.split_at(RESET_KEY_LEN - 8);
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset);
    let cid_key = u64::from_le_bytes(cid.try_into().context("connection id key")?);
    let mut config = quinn::EndpointConfig::new(std::sync::Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}

/// What setup did.
#[derive(Debug)]
pub struct SetupReport {
    /// SHA-256 fingerprint of the certificate in use, as the client shows it.
    pub fingerprint: String,
    pub cert_created: bool,
    pub config_created: bool,
}

/// Creates what is missing under `layout`. An existing certificate is kept unless `force`.
pub fn setup(layout: &Layout, extra_hosts: &[String], force: bool) -> anyhow::Result<SetupReport> {
    for dir in layout.dirs() {
        let made = if layout.is_private(&dir) {
            crate::layout::private_dir(&dir)
        } else {
            fs::create_dir_all(&dir)
        };
        made.with_context(|| format!("creating {}", dir.display()))?;
    }
    let cert_created = force || !layout.cert().exists() || !layout.key().exists();
    if cert_created {
        write_certificate(layout, extra_hosts)?;
    }
    endpoint_config(layout)?;
    let config_created = !layout.config().exists();
    if config_created {
        fs::write(layout.config(), DEFAULT_CONFIG_TOML)
            .with_context(|| format!("writing {}", layout.config().display()))?;
    }
    let certs = wharf_common::tls::load_certs(&layout.cert())?;
    Ok(SetupReport {
        fingerprint: wharf_common::tls::fingerprint(&certs[0]),
        cert_created,
        config_created,
    })
}

/// The names the certificate is valid for: loopback, this machine's hostname, and `extra`.
pub fn subject_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = gethostname::gethostname().to_str().filter(|h| !h.is_empty()) {
        names.push(host.to_owned());
    }
    names.extend(extra.iter().cloned());
    names.dedup();
    names
}

fn write_certificate(layout: &Layout, extra_hosts: &[String]) -> anyhow::Result<()> {
    let names = subject_names(extra_hosts);
    let mut params = rcgen::CertificateParams::new(names.clone()).context("certificate names")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "wharfd");
    let key = rcgen::KeyPair::generate().context("generating the key")?;
    let cert = params.self_signed(&key).context("signing the certificate")?;
    write_private(&layout.key(), key.serialize_pem().as_bytes())?;
    fs::write(layout.cert(), cert.pem())
        .with_context(|| format!("writing {}", layout.cert().display()))?;
    tracing::info!(names = ?names, "generated a self-signed certificate");
    Ok(())
}

/// Writes a file readable by its owner only (the private key), replacing any old one.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}
