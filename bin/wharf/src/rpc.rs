//! Request/reply multiplexing over the control stream.
//!
//! Any number of requests may be in flight: each gets a fresh id, and a reader task routes every
//! reply to the channel of the request it answers. A request ends with its final reply
//! ([`Reply::is_final`]); listings send pages before it.
//!
//! The server refuses a request past its limit of requests in flight (`busy`). Each command sizes
//! its own pipeline to that limit, but commands may run at once (a background job beside the
//! shell's next command), so the connection also keeps a gate: a request waits for a slot before it
//! is sent, and gives it back with its final reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use wharf_common::frame::{read_message, write_message};
use wharf_common::limits::{MIN_REQUESTS_IN_FLIGHT, NOTICE_ID};
use wharf_common::proto::{CloseCode, Command, Reply, Request, Response};

use crate::error::{ClientError, Result};

type Pending = Arc<Mutex<Waiting>>;

/// The requests waiting for replies, and whether replies can still come at all.
#[derive(Debug, Default)]
struct Waiting {
    by_id: HashMap<u32, Waiter>,
    /// Set once the reader has stopped: a request registered after that would wait forever.
    ended: bool,
}

/// Where one request's replies go, and its slot in the gate, held until its final reply arrives
/// (whether or not its caller reads it).
#[derive(Debug)]
struct Waiter {
    tx: mpsc::Sender<Reply>,
    slot: Option<OwnedSemaphorePermit>,
}

/// The client side of the control stream.
#[derive(Debug)]
pub struct Rpc {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: quinn::Connection,
    send: tokio::sync::Mutex<quinn::SendStream>,
    pending: Pending,
    next_id: AtomicU32,
    /// The last eager upload number sent; the server requires them to increase in request order,
    /// so they are given out as requests are written.
    last_eager: AtomicU64,
    /// A slot per request the server allows in flight, less [`GATE_MARGIN`].
    gate: Arc<Semaphore>,
    /// The slots the gate holds in all.
    gate_size: AtomicU32,
}

/// Slots of the server's limit the gate leaves unused: a cancelled request's slot is given back as
/// the cancel is sent, and the server frees it a moment after the cancel arrives.
pub const GATE_MARGIN: usize = 4;

/// The gate's size for a server allowing `limit` requests in flight.
fn gate_size(limit: usize) -> usize {
    limit.saturating_sub(GATE_MARGIN).max(1)
}

/// The replies to one request. Dropping it before the final reply cancels the request on the
/// server (a `cancel` is sent), so that an abandoned transfer frees its claims and streams at once.
#[derive(Debug)]
pub struct Replies {
    rx: mpsc::Receiver<Reply>,
    id: u32,
    inner: Arc<Inner>,
    finished: bool,
    /// The eager number the request was sent with, for an eager upload.
    eager: Option<u64>,
}

impl Replies {
    /// The eager number this request was sent with, if it is an eager upload.
    pub fn eager(&self) -> Option<u64> {
        self.eager
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let slot = lock(&self.inner.pending).by_id.remove(&self.id).and_then(|waiter| waiter.slot);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (inner, request) = (self.inner.clone(), self.id);
            runtime.spawn(async move {
                // The answer to a cancel says nothing worth waiting for. The slot is given back
                // once the cancel is on its way.
                let _ = inner.send(Command::Cancel { request }).await;
                drop(slot);
            });
        }
    }
}

/// A request on its way.
struct Sent {
    id: u32,
    rx: mpsc::Receiver<Reply>,
    eager: Option<u64>,
}

impl Inner {
    /// Waits for a slot in the gate (a cancel needs none: the server does not count it), registers
    /// a fresh id for `tx` and sends the request; an eager upload gets its number here.
    async fn send(&self, mut cmd: Command) -> std::result::Result<Sent, String> {
        let slot = match cmd {
            Command::Cancel { .. } => None,
            _ => Some(
                self.gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| "the gate closed".to_owned())?,
            ),
        };
        let (tx, rx) = mpsc::channel(16);
        let waiter = Waiter { tx, slot };
        let id = self.register(waiter).ok_or_else(|| "control stream closed".to_owned())?;
        let mut send = self.send.lock().await;
        let eager = match &mut cmd {
            Command::Put { eager: Some(number), .. } => {
                *number = self.last_eager.fetch_add(1, Ordering::Relaxed) + 1;
                Some(*number)
            }
            _ => None,
        };
        if let Err(err) = write_message(&mut *send, &Request { id, cmd }).await {
            lock(&self.pending).by_id.remove(&id);
            return Err(err.to_string());
        }
        Ok(Sent { id, rx, eager })
    }

    /// Registers `tx` under a fresh id; `None` once the control stream has ended.
    fn register(&self, waiter: Waiter) -> Option<u32> {
        let mut pending = lock(&self.pending);
        if pending.ended {
            return None;
        }
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != NOTICE_ID && !pending.by_id.contains_key(&id) {
                pending.by_id.insert(id, waiter);
                return Some(id);
            }
        }
    }
}

impl Rpc {
    /// Starts routing replies from `recv`.
    pub fn start(conn: quinn::Connection, send: quinn::SendStream, recv: quinn::RecvStream) -> Rpc {
        let _ = send.set_priority(wharf_common::net::CONTROL_PRIORITY);
        let pending = Pending::default();
        tokio::spawn(route_replies(recv, pending.clone()));
        let inner = Inner {
            conn,
            send: tokio::sync::Mutex::new(send),
            pending,
            next_id: AtomicU32::new(1),
            last_eager: AtomicU64::new(0),
            gate: Arc::new(Semaphore::new(gate_size(MIN_REQUESTS_IN_FLIGHT))),
            gate_size: AtomicU32::new(gate_size(MIN_REQUESTS_IN_FLIGHT) as u32),
        };
        Rpc { inner: Arc::new(inner) }
    }

    /// Sizes the gate to the server's limit of requests in flight, as its login reply gave it.
    pub fn allow(&self, limit: usize) {
        let wanted = u32::try_from(gate_size(limit)).unwrap_or(u32::MAX);
        let before = self.inner.gate_size.swap(wanted, Ordering::Relaxed);
        if wanted > before {
            self.inner.gate.add_permits((wanted - before) as usize);
        } else {
            // Slots in use now are not taken back; only idle ones go.
            self.inner.gate.forget_permits((before - wanted) as usize);
        }
    }

    /// Sends `cmd` and returns the handle its replies arrive on. A `put` with any `eager` number is
    /// sent with the connection's next one ([`Replies::eager`]).
    pub async fn request(&self, cmd: Command) -> Result<Replies> {
        match self.inner.send(cmd).await {
            Ok(Sent { id, rx, eager }) => {
                Ok(Replies { rx, id, inner: self.inner.clone(), finished: false, eager })
            }
            Err(err) => Err(self.lost(err)),
        }
    }

    /// Sends `cmd` and waits for its final reply; an error reply becomes [`ClientError::Remote`].
    pub async fn call(&self, cmd: Command) -> Result<Reply> {
        let mut replies = self.request(cmd).await?;
        self.next_reply(&mut replies).await
    }

    /// The next reply to a request, with error replies and a lost connection as errors.
    pub async fn next_reply(&self, replies: &mut Replies) -> Result<Reply> {
        let reply = replies.rx.recv().await;
        replies.finished = reply.as_ref().is_none_or(Reply::is_final);
        match reply {
            Some(Reply::Error(err)) => {
                Err(ClientError::Remote { code: err.code, message: err.message })
            }
            Some(reply) => Ok(reply),
            None => Err(self.lost("control stream closed".into())),
        }
    }

    /// Whether the control stream has ended: no reply can come any more.
    pub fn ended(&self) -> bool {
        lock(&self.inner.pending).ended
    }

    /// The error for a connection that went away, with the server's reason when it gave one.
    pub fn lost(&self, fallback: String) -> ClientError {
        match self.inner.conn.close_reason() {
            Some(reason) => closed_error(&reason),
            None => ClientError::ConnectionLost(fallback),
        }
    }
}

fn lock(pending: &Pending) -> parking_lot::MutexGuard<'_, Waiting> {
    pending.lock()
}

async fn route_replies(mut recv: quinn::RecvStream, pending: Pending) {
    loop {
        let Response { id, reply } = match read_message::<Response, _>(&mut recv).await {
            Ok(Some(response)) => response,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(%err, "control stream ended");
                break;
            }
        };
        if id == NOTICE_ID {
            if let Reply::Notice { message } = &reply {
                eprintln!("wharf: server says: {}", crate::format::printable(message));
            }
            continue;
        }
        let is_final = reply.is_final();
        // A final reply frees the request's slot in the gate here, as it arrives: a caller may
        // read it later, or never.
        let tx = {
            let mut pending = lock(&pending);
            if is_final {
                pending.by_id.remove(&id).map(|waiter| waiter.tx)
            } else {
                pending.by_id.get(&id).map(|waiter| waiter.tx.clone())
            }
        };
        if let Some(tx) = tx {
            // A caller that stopped listening simply misses the rest.
            let _ = tx.send(reply).await;
        }
    }
    // Dropping the senders wakes every waiting caller with "connection lost"; later requests fail at
    // once instead of waiting for replies that cannot come.
    let mut pending = lock(&pending);
    pending.ended = true;
    pending.by_id.clear();
}

/// Explains why the server closed the connection.
pub fn closed_error(reason: &quinn::ConnectionError) -> ClientError {
    let quinn::ConnectionError::ApplicationClosed(close) = reason else {
        return ClientError::ConnectionLost(reason.to_string());
    };
    let text = String::from_utf8_lossy(&close.reason).into_owned();
    match CloseCode::from_u64(close.error_code.into_inner()) {
        Some(CloseCode::TooManyFailures) => ClientError::Auth(format!("login failed: {text}")),
        Some(CloseCode::AccountChanged) => ClientError::Auth(format!("session ended: {text}")),
        Some(CloseCode::TooManyConnections) => {
            ClientError::Connect { target: "server".into(), reason: format!("refused: {text}") }
        }
        Some(CloseCode::ProtocolError) => ClientError::Protocol(text),
        Some(_) => ClientError::ConnectionLost(text),
        None => ClientError::ConnectionLost(format!("closed with unknown code: {text}")),
    }
}
