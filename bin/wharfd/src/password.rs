//! Argon2id password hashing and verification.
//!
//! Verification always does the full Argon2 work, even for an unknown user: it then runs against a
//! dummy hash made at startup with the configured parameters, so that "no such user" and "wrong
//! password" cost the same time and give the same answer.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::blocking::BlockingPool;
use crate::config::AuthSettings;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes new passwords with the configured parameters and verifies stored ones off the executor.
#[derive(Debug, Clone)]
pub struct Passwords {
    params: Params,
    pool: BlockingPool,
    dummy_hash: String,
}

impl Passwords {
    /// Builds the hasher and the dummy hash (one Argon2 run, done here and not per login).
    pub fn new(settings: &AuthSettings) -> Result<Passwords, HashError> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(HashError::Params)?;
        let mut passwords = Passwords {
            params,
            pool: BlockingPool::new(settings.max_concurrent_hashes),
            dummy_hash: String::new(),
        };
        passwords.dummy_hash = passwords.hash(&random_password(24))?;
        Ok(passwords)
    }

    /// A PHC string for `password`, with a fresh random salt. Blocking: call from a blocking context.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let hash = argon.hash_password(password.as_bytes(), &salt).map_err(HashError::Hash)?;
        Ok(hash.to_string())
    }

    /// True if `password` matches `stored`. With `stored = None` (unknown user) the dummy hash is
    /// checked instead and the answer is always false. Runs on the Argon2 pool.
    pub async fn verify(&self, stored: Option<String>, password: String) -> bool {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = self
            .pool
            .run(move || {
                // Parameters come from the PHC string itself, so old hashes keep working.
                PasswordHash::new(&phc).is_ok_and(|hash| {
                    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
                })
            })
            .await;
        known && matched
    }
}

/// A random password of `len` characters from an alphabet without look-alikes (no 0/O, 1/l/I).
pub fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut password = String::with_capacity(len);
    while password.len() < len {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        if (byte[0] as usize) < limit {
            password.push(ALPHABET[byte[0] as usize % ALPHABET.len()] as char);
        }
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let passwords = Passwords::new(&AuthSettings::default()).expect("hasher");
        let phc = passwords.hash("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(passwords.verify(Some(phc.clone()), "correct horse".into()).await);
        assert!(!passwords.verify(Some(phc), "wrong".into()).await);
        assert!(!passwords.verify(None, "anything".into()).await);
        assert!(!passwords.verify(Some("not a phc string".into()), "x".into()).await);
    }

    #[test]
    fn random_passwords_differ() {
        let a = random_password(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_password(20));
    }
}
