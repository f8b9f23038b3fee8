//! A server that lies in its listings, for tests of what the client takes from a server: it logs
//! anyone in, calls every path a directory, and answers every `list` and `tree` with the entries it
//! was given, whatever they name. Everything else it refuses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_common::frame::{read_message, write_message};
use wharf_common::proto::{
    Command, Entry, EntryKind, ErrorCode, QuotaInfo, Reply, Request, Response, TreeEntry,
};

/// What the lying server answers listings with.
#[derive(Debug, Clone, Default)]
pub struct Lies {
    pub entries: Vec<Entry>,
    pub tree: Vec<TreeEntry>,
}

/// A running lying server on loopback; it stops when dropped.
pub struct LyingServer {
    addr: SocketAddr,
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
        runtime.spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let lies = lies.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve(conn, &lies).await;
                    }
                });
            }
        });
        drop(entered);
        LyingServer { addr, dir, endpoint, _runtime: runtime }
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

async fn serve(conn: quinn::Connection, lies: &Lies) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
    while let Ok(Some(Request { id, cmd })) = read_message::<Request, _>(&mut recv).await {
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
