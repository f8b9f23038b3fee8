//! Storage faults, injected through the storage trait into a server running in this process: a full
//! disk while an upload is written, and a failing fsync when it is committed. The user gets a clear
//! error, nothing half-written becomes visible, and the quota stays equal to what is stored. The
//! faults are a storage layer (`wharfd::storage::layer`) in front of the backend (either one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use wharf::error::ClientError;
use wharf::session::{ConnectOptions, Session, Trust};
use wharf::target::Target;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::ErrorCode;
use wharf_integration::server::TestServer;
use wharfd::config::Config;
use wharfd::layout::Layout;
use wharfd::server::Server;
use wharfd::storage::layer::{HomeLayer, Layered};
use wharfd::storage::{Home, Installed, StorageError, StorageResult, UploadTarget};

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const HEALTHY: u8 = 0;
const DISK_FULL: u8 = 1;
const FSYNC_FAILS: u8 = 2;

/// Faults in front of the filesystem backend, switched on and off by the test: only the two
/// operations it breaks are its own; the layer passes everything else through.
struct Faulty {
    fault: Arc<AtomicU8>,
}

#[async_trait]
impl HomeLayer for Faulty {
    async fn begin_upload(
        &self,
        inner: &dyn Home,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        let mut target = inner.begin_upload(path, size, source, resume).await?;
        if self.fault.load(Ordering::Relaxed) == DISK_FULL {
            // Every write to /dev/full fails with ENOSPC, as a full disk's would.
            let full = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/full")
                .map_err(|err| StorageError::from_io(&err, path))?;
            target.dest = Arc::new(full);
        }
        Ok(target)
    }

    async fn commit_upload(
        &self,
        inner: &dyn Home,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        if self.fault.load(Ordering::Relaxed) == FSYNC_FAILS {
            return Err(StorageError::from_io(&std::io::Error::from_raw_os_error(libc::EIO), path));
        }
        inner.commit_upload(key, path, digest, mtime).await
    }
}

/// A server for `server`'s root, run in this process over the faulty backend.
async fn start_faulty(server: &TestServer, fault: Arc<AtomicU8>) -> SocketAddr {
    let layout = Layout::new(server.root());
    let config = Config::load(&layout.config()).expect("config");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let faulty = Server::bind_with(&layout, config, listen, move |inner| {
        Arc::new(Layered { inner, layer: Arc::new(Faulty { fault }) })
    })
    .await
    .expect("bind");
    let addr = faulty.local_addr().expect("address");
    tokio::spawn(faulty.run(std::future::pending()));
    addr
}

fn remote_error(result: Result<wharf::transfer::Outcome, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Remote { code, message }) => (code, message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_or_a_failed_fsync_installs_nothing_and_keeps_the_quota_true() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "100MiB");
    let fault = Arc::new(AtomicU8::new(DISK_FULL));
    let addr = start_faulty(&server, fault.clone()).await;
    let target = Target { user: None, host: "127.0.0.1".into(), port: addr.port() };
    let options = ConnectOptions::new(target, Trust::Ca(server.cert()));
    let session = Session::open(&options, "ann", "pw").await.expect("login");
    let local = tempfile::tempdir().expect("local");
    let data = content(2 << 20, 61);
    let source = local.path().join("f.bin");
    std::fs::write(&source, &data).expect("source");

    // The disk is full: a clear error, nothing under the name, nothing charged.
    let (code, message) = remote_error(session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await);
    assert_eq!(code, ErrorCode::Io, "{message}");
    assert!(message.contains("no space left"), "{message}");
    assert!(!server.exists("ann", "f.bin"));
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (server.partial_bytes("ann"), 0));

    // The fsync at commit fails: the upload fails and nothing is installed; what the partial
    // holds is what the quota counts.
    fault.store(FSYNC_FAILS, Ordering::Relaxed);
    let (code, message) = remote_error(session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await);
    assert_eq!(code, ErrorCode::Io, "{message}");
    assert!(!server.exists("ann", "f.bin"));
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (server.partial_bytes("ann"), 0));

    // Healthy again: the same upload goes through, and the quota matches the disk exactly.
    fault.store(HEALTHY, Ordering::Relaxed);
    session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await.expect("healthy put");
    assert_eq!(server.stored("ann", "f.bin").expect("stored"), data);
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (data.len() as u64, 0));
    assert_eq!(server.partial_bytes("ann"), 0);
}
