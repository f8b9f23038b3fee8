//! Key logins: how a client proves, inside its TLS session, that it holds an Ed25519 private key.
//!
//! Both ends derive a value from the TLS session with the keying-material exporter (RFC 5705 /
//! RFC 8446 section 7.5): [`EXPORTER_LABEL`], the user name as context, [`EXPORTER_LEN`] bytes. The
//! client signs [`login_message`] (a fixed prefix, the user name and that value) and sends the public
//! key and the signature in `login_key`. The value is different in every TLS session and is known
//! only to its two ends, so a recorded proof is worthless on another connection, and a server the
//! client connected to cannot pass the proof on to a different server.
//!
//! Public keys travel and are stored as one line: `wharf-ed25519 BASE64 [COMMENT]`, and are named by
//! their fingerprint, `SHA256:` and the unpadded base64 of the SHA-256 of the 32 key bytes, as ssh does.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest as _, Sha256};

/// The key type word of a public key line.
pub const KEY_TYPE: &str = "wharf-ed25519";
/// The exporter label both ends use.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-wharf-key-login";
/// Bytes taken from the exporter.
pub const EXPORTER_LEN: usize = 32;
/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// What the signed message starts with, so that a signature made for a wharf login cannot be taken
/// for anything else.
const MESSAGE_PREFIX: &[u8] = b"wharf key login v1\0";

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

/// A public key line or value that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a wharf public key: {0}")]
pub struct KeyError(pub String);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError(format!("{} bytes, not {PUBLIC_KEY_LEN}", bytes.len())))?;
        Ok(PublicKey(bytes))
    }

    /// The key from its base64 form (as `login_key` carries it).
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|err| KeyError(err.to_string()))?;
        PublicKey::from_bytes(&bytes)
    }

    /// Parses `wharf-ed25519 BASE64 [COMMENT]`; returns the key and the comment.
    pub fn parse_line(line: &str) -> Result<(PublicKey, String), KeyError> {
        let mut words = line.trim().splitn(3, char::is_whitespace);
        match (words.next(), words.next()) {
            (Some(KEY_TYPE), Some(key)) => {
                let comment = words.next().unwrap_or_default().trim().to_owned();
                Ok((PublicKey::from_base64(key)?, comment))
            }
            (Some(other), _) => Err(KeyError(format!("expected {KEY_TYPE}, found {other:?}"))),
            _ => Err(KeyError("an empty line".into())),
        }
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// `wharf-ed25519 BASE64 COMMENT`.
    pub fn to_line(&self, comment: &str) -> String {
        format!("{KEY_TYPE} {} {comment}", self.to_base64()).trim_end().to_owned()
    }

    /// `SHA256:...`, as ssh names keys.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(self.0)))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// The message a client signs to log in as `user` on a TLS session whose exporter gave `exported`.
pub fn login_message(user: &str, exported: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(MESSAGE_PREFIX.len() + user.len() + 1 + exported.len());
    message.extend_from_slice(MESSAGE_PREFIX);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(exported);
    message
}

/// Decodes a base64 signature of the right length.
pub fn signature_from_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|err| KeyError(err.to_string()))?;
    if bytes.len() != SIGNATURE_LEN {
        return Err(KeyError(format!("a signature of {} bytes, not {SIGNATURE_LEN}", bytes.len())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair as _;

    fn pair() -> ring::signature::Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse")
    }

    #[test]
    fn lines_round_trip_and_signatures_bind_user_and_session() {
        let pair = pair();
        let public = PublicKey::from_bytes(pair.public_key().as_ref()).expect("public");
        let line = public.to_line("ann@laptop");
        assert_eq!(PublicKey::parse_line(&line).expect("parse"), (public, "ann@laptop".into()));
        assert!(public.fingerprint().starts_with("SHA256:") && public.fingerprint().len() == 50);
        assert!(PublicKey::parse_line("ssh-ed25519 AAAA x").is_err());
        assert!(PublicKey::parse_line("wharf-ed25519 AAAA").is_err(), "too short");

        let message = login_message("ann", &[7; EXPORTER_LEN]);
        let signature = pair.sign(&message);
        assert!(public.verifies(&message, signature.as_ref()));
        assert!(!public.verifies(&login_message("bob", &[7; EXPORTER_LEN]), signature.as_ref()));
        assert!(!public.verifies(&login_message("ann", &[8; EXPORTER_LEN]), signature.as_ref()));
        // PROTOCOL.md spells the message out byte by byte.
        let mut spelled = b"wharf key login v1".to_vec();
        spelled.push(0);
        spelled.extend_from_slice(b"ann\0");
        spelled.extend_from_slice(&[7; EXPORTER_LEN]);
        assert_eq!(message, spelled);
    }
}
