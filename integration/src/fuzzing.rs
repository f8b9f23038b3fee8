//! The checks behind the fuzz targets, shared by `fuzz/` (cargo-fuzz, for long runs on a nightly
//! toolchain) and the corpus test that runs with every `cargo test`.

use std::path::PathBuf;
use std::sync::Arc;

use wharf_common::path::RemotePath;
use wharfd::blocking::BlockingPool;
use wharfd::layout::Layout;
use wharfd::storage::fs::FsStorage;
use wharfd::storage::{Home, Storage as _};

pub use wharf_wire::fuzzing::frame_decode;

/// A name that exists only outside the jail: reaching anything by this name is an escape.
pub const MARKER: &str = "OUTSIDE-MARKER";

/// The contents of the one regular file inside the jail's home.
const INSIDE: &[u8] = b"inside the home";

/// A home beset by traps (symlinks to `/`, up and out of the home, to a sibling home, and to a
/// directory outside holding [`MARKER`]), opened through the server's storage layer.
pub struct Jail {
    runtime: tokio::runtime::Runtime,
    home: Arc<dyn Home>,
    home_path: PathBuf,
    _root: tempfile::TempDir,
}

impl Jail {
    pub fn new() -> Jail {
        let root = tempfile::tempdir().expect("root");
        let layout = Layout::new(root.path());
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let storage = FsStorage::open(&layout, BlockingPool::new(2)).expect("storage");
        let home = runtime.block_on(async {
            for user in ["ann", "bob"] {
                storage.create_home(user).await.expect("home");
            }
            storage.open_home("ann").await.expect("open home")
        });
        let home_path = layout.homes().join("ann").canonicalize().expect("home path");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).expect("outside");
        std::fs::write(outside.join(MARKER), b"secret").expect("marker");
        std::fs::write(layout.homes().join("bob").join(MARKER), b"bob's").expect("marker");
        std::fs::create_dir_all(home_path.join("a/b")).expect("dirs");
        std::fs::write(home_path.join("a/b/file"), INSIDE).expect("file");
        for (name, target) in [
            ("root", PathBuf::from("/")),
            ("up", PathBuf::from("../../..")),
            ("out", outside.clone()),
            ("sib", PathBuf::from("../bob")),
            ("a/b/deep", PathBuf::from("../../../../../outside")),
            ("loop", PathBuf::from("loop")),
        ] {
            std::os::unix::fs::symlink(target, home_path.join(name)).expect("trap");
        }
        Jail { runtime, home, home_path, _root: root }
    }

    /// The home on disk, for checking that the traps are live.
    pub fn home_path(&self) -> &std::path::Path {
        &self.home_path
    }

    /// Resolves `data`, read as a path, through stat, list and open: nothing may be found by the
    /// marker's name, and a file that opens must lie inside the home.
    pub fn check(&self, data: &[u8]) {
        let Ok(raw) = std::str::from_utf8(data) else { return };
        let Ok(path) = RemotePath::parse(raw) else { return };
        assert!(path.starts_with(&RemotePath::root()));
        self.runtime.block_on(async {
            if path.file_name() == Some(MARKER) {
                assert!(self.home.stat(&path).await.is_err(), "{path}: stat escaped the jail");
            }
            if let Ok(mut listing) = self.home.list(&path).await {
                while let Some(Ok(page)) = listing.recv().await {
                    assert!(page.iter().all(|e| e.name != MARKER), "{path}: listed outside");
                }
            }
            if let Ok(download) = self.home.begin_download(&path).await {
                // The one regular file inside the home holds INSIDE; anything else opened is an
                // escape (`root`, say, leads to the machine's files).
                let mut bytes = vec![0; INSIDE.len()];
                let read = download.source.read_exact_at(&mut bytes, 0);
                assert!(
                    download.size == INSIDE.len() as u64 && read.is_ok() && bytes == INSIDE,
                    "{path}: opened a file of {} bytes that is not the one inside the home",
                    download.size
                );
            }
        });
    }
}

impl Default for Jail {
    fn default() -> Self {
        Jail::new()
    }
}
