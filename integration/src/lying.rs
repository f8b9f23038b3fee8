//! A server that lies in its listings, for tests of what the client takes from a server: it logs
//! anyone in, calls every path a directory (a file, when it forges downloads), and answers every `list` and `tree` with the entries it
//! was given, whatever they name. It can answer every `get` with bytes under the digest of other
//! bytes. Everything else it refuses. It can also hold its answer to a login until the client's
//! next requests, to see which ones the client sends without waiting for it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;
use wharf_common::frame::{read_message, write_message};
use wharf_common::proto::{
    Command, Entry, EntryKind, ErrorCode, Reply, Request, Response, TreeEntry,
};
use wharf_common::transfer::Ranges;
use wharf_wire::lane::{LaneFrame, StreamHeader};

/// What the lying server answers listings with.
#[derive(Debug, Clone, Default)]
pub struct Lies {
    pub entries: Vec<Entry>,
    pub tree: Vec<TreeEntry>,
    /// Hold each login's answer until this many requests have come behind it, or
    /// [`LOGIN_HELD_AT_MOST`] passes (0: answer at once).
    pub hold_login: usize,
    /// Answer every `get` with these bytes, on one lane, under the SHA-256 of other bytes.
    pub corrupt_download: Option<Vec<u8>>,
}

/// How long a held login waits for the requests behind it.
pub const LOGIN_HELD_AT_MOST: std::time::Duration = std::time::Duration::from_secs(3);

/// A running lying server on loopback; it stops when dropped.
pub struct LyingServer {
    addr: SocketAddr,
    /// The requests (their ops' names) that came while a held login waited for its answer.
    behind_login: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    endpoint: quinn::Endpoint,
    _runtime: tokio::runtime::Runtime,
}

impl LyingServer {
    /// Starts the server on a free loopback port, with a certificate of its own.
    pub fn start(lies: Lies) -> LyingServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = wharfd::layout::Layout::new(dir.path());
        wharfd::setup::setup(&layout, &[], false).expect("certificate");
        let certs = wharf_common::tls::load_certs(&layout.cert()).expect("cert");
        let key = wharf_common::tls::load_key(&layout.key()).expect("key");
        let crypto = wharf_common::tls::server_crypto(certs, key).expect("server crypto");
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let entered = runtime.enter();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr"))
            .expect("endpoint");
        let addr = endpoint.local_addr().expect("address");
        let accepting = endpoint.clone();
        let lies = Arc::new(lies);
        let behind_login = Arc::new(Mutex::new(Vec::new()));
        let counted = behind_login.clone();
        runtime.spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let (lies, counted) = (lies.clone(), counted.clone());
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve(conn, &lies, &counted).await;
                    }
                });
            }
        });
        drop(entered);
        LyingServer { addr, behind_login, dir, endpoint, _runtime: runtime }
    }

    /// The requests that reached the server while a held login waited for its answer, by their
    /// names (`Stat`, `Get`, ...), in the order they came.
    pub fn requests_behind_login(&self) -> Vec<String> {
        self.behind_login.lock().expect("not poisoned").clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate to trust it by (`wharf --ca`).
    pub fn cert(&self) -> PathBuf {
        wharfd::layout::Layout::new(self.dir.path()).cert()
    }

    /// Where the server keeps its certificate: not a place a download may reach.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LyingServer {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"done");
    }
}

async fn serve(conn: quinn::Connection, lies: &Lies, behind_login: &Mutex<Vec<String>>) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
    let mut held = VecDeque::new();
    loop {
        let request = match held.pop_front() {
            Some(request) => request,
            None => match read_message::<Request, _>(&mut recv).await {
                Ok(Some(request)) => request,
                _ => return,
            },
        };
        if matches!(request.cmd, Command::Login { .. }) {
            let until = tokio::time::Instant::now() + LOGIN_HELD_AT_MOST;
            while held.len() < lies.hold_login {
                let next = tokio::time::timeout_at(until, read_message::<Request, _>(&mut recv));
                let Ok(Ok(Some(next))) = next.await else { break };
                behind_login.lock().expect("not poisoned").push(op_name(&next.cmd));
                held.push_back(next);
            }
        }
        let Request { id, cmd } = request;
        if let (Command::Get { .. }, Some(bytes)) = (&cmd, &lies.corrupt_download) {
            if send_corrupt(&conn, &mut send, id, bytes).await.is_none() {
                return;
            }
            continue;
        }
        let reply = answer(cmd, lies);
        if write_message(&mut send, &Response { id, reply }).await.is_err() {
            return;
        }
    }
}

/// Answers the `get` numbered `id` with `bytes` as transfer 1, whose end frame and `done` name the
/// digest of something else. `None` once the connection is gone.
async fn send_corrupt(
    conn: &quinn::Connection,
    control: &mut quinn::SendStream,
    id: u32,
    bytes: &[u8],
) -> Option<()> {
    let size = bytes.len() as u64;
    let plan = Reply::Transfer {
        transfer: 1,
        size,
        version: "v".into(),
        ranges: Ranges::full(size),
        lanes: 1,
    };
    write_message(control, &Response { id, reply: plan }).await.ok()?;
    let sha256 = format!("{:x}", sha2::Sha256::digest(b"other bytes"));
    let mut lane = conn.open_uni().await.ok()?;
    write_message(&mut lane, &StreamHeader::of(1)).await.ok()?;
    write_message(&mut lane, &LaneFrame::Segment { offset: 0, len: size }).await.ok()?;
    lane.write_all(bytes).await.ok()?;
    write_message(&mut lane, &LaneFrame::End { sha256: sha256.clone() }).await.ok()?;
    lane.finish().ok()?;
    let done = Reply::Done { size, sha256, version: None };
    write_message(control, &Response { id, reply: done }).await.ok()
}

fn dir(name: String) -> Entry {
    Entry { name, kind: EntryKind::Dir, size: 0, mode: 0o755, mtime: 0 }
}

/// `Stat` for a `stat`, and so on: the command's variant.
fn op_name(cmd: &Command) -> String {
    let shown = format!("{cmd:?}");
    shown.split([' ', '{', '(']).next().unwrap_or_default().to_owned()
}

fn answer(cmd: Command, lies: &Lies) -> Reply {
    match cmd {
        Command::Login { user, .. } => Reply::LoggedIn {
            user,
            // As a server does while it measures the home.
            quota: None,
            requests_in_flight: 64,
        },
        // A file where downloads are forged, so that a `get` asks for it.
        Command::Stat { path } => Reply::Stat {
            entry: match &lies.corrupt_download {
                Some(bytes) => {
                    Entry { kind: EntryKind::File, size: bytes.len() as u64, ..dir(path) }
                }
                None => dir(path),
            },
        },
        Command::List { .. } => Reply::Entries { entries: lies.entries.clone(), done: true },
        Command::Tree { .. } => Reply::TreeEntries { entries: lies.tree.clone(), done: true },
        _ => Reply::error(ErrorCode::BadRequest, "this server only lies in listings"),
    }
}
