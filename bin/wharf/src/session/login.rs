//! Logging in: the login request and its reply, and a login that other work follows at once.
//!
//! The server serves a connection's requests in order once its login succeeds, and answers those
//! behind a failed one with `not_logged_in` (PROTOCOL.md, section 8). So a one-shot command need not
//! wait for the login's reply before sending its first request: across a long path that saves one
//! round trip of the three or four a short command costs.

use std::future::Future;
use std::sync::Arc;

use wharf_common::proto::{Command, ErrorCode, QuotaInfo, Reply};

use super::{Session, lock, unexpected};
use crate::error::{ClientError, Result};
use crate::identity::Identity;
use crate::link::Link;
use crate::rpc::Replies;
use wharf_common::limits::MIN_REQUESTS_IN_FLIGHT;

/// What a session logs in with, kept to log in again after a reconnection.
#[derive(Debug, Clone)]
pub enum Secret {
    Password(String),
    Key(Arc<Identity>),
}

/// What the server said to a login.
pub(super) struct LoginReply {
    user: String,
    /// None while the server is still measuring the home.
    quota: Option<QuotaInfo>,
    requests_in_flight: usize,
}

/// Sends the login for `secret` on `link`. A key signs the login message of this link's own TLS
/// session, so the proof is good for this connection only.
async fn send_login(link: &Link, user: &str, secret: &Secret) -> Result<Replies> {
    let cmd = match secret {
        Secret::Password(password) => {
            Command::Login { user: user.to_owned(), password: password.clone() }
        }
        Secret::Key(identity) => {
            let exported = wharf_common::tls::login_exporter(&link.conn, user)
                .map_err(|err| ClientError::Protocol(err.to_string()))?;
            Command::LoginKey {
                user: user.to_owned(),
                key: identity.public().to_base64(),
                signature: identity.sign_login(user, &exported),
            }
        }
    };
    link.rpc.request(cmd).await
}

/// The server's answer to a login sent on `link`.
async fn login_reply(link: &Link, replies: &mut Replies) -> Result<LoginReply> {
    match link.rpc.next_reply(replies).await {
        Ok(Reply::LoggedIn { user, quota, requests_in_flight }) => {
            // Servers before the field was added say 0, and allowed the minimum.
            let requests_in_flight = match requests_in_flight {
                0 => MIN_REQUESTS_IN_FLIGHT,
                n => n as usize,
            };
            Ok(LoginReply { user, quota, requests_in_flight })
        }
        Ok(other) => Err(unexpected(&other)),
        Err(ClientError::Remote {
            code: ErrorCode::AuthFailed | ErrorCode::TooManyAttempts,
            message,
        }) => Err(ClientError::Auth(message)),
        Err(err) => Err(err),
    }
}

/// Logs in on `link` and waits for the answer.
pub(super) async fn login_on(link: &Link, user: &str, secret: &Secret) -> Result<LoginReply> {
    let mut replies = send_login(link, user, secret).await?;
    login_reply(link, &mut replies).await
}

impl Session {
    /// Logs in. A wrong password or user gives [`ClientError::Auth`]; after too many failures the
    /// server closes the connection.
    pub async fn login(&self, user: &str, password: &str) -> Result<Option<QuotaInfo>> {
        self.login_with(user, Secret::Password(password.to_owned())).await
    }

    /// Logs in with a key: its signature of this connection's login message.
    pub async fn login_key(
        &self,
        user: &str,
        identity: Arc<Identity>,
    ) -> Result<Option<QuotaInfo>> {
        self.login_with(user, Secret::Key(identity)).await
    }

    async fn login_with(&self, user: &str, secret: Secret) -> Result<Option<QuotaInfo>> {
        let reply = login_on(&self.link(), user, &secret).await?;
        Ok(self.logged_in_as(reply, secret))
    }

    /// Logs in with `secret` and runs `work` right behind the login, without waiting for its
    /// reply. Returns the login's error if it fails (`work` is then dropped, and its requests
    /// cancelled), or else what `work` returned.
    ///
    /// Until the reply comes, [`Session::requests_in_flight`] is what every server allows, and
    /// [`Session::login_answered`] waits. Transfers wait there before sizing their window to the
    /// server's limit, and so do commands that print without asking the server (`pwd`, `lls`)
    /// and a local shell: nothing shows or runs on the strength of a login that then fails.
    pub async fn login_then<T>(
        &self,
        user: &str,
        secret: Secret,
        work: impl Future<Output = Result<T>>,
    ) -> Result<Result<T>> {
        let link = self.link();
        let mut replies = send_login(&link, user, &secret).await?;
        self.requests_in_flight.send_replace(None);
        let login = async {
            let reply = login_reply(&link, &mut replies).await;
            match reply {
                Ok(reply) => Ok(self.logged_in_as(reply, secret)),
                Err(err) => {
                    self.requests_in_flight.send_replace(Some(MIN_REQUESTS_IN_FLIGHT));
                    Err(err)
                }
            }
        };
        tokio::pin!(login, work);
        // The login is polled first: the reply to `work`'s first request comes after the login's,
        // so `work` never sees a reply to a request the server refused for want of a login.
        tokio::select! {
            biased;
            logged_in = &mut login => {
                logged_in?;
                Ok(work.await)
            }
            done = &mut work => {
                login.await?;
                Ok(done)
            }
        }
    }

    /// Completes once no login is waiting for its reply (at once, but behind
    /// [`Session::login_then`]).
    pub async fn login_answered(&self) {
        let mut answered = self.requests_in_flight.subscribe();
        // The sender lives as long as the session, so this cannot fail while it is borrowed.
        let _ = answered.wait_for(Option::is_some).await;
    }

    /// Records a successful login; returns the quota the server reported, if it had measured it.
    fn logged_in_as(&self, reply: LoginReply, secret: Secret) -> Option<QuotaInfo> {
        *lock(&self.user) = Some(reply.user);
        *lock(&self.secret) = Some(secret);
        self.link().rpc.allow(reply.requests_in_flight);
        self.requests_in_flight.send_replace(Some(reply.requests_in_flight));
        reply.quota
    }
}
