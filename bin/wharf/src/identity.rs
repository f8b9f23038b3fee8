//! Login keys on the client: `wharf keygen` makes an Ed25519 key pair, and a loaded [`Identity`]
//! signs the login message of one TLS session (see `wharf_common::keys`).
//!
//! The private key file is TOML, mode 0600: the PKCS#8 document in base64, or with a passphrase, that
//! document sealed with AES-256-GCM under a key derived from the passphrase by Argon2id (m = 19 MiB,
//! t = 2, p = 1, a fresh 16-byte salt). The public key goes beside it in `FILE.pub`, one line that
//! `wharfd user key add` takes as it is.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use wharf_common::keys::{PublicKey, login_message};

/// The format word of a key file.
const FORMAT: &str = "wharf-ed25519-v1";
const CIPHER_NONE: &str = "none";
const CIPHER_SEALED: &str = "argon2id-aes256gcm";
const SALT_LEN: usize = 16;

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a wharf private key ({why})")]
    Malformed { path: String, why: String },
    #[error("{path}: wrong passphrase")]
    WrongPassphrase { path: String },
    #[error("{path}: the key has a passphrase; set WHARF_KEY_PASSPHRASE or use a terminal")]
    NeedsPassphrase { path: String },
    #[error("cannot make a key: {0}")]
    Crypto(String),
}

impl From<KeyFileError> for crate::error::ClientError {
    fn from(err: KeyFileError) -> Self {
        use crate::error::ClientError;
        match err {
            KeyFileError::Io { path, source } => ClientError::local(path, source),
            KeyFileError::Crypto(why) => ClientError::Internal(why),
            // A key that cannot be used is a login that cannot happen.
            other => ClientError::Auth(other.to_string()),
        }
    }
}

/// The private key file as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    public: String,
    #[serde(default)]
    comment: String,
    cipher: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    salt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    nonce: String,
    secret: String,
}

/// A private key, ready to sign logins.
pub struct Identity {
    pair: Ed25519KeyPair,
    public: PublicKey,
    path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("key", &self.public.fingerprint()).finish_non_exhaustive()
    }
}

/// Where `wharf` looks for a key when `-i` is not given.
pub fn default_key_path() -> PathBuf {
    crate::config_dir().join("id_ed25519")
}

/// `FILE.pub` for the private key `FILE`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes a key pair: the private key at `path` (mode 0600, sealed if `passphrase` is given) and the
/// public key in `path.pub`. An existing file is never overwritten.
pub fn generate(
    path: &Path,
    passphrase: Option<&str>,
    comment: &str,
) -> Result<PublicKey, KeyFileError> {
    let rng = SystemRandom::new();
    let crypto = |what: &str| KeyFileError::Crypto(what.to_owned());
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| crypto("no randomness"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| crypto("bad key"))?;
    let public = PublicKey::from_bytes(pair.public_key().as_ref()).map_err(|e| crypto(&e.0))?;
    let mut file = KeyFile {
        format: FORMAT.to_owned(),
        public: public.to_base64(),
        comment: comment.to_owned(),
        cipher: CIPHER_NONE.to_owned(),
        salt: String::new(),
        nonce: String::new(),
        secret: STANDARD.encode(pkcs8.as_ref()),
    };
    if let Some(passphrase) = passphrase.filter(|p| !p.is_empty()) {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut salt).map_err(|_| crypto("no randomness"))?;
        rng.fill(&mut nonce).map_err(|_| crypto("no randomness"))?;
        let key = sealing_key(passphrase, &salt)?;
        let mut sealed = pkcs8.as_ref().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(public.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| crypto("sealing failed"))?;
        file.cipher = CIPHER_SEALED.to_owned();
        file.salt = STANDARD.encode(salt);
        file.nonce = STANDARD.encode(nonce);
        file.secret = STANDARD.encode(sealed);
    }
    let text = toml::to_string(&file).map_err(|err| crypto(&err.to_string()))?;
    let io = |path: &Path| {
        let shown = path.display().to_string();
        move |source| KeyFileError::Io { path: shown, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut private = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    private
        .write_all(format!("# wharf private key: keep it secret\n{text}").as_bytes())
        .map_err(io(path))?;
    let pub_path = public_path(path);
    std::fs::write(&pub_path, public.to_line(comment) + "\n").map_err(io(&pub_path))?;
    Ok(public)
}

fn sealing_key(passphrase: &str, salt: &[u8]) -> Result<LessSafeKey, KeyFileError> {
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|err| KeyFileError::Crypto(err.to_string()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key)
        .map_err(|_| KeyFileError::Crypto("bad sealing key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

impl Identity {
    /// Loads the key at `path`; `passphrase` is asked for only if the key is sealed.
    pub fn load(
        path: &Path,
        passphrase: impl FnOnce() -> Option<String>,
    ) -> Result<Identity, KeyFileError> {
        let shown = path.display().to_string();
        let malformed =
            |why: &str| KeyFileError::Malformed { path: shown.clone(), why: why.into() };
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyFileError::Io { path: shown.clone(), source })?;
        let file: KeyFile = toml::from_str(&text).map_err(|err| malformed(&err.to_string()))?;
        if file.format != FORMAT {
            return Err(malformed(&format!("format {:?}", file.format)));
        }
        let public = PublicKey::from_base64(&file.public).map_err(|err| malformed(&err.0))?;
        let decode = |text: &str| STANDARD.decode(text).map_err(|err| malformed(&err.to_string()));
        let mut secret = decode(&file.secret)?;
        let pkcs8 = match file.cipher.as_str() {
            CIPHER_NONE => secret,
            CIPHER_SEALED => {
                let passphrase =
                    passphrase().ok_or(KeyFileError::NeedsPassphrase { path: shown.clone() })?;
                let nonce: [u8; NONCE_LEN] =
                    decode(&file.nonce)?.try_into().map_err(|_| malformed("nonce length"))?;
                let key = sealing_key(&passphrase, &decode(&file.salt)?)?;
                let opened = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(public.as_bytes()),
                        &mut secret,
                    )
                    .map_err(|_| KeyFileError::WrongPassphrase { path: shown.clone() })?;
                opened.to_vec()
            }
            other => return Err(malformed(&format!("cipher {other:?}"))),
        };
        let pair =
            Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| malformed("not an Ed25519 key"))?;
        if pair.public_key().as_ref() != public.as_bytes() {
            return Err(malformed("the public key does not match the private key"));
        }
        Ok(Identity { pair, public, path: path.to_owned() })
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signature, in base64, that logs in as `user` on a TLS session that exported `exported`.
    pub fn sign_login(&self, user: &str, exported: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(&login_message(user, exported)).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn keys_round_trip_with_and_without_a_passphrase() {
        let dir = tempfile::tempdir().expect("dir");
        let plain = dir.path().join("plain");
        let public = generate(&plain, None, "test").expect("generate");
        let mode = std::fs::metadata(&plain).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let line = std::fs::read_to_string(public_path(&plain)).expect("pub");
        assert_eq!(PublicKey::parse_line(&line).expect("line").0, public);
        let identity = Identity::load(&plain, || panic!("no passphrase needed")).expect("load");
        assert_eq!(identity.public(), &public);
        assert!(generate(&plain, None, "again").is_err(), "never overwrites");

        let sealed = dir.path().join("sealed");
        let public = generate(&sealed, Some("correct horse"), "").expect("generate");
        let stored = std::fs::read_to_string(&sealed).expect("read");
        assert!(stored.contains("cipher = \"argon2id-aes256gcm\""), "{stored}");
        let identity = Identity::load(&sealed, || Some("correct horse".into())).expect("opens");
        assert_eq!(identity.public(), &public);
        let signature = identity.sign_login("ann", &[1; 32]);
        let bytes = STANDARD.decode(signature).expect("base64");
        assert!(public.verifies(&login_message("ann", &[1; 32]), &bytes));
        assert!(matches!(
            Identity::load(&sealed, || Some("wrong".into())),
            Err(KeyFileError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            Identity::load(&sealed, || None),
            Err(KeyFileError::NeedsPassphrase { .. })
        ));
    }
}
