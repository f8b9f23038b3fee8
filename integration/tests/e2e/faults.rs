//! Storage faults, injected through the storage trait into a server running in this process: a full
//! disk while an upload is written, and a failing fsync when it is committed. The user gets a clear
//! error, nothing half-written becomes visible, and the quota stays equal to what is on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use wharf::error::ClientError;
use wharf::session::{ConnectOptions, Session, Trust};
use wharf::target::Target;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, ErrorCode, PartialUpload};
use wharf_integration::server::TestServer;
use wharfd::config::Config;
use wharfd::layout::Layout;
use wharfd::server::Server;
use wharfd::storage::{
    DownloadSource, Home, Listing, Storage, StorageError, StorageResult, TreeListing, UploadTarget,
};

use crate::util::{content, p, server_partial_bytes};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const HEALTHY: u8 = 0;
const DISK_FULL: u8 = 1;
const FSYNC_FAILS: u8 = 2;

/// The filesystem backend, with faults switched on and off by the test.
struct Faulty {
    inner: Arc<dyn Storage>,
    fault: Arc<AtomicU8>,
}

struct FaultyHome {
    inner: Arc<dyn Home>,
    fault: Arc<AtomicU8>,
}

#[async_trait]
impl Storage for Faulty {
    async fn open_home(&self, user: &str) -> StorageResult<Arc<dyn Home>> {
        let inner = self.inner.open_home(user).await?;
        Ok(Arc::new(FaultyHome { inner, fault: self.fault.clone() }))
    }
    async fn create_home(&self, user: &str) -> StorageResult<()> {
        self.inner.create_home(user).await
    }
    async fn remove_home(&self, user: &str) -> StorageResult<()> {
        self.inner.remove_home(user).await
    }
    async fn expire_partials(
        &self,
        max_age: std::time::Duration,
    ) -> StorageResult<Vec<(String, u64)>> {
        self.inner.expire_partials(max_age).await
    }
}

#[async_trait]
impl Home for FaultyHome {
    async fn stat(&self, path: &RemotePath) -> StorageResult<Entry> {
        self.inner.stat(path).await
    }
    async fn list(&self, path: &RemotePath) -> StorageResult<Listing> {
        self.inner.list(path).await
    }
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> StorageResult<()> {
        self.inner.mkdir(path, parents).await
    }
    async fn rmdir(&self, path: &RemotePath) -> StorageResult<()> {
        self.inner.rmdir(path).await
    }
    async fn remove(&self, path: &RemotePath, recursive: bool) -> StorageResult<u64> {
        self.inner.remove(path, recursive).await
    }
    async fn rename(&self, from: &RemotePath, to: &RemotePath) -> StorageResult<u64> {
        self.inner.rename(from, to).await
    }
    async fn usage(&self) -> StorageResult<u64> {
        self.inner.usage().await
    }
    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        let mut target = self.inner.begin_upload(path, size, source, resume).await?;
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
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<u64> {
        if self.fault.load(Ordering::Relaxed) == FSYNC_FAILS {
            return Err(StorageError::from_io(&std::io::Error::from_raw_os_error(libc::EIO), path));
        }
        self.inner.commit_upload(key, path, digest, mtime).await
    }
    async fn partials(&self) -> StorageResult<Vec<(String, PartialUpload)>> {
        self.inner.partials().await
    }
    async fn chmod(&self, path: &RemotePath, mode: u32) -> StorageResult<()> {
        self.inner.chmod(path, mode).await
    }
    async fn tree(&self, path: &RemotePath) -> StorageResult<TreeListing> {
        self.inner.tree(path).await
    }
    async fn digest(&self, path: &RemotePath) -> StorageResult<(Sha256Digest, String)> {
        self.inner.digest(path).await
    }
    async fn discard_upload(&self, key: &str) -> StorageResult<u64> {
        self.inner.discard_upload(key).await
    }
    async fn begin_download(&self, path: &RemotePath) -> StorageResult<DownloadSource> {
        self.inner.begin_download(path).await
    }
    async fn record_digest(
        &self,
        path: &RemotePath,
        version: &str,
        digest: Sha256Digest,
    ) -> StorageResult<()> {
        self.inner.record_digest(path, version, digest).await
    }
}

/// A server for `server`'s root, run in this process over the faulty backend.
fn start_faulty(server: &TestServer, fault: Arc<AtomicU8>) -> SocketAddr {
    let layout = Layout::new(server.root());
    let config = Config::load(&layout.config()).expect("config");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let faulty = Server::bind_with(&layout, config, listen, move |fs| {
        Arc::new(Faulty { inner: Arc::new(fs), fault })
    })
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
    let addr = start_faulty(&server, fault.clone());
    let target = Target { user: None, host: "127.0.0.1".into(), port: addr.port() };
    let options = ConnectOptions::new(target, Trust::Ca(server.cert()));
    let session = Session::open(&options, "ann", "pw").await.expect("login");
    let local = tempfile::tempdir().expect("local");
    let data = content(2 << 20, 61);
    let source = local.path().join("f.bin");
    std::fs::write(&source, &data).expect("source");
    let home = server.home("ann");

    // The disk is full: a clear error, nothing under the name, nothing charged.
    let (code, message) = remote_error(session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await);
    assert_eq!(code, ErrorCode::Io, "{message}");
    assert!(message.contains("no space left"), "{message}");
    assert!(!home.join("f.bin").exists());
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (server_partial_bytes(server.root(), "ann"), 0));

    // The fsync at commit fails: the upload fails and nothing is installed; what the partial
    // holds is what the quota counts.
    fault.store(FSYNC_FAILS, Ordering::Relaxed);
    let (code, message) = remote_error(session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await);
    assert_eq!(code, ErrorCode::Io, "{message}");
    assert!(!home.join("f.bin").exists());
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (server_partial_bytes(server.root(), "ann"), 0));

    // Healthy again: the same upload goes through, and the quota matches the disk exactly.
    fault.store(HEALTHY, Ordering::Relaxed);
    session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await.expect("healthy put");
    assert_eq!(std::fs::read(home.join("f.bin")).expect("stored"), data);
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (data.len() as u64, 0));
    assert_eq!(server_partial_bytes(server.root(), "ann"), 0);
}
