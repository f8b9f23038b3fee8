//! The login phase: nothing but `login` is served until one succeeds.

use std::sync::Arc;

use wharf_common::frame::write_message;
use wharf_common::proto::{CloseCode, Command, ErrorCode, Reply, Request, Response};

use super::Close;
use super::io::{Incoming, spawn_reader};
use crate::auth::{Credential, Proof};
use crate::cmd::Session;
use crate::context::ServerContext;
use wharf_common::keys::{self, PublicKey};

/// A logged-in connection, ready for requests.
pub struct LoggedIn {
    pub session: Session,
    pub send: quinn::SendStream,
    pub requests: tokio::sync::mpsc::Receiver<Incoming>,
}

/// Accepts the control stream and serves logins until one succeeds or the connection must close.
pub async fn run(conn: &quinn::Connection, ctx: &Arc<ServerContext>) -> Result<LoggedIn, Close> {
    let (mut send, recv) = conn
        .accept_bi()
        .await
        .map_err(|err| Close::new(CloseCode::Normal, format!("no control stream: {err}")))?;
    let mut requests = spawn_reader(recv);
    let ip = conn.remote_address().ip();
    let max_failures = ctx.config.auth.max_failures_per_connection;
    let mut failures = 0;
    loop {
        let Request { id, cmd } = requests
            .recv()
            .await
            .unwrap_or_else(|| Err(Close::new(CloseCode::Normal, "control stream closed")))?;
        let (user, proof) = match cmd {
            Command::Login { user, password } => (user, Proof::Password(password)),
            Command::LoginKey { user, key, signature } => {
                let proof = key_proof(conn, &user, &key, &signature);
                (user, proof)
            }
            _ => {
                reply(&mut send, id, Reply::error(ErrorCode::NotLoggedIn, "log in first")).await?;
                continue;
            }
        };
        match ctx.auth.login(&user, proof, ip).await {
            Ok((record, credential)) => {
                crate::metrics::global().login(crate::metrics::Login::Ok);
                let session = open_session(ctx, conn, record, credential).await;
                let session = match session {
                    Ok(session) => session,
                    Err(reply_err) => {
                        reply(&mut send, id, reply_err).await?;
                        return Err(Close::new(CloseCode::Normal, "home unavailable"));
                    }
                };
                tracing::Span::current().record("user", session.user.as_str());
                // Absent while the home is still being measured (the first login after a start).
                let quota = session.ledger.measured().map(|ledger| ledger.info());
                let requests_in_flight =
                    u32::try_from(ctx.config.server.max_requests_in_flight).unwrap_or(u32::MAX);
                let user = session.user.clone();
                reply(&mut send, id, Reply::LoggedIn { user, quota, requests_in_flight }).await?;
                return Ok(LoggedIn { session, send, requests });
            }
            Err(err) => {
                crate::metrics::global().login(crate::metrics::Login::failure(&err));
                failures += 1;
                reply(&mut send, id, Reply::error(err.code(), err.to_string())).await?;
                if failures >= max_failures {
                    // Let the error reply reach the client before the close overtakes it.
                    let _ = send.finish();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send.stopped())
                        .await;
                    return Err(Close::new(CloseCode::TooManyFailures, "too many failed logins"));
                }
            }
        }
    }
}

/// The proof a `login_key` carries, checked against this connection's TLS session. A malformed key
/// or signature is a proof that fails, and counts as a failed login like a wrong password.
fn key_proof(conn: &quinn::Connection, user: &str, key: &str, signature: &str) -> Proof {
    let parsed = PublicKey::from_base64(key)
        .and_then(|key| Ok((key, keys::signature_from_base64(signature)?)))
        .and_then(|(key, signature)| {
            Ok((key, signature, wharf_common::tls::login_exporter(conn, user)?))
        });
    match parsed {
        Ok((key, signature, exported)) => {
            Proof::Key { key, signature, message: keys::login_message(user, &exported) }
        }
        Err(_) => Proof::Malformed,
    }
}

async fn open_session(
    ctx: &Arc<ServerContext>,
    conn: &quinn::Connection,
    record: crate::users::UserRecord,
    credential: Credential,
) -> Result<Session, Reply> {
    let unavailable = |err: crate::storage::StorageError| {
        tracing::error!(user = %record.name, %err, "cannot open home");
        Reply::error(ErrorCode::Io, "your home directory is unavailable; tell the administrator")
    };
    let home = ctx.storage.open_home(&record.name).await.map_err(unavailable)?;
    let ledger = ctx.quotas.open(&record.name, home.clone(), record.quota);
    Ok(Session {
        credential,
        user: record.name,
        home,
        ledger,
        ctx: ctx.clone(),
        conn: conn.clone(),
        outgoing: wharf_common::transfer::OutgoingLanes::new(conn.clone()),
        transfers: Arc::default(),
    })
}

async fn reply(send: &mut quinn::SendStream, id: u32, reply: Reply) -> Result<(), Close> {
    write_message(send, &Response { id, reply })
        .await
        .map_err(|err| Close::new(CloseCode::Normal, format!("reply failed: {err}")))
}
