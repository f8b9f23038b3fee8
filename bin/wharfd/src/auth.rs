//! Authentication: "who is this?" and nothing more.
//!
//! [`Authenticator::login`] applies the throttle, loads the user record, checks the [`Proof`] (a
//! password, verified off the executor, or a key's signature bound to the TLS session) and writes one
//! audit line per attempt (target `audit`, routed to `var/log/audit.log`). Failed key logins meet the
//! same throttle as wrong passwords. What a user may do once known (home, quota) is decided elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use wharf_common::limits::MAX_PASSWORD_LEN;
use wharf_common::proto::ErrorCode;

use crate::blocking::BlockingPool;
use crate::config::AuthSettings;
use crate::password::Passwords;
use crate::throttle::{self, Throttle, Verdict};
use crate::users::{UserRecord, UserStore};
use wharf_common::keys::PublicKey;

/// Why a login failed, as told to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password; deliberately indistinguishable.
    #[error("login failed: wrong user name or password")]
    Failed,
    /// The source address failed too often recently.
    #[error("too many failed logins from your address; try again later")]
    TooManyAttempts,
    /// The password is longer than the protocol allows.
    #[error("password longer than {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    /// The user store could not be read.
    #[error("the server cannot check logins right now")]
    Unavailable,
    /// This server takes keys only (`auth.passwords = false`).
    #[error("password logins are disabled on this server: log in with a key")]
    PasswordsDisabled,
}

/// What a client offers to prove who it is.
#[derive(Debug)]
pub enum Proof {
    Password(String),
    /// A key and its signature of `message`, the login message of this TLS session.
    Key {
        key: PublicKey,
        signature: Vec<u8>,
        message: Vec<u8>,
    },
    /// A key proof that could not be read (bad base64, wrong lengths): it fails like a wrong one.
    Malformed,
}

/// What a session logged in with: a later change to the account that takes it away ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The stored password hash at the time of the login.
    Password(String),
    Key(PublicKey),
}

impl Credential {
    /// Whether `record` still grants this credential.
    fn granted_by(&self, record: &UserRecord) -> bool {
        match self {
            Credential::Password(hash) => record.password.as_ref() == Some(hash),
            Credential::Key(key) => record.has_key(key),
        }
    }
}

impl LoginError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LoginError::Failed | LoginError::PasswordsDisabled => ErrorCode::AuthFailed,
            LoginError::TooManyAttempts => ErrorCode::TooManyAttempts,
            LoginError::PasswordTooLong => ErrorCode::BadRequest,
            LoginError::Unavailable => ErrorCode::Io,
        }
    }
}

/// Checks logins against the user store.
#[derive(Debug)]
pub struct Authenticator {
    users: UserStore,
    passwords: Passwords,
    throttle: Mutex<Throttle>,
    /// One lock per source address with an attempt under way (see [`Authenticator::check`]).
    checking: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
    files: BlockingPool,
    passwords_allowed: bool,
    /// Failures other nodes saw, when nodes share a database.
    shared: Option<crate::db::throttle::SharedFailures>,
}

/// What became of a logged-in session's account since it logged in.
#[derive(Debug)]
pub enum AccountState {
    /// Unchanged credentials; the current record.
    Valid(UserRecord),
    /// The record could not be read; nothing is known.
    Unknown,
    Deleted,
    /// The password changed, or the key was removed.
    CredentialRevoked,
}

impl Authenticator {
    pub fn new(
        users: UserStore,
        passwords: Passwords,
        settings: &AuthSettings,
        files: BlockingPool,
    ) -> Self {
        Authenticator {
            users,
            passwords,
            throttle: Mutex::new(Throttle::new(settings)),
            checking: Mutex::default(),
            files,
            passwords_allowed: settings.passwords,
            shared: None,
        }
    }

    /// Counts failures across the nodes sharing `failures`' database too.
    pub fn sharing(mut self, failures: crate::db::throttle::SharedFailures) -> Self {
        self.shared = Some(failures);
        self
    }

    /// Checks one login attempt from `ip`.
    pub async fn login(
        &self,
        user: &str,
        proof: Proof,
        ip: IpAddr,
    ) -> Result<(UserRecord, Credential), LoginError> {
        let (method, key) = match &proof {
            Proof::Key { key, .. } => ("key", Some(key.fingerprint())),
            Proof::Malformed => ("key", None),
            Proof::Password(_) => ("password", None),
        };
        let result = self.check(user, proof, ip).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(LoginError::Failed) => "failure",
            Err(LoginError::TooManyAttempts) => "throttled",
            Err(LoginError::PasswordTooLong) => "malformed",
            Err(LoginError::Unavailable) => "error",
            Err(LoginError::PasswordsDisabled) => "refused",
        };
        // `{:?}` quotes and escapes the name, so a hostile name cannot forge audit lines.
        tracing::info!(target: "audit", user = ?user, %ip, method, key, result = outcome, "login");
        result
    }

    async fn check(
        &self,
        user: &str,
        proof: Proof,
        ip: IpAddr,
    ) -> Result<(UserRecord, Credential), LoginError> {
        if let Proof::Password(password) = &proof {
            if password.len() > MAX_PASSWORD_LEN {
                return Err(LoginError::PasswordTooLong);
            }
            if !self.passwords_allowed {
                return Err(LoginError::PasswordsDisabled);
            }
        }
        // Attempts from one address are checked one at a time, so that each sees the failures of
        // the ones before it. Without this, a burst of concurrent guesses would all pass the
        // throttle before the first failure is recorded, and all be hashed.
        let turn = self.turn_of(throttle::source_key(ip));
        let _turn = turn.lock().await;
        let result = self.check_in_turn(user, proof, ip).await;
        drop(_turn);
        self.release_turn(throttle::source_key(ip), turn);
        result
    }

    fn turn_of(&self, source: IpAddr) -> Arc<tokio::sync::Mutex<()>> {
        let mut checking = self.checking.lock();
        checking.entry(source).or_default().clone()
    }

    /// Forgets an address's lock once no attempt holds or awaits it, so the table only holds
    /// addresses with attempts under way (bounded by the connection caps).
    fn release_turn(&self, source: IpAddr, turn: Arc<tokio::sync::Mutex<()>>) {
        let mut checking = self.checking.lock();
        drop(turn);
        if checking.get(&source).is_some_and(|turn| Arc::strong_count(turn) == 1) {
            checking.remove(&source);
        }
    }

    async fn check_in_turn(
        &self,
        user: &str,
        proof: Proof,
        ip: IpAddr,
    ) -> Result<(UserRecord, Credential), LoginError> {
        let shared = match &self.shared {
            Some(shared) => shared.counts(ip, user).await,
            None => (0, 0),
        };
        let verdict = self.lock_throttle().verdict_with(ip, user, Instant::now(), shared);
        match verdict {
            Verdict::Refuse => return Err(LoginError::TooManyAttempts),
            Verdict::Delay(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Delay(_) => {}
        }
        let store = self.users.clone();
        let name = user.to_owned();
        // An invalid name is treated exactly like an unknown one.
        let record = match self.files.run(move || store.load(&name)).await {
            Ok(record) => record,
            Err(crate::users::UserError::InvalidName(_)) => None,
            Err(err) => {
                tracing::error!(%err, "cannot read user record");
                return Err(LoginError::Unavailable);
            }
        };
        let credential = match proof {
            Proof::Password(password) => {
                // An unknown user, or one with keys only, costs a hash all the same.
                let stored = record.as_ref().and_then(|r| r.password.clone());
                let matched = self.passwords.verify(stored.clone(), password).await;
                stored.filter(|_| matched).map(Credential::Password)
            }
            Proof::Key { key, signature, message } => {
                let listed = record.as_ref().is_some_and(|r| r.has_key(&key));
                (listed && key.verifies(&message, &signature)).then_some(Credential::Key(key))
            }
            Proof::Malformed => None,
        };
        if let (Some(record), Some(credential)) = (record, credential) {
            self.lock_throttle().record_success(ip, user);
            if let Some(shared) = &self.shared {
                shared.record_success(ip, user).await;
            }
            return Ok((record, credential));
        }
        self.lock_throttle().record_failure(ip, user, Instant::now());
        if let Some(shared) = &self.shared {
            shared.record_failure(ip, user).await;
        }
        Err(LoginError::Failed)
    }

    /// Whether a session that logged in with `credential` may go on: not once its user is deleted,
    /// its password changed or its key removed. A record that cannot be read right now keeps the
    /// session (an I/O hiccup must not log everybody out).
    pub async fn account_state(&self, user: &str, credential: &Credential) -> AccountState {
        let store = self.users.clone();
        let name = user.to_owned();
        match self.files.run(move || store.load(&name)).await {
            Ok(None) => AccountState::Deleted,
            Ok(Some(record)) if !credential.granted_by(&record) => AccountState::CredentialRevoked,
            Ok(Some(record)) => AccountState::Valid(record),
            Err(err) => {
                tracing::warn!(%err, user, "cannot re-read user record; keeping the session");
                AccountState::Unknown
            }
        }
    }

    /// Reloads a user's record, e.g. to pick up a changed quota.
    pub async fn reload(&self, user: &str) -> Option<UserRecord> {
        let store = self.users.clone();
        let name = user.to_owned();
        self.files.run(move || store.load(&name)).await.ok().flatten()
    }

    fn lock_throttle(&self) -> parking_lot::MutexGuard<'_, Throttle> {
        // The throttle holds only counters; a panic elsewhere cannot leave it inconsistent.
        self.throttle.lock()
    }
}
