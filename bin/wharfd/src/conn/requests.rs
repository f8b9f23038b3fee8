//! The session phase: requests run concurrently, each in its own task, replies funnel through one
//! writer.
//!
//! Rules enforced here: request id 0 is reserved (protocol error); an id already in flight is
//! answered with `duplicate_id`; past `max_requests_in_flight` new requests get `busy`; with nothing
//! in flight for `session_idle_secs` the session is closed; on shutdown, running requests get the
//! grace period, new ones get `shutting_down`. Every [`ACCOUNT_RECHECK`] the user's record is read
//! again: a deleted user, or one whose password changed, loses the session at once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, sleep_until};
use wharf_common::limits::NOTICE_ID;
use wharf_common::proto::{CloseCode, Command, ErrorCode, Reply, Request, Response};

use super::Close;
use super::io::spawn_writer;
use super::login::LoggedIn;
use crate::auth::{AccountState, Credential};
use crate::cmd::Outgoing;
use crate::cmd::lanes::UploadLanes;
use crate::cmd::{Progress, Session, dispatch};
use crate::context::ServerContext;

/// The requests in flight, by id, with the handle that cancels each, so that a reused id is caught
/// and a `cancel` can stop its request.
type InFlight = Arc<Mutex<HashMap<u32, Option<AbortHandle>>>>;

/// How long the last replies may take to leave once the session is over.
const WRITER_LINGER: std::time::Duration = std::time::Duration::from_secs(3);

/// How often a session checks that its account still exists with the password it logged in with.
pub const ACCOUNT_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(
    logged_in: LoggedIn,
    ctx: Arc<ServerContext>,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    let LoggedIn { session, send, mut requests } = logged_in;
    let session = Arc::new(session);
    let (replies, writer) = spawn_writer(send);
    let in_flight: InFlight = Arc::default();
    let permits = Arc::new(Semaphore::new(ctx.config.server.max_requests_in_flight));
    let idle = ctx.config.server.session_idle();
    let mut tasks = JoinSet::new();
    let mut idle_deadline = Instant::now() + idle;
    let streams =
        tokio::spawn(accept_transfer_streams(session.conn.clone(), session.transfers.clone()));
    let mut recheck = tokio::time::interval_at(Instant::now() + ACCOUNT_RECHECK, ACCOUNT_RECHECK);

    let close = loop {
        tokio::select! {
            incoming = requests.recv() => {
                let request = match incoming {
                    Some(Ok(request)) => request,
                    Some(Err(close)) => break close,
                    None => break Close::new(CloseCode::Normal, "control stream closed"),
                };
                idle_deadline = Instant::now() + idle;
                if request.id == NOTICE_ID {
                    break Close::new(CloseCode::ProtocolError, "request id 0 is reserved");
                }
                start(request, &session, &replies, &in_flight, &permits, &mut tasks).await;
            }
            Some(_) = tasks.join_next() => {
                idle_deadline = Instant::now() + idle;
            }
            () = sleep_until(idle_deadline), if tasks.is_empty() => {
                break Close::new(CloseCode::Idle, "session idle for too long");
            }
            _ = recheck.tick() => {
                if let Some(close) = account_revoked(&session, &ctx).await {
                    break close;
                }
            }
            () = super::stopping(shutdown) => {
                break drain_for_shutdown(&ctx, &session.conn, &mut tasks, &replies, &mut requests)
                    .await;
            }
        }
    };
    if close.code == CloseCode::Normal {
        // The client is done sending; let what it asked for finish.
        while tasks.join_next().await.is_some() {}
    }
    tasks.abort_all();
    streams.abort();
    drop(replies);
    // A dead client may never take the last replies: do not let it hold the close (or a shutdown).
    let _ = tokio::time::timeout(WRITER_LINGER, writer).await;
    close
}

/// The close for a session whose account was deleted or re-passworded since it logged in; also
/// applies a changed quota to the ledger.
async fn account_revoked(session: &Session, ctx: &ServerContext) -> Option<Close> {
    let why = match ctx.auth.account_state(&session.user, &session.credential).await {
        AccountState::Valid(record) => {
            session.ledger.set_limit(record.quota);
            return None;
        }
        AccountState::Unknown => return None,
        AccountState::Deleted => "your account was deleted",
        AccountState::CredentialRevoked => match session.credential {
            Credential::Password(_) => "your password was changed: log in again",
            Credential::Key(_) => "the key you logged in with was removed",
        },
    };
    tracing::info!(target: "audit", user = ?session.user, reason = why, "session ended");
    Some(Close::new(CloseCode::AccountChanged, why))
}

/// Routes every unidirectional stream the client opens to the `put` waiting for it. The number open
/// at once is bounded by the transport's `max_uni_streams`.
async fn accept_transfer_streams(conn: quinn::Connection, transfers: Arc<UploadLanes>) {
    while let Ok(stream) = conn.accept_uni().await {
        let transfers = transfers.clone();
        tokio::spawn(async move { transfers.route(stream).await });
    }
}

/// Admits one request and spawns its task, or answers at once why not.
async fn start(
    request: Request,
    session: &Arc<Session>,
    replies: &mpsc::Sender<Outgoing>,
    in_flight: &InFlight,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
) {
    let Request { id, cmd } = request;
    if let Command::Cancel { request } = cmd {
        // Aborting drops the task, whose slot frees the id and answers it `cancelled`.
        if let Some(Some(task)) = lock(in_flight).get(&request) {
            task.abort();
        }
        let _ = replies.send(Response { id, reply: Reply::Ok }.into()).await;
        return;
    }
    let permit = match admit(id, &cmd, session, in_flight, permits) {
        Ok(permit) => permit,
        Err((code, message)) => {
            let refusal = Response { id, reply: Reply::error(code, message) };
            let _ = replies.send(refusal.into()).await;
            return;
        }
    };
    lock(in_flight).insert(id, None);
    let slot = Slot { id, in_flight: in_flight.clone(), replies: replies.clone(), answered: false };
    let session = session.clone();
    let task = tasks.spawn(async move {
        let mut slot = slot;
        let reply = dispatch(&session, cmd, &Progress { id, replies: &slot.replies }).await;
        // Free the id before the final reply leaves, so the client may reuse it as soon as it sees it.
        slot.release();
        drop(permit);
        let _ = slot.replies.send(Response { id, reply }.into()).await;
        // Only now is the request answered: a cancel that lands while the reply waits for room in
        // the queue still gets the request its one final reply (`cancelled`, from the drop).
        slot.answered = true;
    });
    if let Some(entry) = lock(in_flight).get_mut(&id) {
        *entry = Some(task);
    }
}

/// Whether request `id` may run: an eager upload's number must be new, a slot must be free, and
/// the id must not be in flight already. Returns its slot, or why not.
fn admit(
    id: u32,
    cmd: &Command,
    session: &Session,
    in_flight: &InFlight,
    permits: &Arc<Semaphore>,
) -> Result<OwnedSemaphorePermit, (ErrorCode, &'static str)> {
    // An eager upload's lane may be here already or still to come: its number is announced now,
    // in request order, so that a lane of a request refused below is stopped rather than kept.
    let eager = match cmd {
        Command::Put { eager: Some(number), .. } => Some(*number),
        _ => None,
    };
    if let Some(number) = eager
        && !session.transfers.announce_eager(number)
    {
        return Err((ErrorCode::BadRequest, "eager numbers must increase on a connection"));
    }
    let refused = match permits.clone().try_acquire_owned() {
        Err(_) => (ErrorCode::Busy, "too many requests in flight"),
        Ok(_) if lock(in_flight).contains_key(&id) => {
            (ErrorCode::DuplicateId, "request id already in flight")
        }
        Ok(permit) => return Ok(permit),
    };
    if let Some(number) = eager {
        session.transfers.forget_eager(number);
    }
    Err(refused)
}

/// A request's place among those in flight. If its task ends without answering (it was aborted by
/// a `cancel`), dropping the slot frees the id and answers `cancelled`: every request gets exactly
/// one final reply.
struct Slot {
    id: u32,
    in_flight: InFlight,
    replies: mpsc::Sender<Outgoing>,
    answered: bool,
}

impl Slot {
    /// Frees the request's id; the final reply is still to be sent.
    fn release(&mut self) {
        lock(&self.in_flight).remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        lock(&self.in_flight).remove(&self.id);
        let reply = Reply::error(ErrorCode::Cancelled, "cancelled by the client");
        let response = Response { id: self.id, reply };
        // The queue to the writer may be full for a moment; the answer must not be lost for that.
        if let Err(mpsc::error::TrySendError::Full(response)) =
            self.replies.try_send(response.into())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let replies = self.replies.clone();
            runtime.spawn(async move {
                let _ = replies.send(response).await;
            });
        }
    }
}

/// A connection from which nothing at all arrives for this long during shutdown, although the
/// notice sent at its start asks for an acknowledgement, has a dead peer: its requests are not
/// waited for.
const DEAD_PEER_SILENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// On shutdown: tell the client, refuse new requests, give running ones the grace period (unless the
/// client is gone), then close.
async fn drain_for_shutdown(
    ctx: &ServerContext,
    conn: &quinn::Connection,
    tasks: &mut JoinSet<()>,
    replies: &mpsc::Sender<Outgoing>,
    requests: &mut mpsc::Receiver<super::io::Incoming>,
) -> Close {
    let notice = Reply::Notice { message: "server shutting down".into() };
    let _ = replies.send(Response { id: NOTICE_ID, reply: notice }.into()).await;
    let grace = ctx.config.server.shutdown_grace();
    let deadline = Instant::now() + grace;
    let mut heard = conn.stats().udp_rx.datagrams;
    let mut last_heard = Instant::now();
    let mut look = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            done = tasks.join_next() => if done.is_none() { break },
            Some(Ok(request)) = requests.recv() => {
                let reply = Reply::error(ErrorCode::ShuttingDown, "server shutting down");
                let _ = replies.send(Response { id: request.id, reply }.into()).await;
            }
            _ = look.tick() => {
                let now = conn.stats().udp_rx.datagrams;
                if now != heard {
                    (heard, last_heard) = (now, Instant::now());
                } else if last_heard.elapsed() >= DEAD_PEER_SILENCE {
                    tracing::info!("client silent during shutdown; not waiting for its requests");
                    break;
                }
            }
            () = sleep_until(deadline) => break,
        }
    }
    Close::new(CloseCode::ShuttingDown, "server shutting down")
}

fn lock(in_flight: &InFlight) -> parking_lot::MutexGuard<'_, HashMap<u32, Option<AbortHandle>>> {
    in_flight.lock()
}
