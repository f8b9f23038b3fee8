//! A server that lies in its listings, for tests of what the client takes from a server: it logs
//! anyone in, calls every path a directory, and answers every `list` and `tree` with the entries it
//! was given, whatever they name. Everything else it refuses. It can also hold its answer to a login
//! until the client's next request, to see whether the client waits for that answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wharf_common::frame::{read_message, write_message};
use wharf_common::proto::{
    Command, Entry, EntryKind, ErrorCode, QuotaInfo, Reply, Request, Response, TreeEntry,
};

/// What the lying server answers listings with.
#[derive(Debug, Clone, Default)]
pub struct Lies {
    pub entries: Vec<Entry>,
    pub tree: Vec<TreeEntry>,
    /// Hold each login's answer until the next request comes, or [`LOGIN_HELD_AT_MOST`] passes.
    pub hold_login: bool,
}

/// How long a held login waits for a request behind it.
pub const LOGIN_HELD_AT_MOST: std::time::Duration = std::time::Duration::from_secs(3);

/// A running lying server on loopback; it stops when dropped.
pub struct LyingServer {
    addr: SocketAddr,
    /// Requests that came while a held login waited for its answer.
    behind_login: Arc<AtomicUsize>,
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
        let behind_login = Arc::new(AtomicUsize::new(0));
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

    /// How many requests reached the server while a held login waited for its answer.
    pub fn requests_behind_login(&self) -> usize {
        self.behind_login.load(Ordering::SeqCst)
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

async fn serve(conn: quinn::Connection, lies: &Lies, behind_login: &AtomicUsize) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
    let mut held = None;
    loop {
        let request = match held.take() {
            Some(request) => request,
            None => match read_message::<Request, _>(&mut recv).await {
                Ok(Some(request)) => request,
                _ => return,
            },
        };
        if lies.hold_login && matches!(request.cmd, Command::Login { .. }) {
            let next = tokio::time::timeout(LOGIN_HELD_AT_MOST, read_message(&mut recv)).await;
            if let Ok(Ok(Some(next))) = next {
                behind_login.fetch_add(1, Ordering::SeqCst);
                held = Some(next);
            }
        }
        let Request { id, cmd } = request;
        let reply = answer(cmd, lies);
        if write_message(&mut send, &Response { id, reply }).await.is_err() {
            return;
        }
    }
}

fn answer(cmd: Command, lies: &Lies) -> Reply {
    match cmd {
        Command::Login { user, .. } => Reply::LoggedIn {
            user,
            quota: QuotaInfo { used: 0, reserved: 0, limit: None },
            requests_in_flight: 64,
        },
        Command::Stat { path } => Reply::Stat {
            entry: Entry { name: path, kind: EntryKind::Dir, size: 0, mode: 0o755, mtime: 0 },
        },
        Command::List { .. } => Reply::Entries { entries: lies.entries.clone(), done: true },
        Command::Tree { .. } => Reply::TreeEntries { entries: lies.tree.clone(), done: true },
        _ => Reply::error(ErrorCode::BadRequest, "this server only lies in listings"),
    }
}
