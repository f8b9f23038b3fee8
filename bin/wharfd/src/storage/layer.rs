//! Decorating a storage backend: a [`HomeLayer`] stands in front of each home's transfer operations
//! (opening, committing and reading partials and files) and takes over only those it implements;
//! everything else goes to the backend untouched. Fault injection in the tests is one layer;
//! timing a backend's transfers for metrics would be another. (A layer that needs more of
//! [`Home`] gets a method here, with a default that forwards.)

use std::sync::Arc;

use async_trait::async_trait;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, PartialUpload};

use super::{
    DownloadSource, Home, Installed, Listing, Storage, StorageResult, TreeListing, UploadTarget,
};

/// What a layer may do in front of a home's transfer operations. Every method does what `inner`
/// does unless the layer says otherwise.
#[async_trait]
#[allow(unused_variables)]
pub trait HomeLayer: Send + Sync + 'static {
    async fn begin_upload(
        &self,
        inner: &dyn Home,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        inner.begin_upload(path, size, source, resume).await
    }

    async fn commit_upload(
        &self,
        inner: &dyn Home,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        inner.commit_upload(key, path, digest, mtime).await
    }

    async fn begin_download(
        &self,
        inner: &dyn Home,
        path: &RemotePath,
    ) -> StorageResult<DownloadSource> {
        inner.begin_download(path).await
    }
}

/// A backend with `layer` in front of each of its homes.
pub struct Layered<L> {
    pub inner: Arc<dyn Storage>,
    pub layer: Arc<L>,
}

/// One home with the layer in front.
struct LayeredHome<L> {
    inner: Arc<dyn Home>,
    layer: Arc<L>,
}

#[async_trait]
impl<L: HomeLayer> Storage for Layered<L> {
    async fn open_home(&self, user: &str) -> StorageResult<Arc<dyn Home>> {
        let inner = self.inner.open_home(user).await?;
        Ok(Arc::new(LayeredHome { inner, layer: self.layer.clone() }))
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
impl<L: HomeLayer> Home for LayeredHome<L> {
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
    async fn reserve_shared(
        &self,
        key: &str,
        bytes: u64,
        limit: Option<u64>,
    ) -> StorageResult<Result<(), crate::quota::OverQuota>> {
        self.inner.reserve_shared(key, bytes, limit).await
    }
    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        self.layer.begin_upload(&*self.inner, path, size, source, resume).await
    }
    async fn commit_upload(
        &self,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        self.layer.commit_upload(&*self.inner, key, path, digest, mtime).await
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
        self.layer.begin_download(&*self.inner, path).await
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
