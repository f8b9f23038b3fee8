//! How a run of `wharf` logs in: with a key (`-i FILE`, or the default key if there is one), then,
//! if there is no key or the server refuses it, with `WHARF_PASSWORD` or a password asked on the
//! terminal (up to three times, like ssh) when standard input is one.
//!
//! The last login a run can try carries the work right behind it ([`Session::login_then`]): a
//! one-shot command's first request leaves with the login, one round trip sooner. A login that
//! another may follow (a key before a password) and a password typed at a prompt are waited for,
//! since the work must not run ahead of a login that is then refused.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::error::{ClientError, Result};
use crate::identity::Identity;
use crate::session::{Secret, Session};

/// Logs in as `user`, then runs `work` and returns what it returned.
pub fn log_in_then<T>(
    session: &Session,
    user: &str,
    identity: Option<&Path>,
    runtime: &Runtime,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let default = crate::identity::default_key_path();
    let key_path = identity.or_else(|| default.exists().then_some(default.as_path()));
    let password = std::env::var("WHARF_PASSWORD").ok();
    // Asking needs a person at the keyboard: with standard input not a terminal (a script, a pipe,
    // a test harness), a prompt on the controlling terminal would wait for nobody.
    let can_ask = std::io::stdin().is_terminal();
    if let Some(path) = key_path {
        let identity = Arc::new(Identity::load(path, key_passphrase)?);
        let refused = |message: String| {
            eprintln!("{} (key {})", crate::format::printable(&message), path.display());
        };
        if password.is_none() && !can_ask {
            // Nothing to fall back on: the work may follow the key at once.
            return match runtime.block_on(session.login_then(user, Secret::Key(identity), work)) {
                Ok(outcome) => outcome,
                Err(ClientError::Auth(message)) => {
                    refused(message);
                    Err(no_password())
                }
                Err(err) => Err(err),
            };
        }
        match runtime.block_on(session.login_key(user, identity)) {
            Ok(_) => return runtime.block_on(work),
            Err(ClientError::Auth(message)) => refused(message),
            Err(err) => return Err(err),
        }
    }
    if let Some(password) = password {
        return runtime.block_on(session.login_then(user, Secret::Password(password), work))?;
    }
    if !can_ask {
        return Err(no_password());
    }
    prompt_and_log_in(session, user, runtime)?;
    runtime.block_on(work)
}

fn no_password() -> ClientError {
    ClientError::Auth(
        "no password: set WHARF_PASSWORD or use a key (standard input is not a terminal, so wharf \
         does not ask)"
            .into(),
    )
}

/// Asks for the password on the terminal and logs in, up to three times.
fn prompt_and_log_in(session: &Session, user: &str, runtime: &Runtime) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let prompt = format!("{user}@{}'s password: ", session.host());
        let password = rpassword::prompt_password(prompt).map_err(|err| {
            ClientError::Auth(format!("no password: set WHARF_PASSWORD or use a terminal ({err})"))
        })?;
        // The server does not wait forever for a login: if the prompts outlasted its timeout, the
        // connection is gone, and a fresh one (the host key is known by now) takes the password.
        runtime.block_on(session.relink_if_closed())?;
        let mut result = runtime.block_on(session.login(user, &password));
        if matches!(result, Err(ClientError::ConnectionLost(_)))
            && runtime.block_on(session.relink_if_closed())?
        {
            result = runtime.block_on(session.login(user, &password));
        }
        match result {
            Err(ClientError::Auth(message)) if attempt < 3 => {
                eprintln!("{}", crate::format::printable(&message));
            }
            other => return other.map(|_| ()),
        }
    }
}

/// A sealed key's passphrase: `WHARF_KEY_PASSPHRASE`, or asked on the terminal.
fn key_passphrase() -> Option<String> {
    if let Ok(passphrase) = std::env::var("WHARF_KEY_PASSPHRASE") {
        return Some(passphrase);
    }
    if !std::io::stdin().is_terminal() {
        return None;
    }
    rpassword::prompt_password("Key passphrase: ").ok()
}
