//! What a test server stored, looked at and changed behind its back, on either backend: on the
//! local one through its disk, on the s3 one through the database and the bucket
//! ([`crate::engines::Engines`]). Tests assert on these views, not on paths under the root.

use std::path::Path;
use std::time::Duration;

use crate::engines::on_own_runtime;
use crate::server::TestServer;

/// A change a test makes to a home on the s3 backend, through a session.
enum Change<'a> {
    /// Upload this local file there, making the parent directories.
    Put(&'a Path),
    MakeDir,
    Remove,
}

impl TestServer {
    /// The content of `user`'s file at `path` (relative to the home) as the server stored it,
    /// looked at behind the server's back; `None` if there is none.
    pub fn stored(&self, user: &str, path: &str) -> Option<Vec<u8>> {
        match &self.engines {
            Some(engines) => engines.stored(user, path),
            None => std::fs::read(self.home(user).join(path)).ok(),
        }
    }

    /// Whether `user` has a file or directory at `path` (relative to the home).
    pub fn exists(&self, user: &str, path: &str) -> bool {
        match &self.engines {
            Some(engines) => engines.exists(user, path),
            None => self.home(user).join(path).exists(),
        }
    }

    /// The bytes `user`'s partial uploads hold on the server.
    pub fn partial_bytes(&self, user: &str) -> u64 {
        match &self.engines {
            Some(engines) => engines.partial_bytes(user),
            None => local_partial_bytes(self.root(), user),
        }
    }

    /// How many partial uploads `user` has on the server (on the local backend: how many files
    /// of them, data and records, so that a stray record counts too).
    pub fn partial_uploads(&self, user: &str) -> usize {
        match &self.engines {
            Some(engines) => engines.partial_uploads(user),
            None => std::fs::read_dir(self.root().join("var/partials").join(user))
                .map_or(0, Iterator::count),
        }
    }

    /// Makes `user`'s partial uploads look `age` old, as if their clients had gone that long ago.
    pub fn age_partials(&self, user: &str, age: Duration) {
        if let Some(engines) = &self.engines {
            return engines.age_partials(user, age);
        }
        let then = std::time::SystemTime::now() - age;
        for entry in
            std::fs::read_dir(self.root().join("var/partials").join(user)).expect("partials")
        {
            let file = std::fs::File::options().write(true).open(entry.expect("entry").path());
            file.expect("open a partial").set_modified(then).expect("age a partial");
        }
    }

    /// Spoils what `user`'s partial uploads hold, as a failing disk would: one byte flipped in
    /// the middle of each partial file (local) or of each first stored piece (s3). Returns how
    /// many it spoiled.
    pub fn corrupt_partials(&self, user: &str) -> usize {
        if let Some(engines) = &self.engines {
            return engines.corrupt_partials(user);
        }
        local_partials(self.root(), user).map(|entry| flip_middle_byte(&entry.path())).count()
    }

    /// How many files (not directories) `user` has beneath the directory `dir`, however deep.
    pub fn files_beneath(&self, user: &str, dir: &str) -> usize {
        match &self.engines {
            Some(engines) => engines.files_beneath(user, dir),
            None => local_files(&self.home(user).join(dir)).count(),
        }
    }

    /// Makes `count` empty files named `{prefix}{i:06}` in `user`'s directory `dir`, which must
    /// exist: a huge directory, made behind the server's back.
    pub fn empty_files(&self, user: &str, dir: &str, prefix: &str, count: usize) {
        if let Some(engines) = &self.engines {
            return engines.empty_files(user, dir, prefix, count);
        }
        let dir = self.home(user).join(dir);
        for i in 0..count {
            std::fs::File::create(dir.join(format!("{prefix}{i:06}"))).expect("create");
        }
    }

    /// Bytes in the files (not the directories) of `user`'s home.
    pub fn stored_bytes(&self, user: &str) -> u64 {
        match &self.engines {
            Some(engines) => engines.stored_bytes(user),
            None => local_files(&self.home(user)).sum(),
        }
    }

    /// Puts a file with `data` at `path` in `user`'s home, making its parent directories: on the
    /// local backend straight onto the disk, on the s3 backend through a session of that user
    /// (the server must be running).
    pub fn place(&self, user: &str, path: &str, data: &[u8]) {
        if self.is_local() {
            let file = self.home(user).join(path);
            std::fs::create_dir_all(file.parent().expect("a parent")).expect("parent directories");
            std::fs::write(file, data).expect("place a file");
            return;
        }
        let staged = tempfile::NamedTempFile::new().expect("staging file");
        std::fs::write(staged.path(), data).expect("stage the file");
        self.as_user(user, path, Change::Put(staged.path()));
    }

    /// Makes the directory `path` (and its parents) in `user`'s home, like [`TestServer::place`].
    pub fn make_dir(&self, user: &str, path: &str) {
        if self.is_local() {
            std::fs::create_dir_all(self.home(user).join(path)).expect("make a directory");
            return;
        }
        self.as_user(user, path, Change::MakeDir);
    }

    /// Removes the file `path` from `user`'s home, like [`TestServer::place`].
    pub fn remove_file(&self, user: &str, path: &str) {
        if self.is_local() {
            std::fs::remove_file(self.home(user).join(path)).expect("remove a file");
            return;
        }
        self.as_user(user, path, Change::Remove);
    }

    /// Makes `change` at `path` through a session of `user`.
    fn as_user(&self, user: &str, path: &str, change: Change<'_>) {
        let password = self.passwords.get(user).expect("a user added by the test");
        let remote = wharf_common::path::RemotePath::parse(&format!("/{path}")).expect("a path");
        let options = crate::client::options(self);
        on_own_runtime(async {
            let session = wharf::session::Session::open(&options, user, password)
                .await
                .expect("log in to change a home");
            match change {
                Change::MakeDir => session.mkdir(&remote, true).await.expect("make a directory"),
                Change::Remove => session.remove(&remote, false).await.expect("remove a file"),
                Change::Put(upload) => {
                    if !remote.parent().is_root() {
                        session.mkdir(&remote.parent(), true).await.expect("parent directories");
                    }
                    session.put(upload, &remote, false, &|_| {}).await.expect("place a file");
                }
            }
            session.close().await;
        });
    }
}

/// The data files of `user`'s partial uploads under the local backend's `root`.
fn local_partials(root: &Path, user: &str) -> impl Iterator<Item = std::fs::DirEntry> {
    let entries = std::fs::read_dir(root.join("var/partials").join(user)).into_iter().flatten();
    entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
}

/// Bytes of all partial uploads `user` has under the local backend's `root`.
fn local_partial_bytes(root: &Path, user: &str) -> u64 {
    local_partials(root, user).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum()
}

/// Flips one byte in the middle of a file, in place: a concurrent append by a writer that is
/// still finishing cannot undo it.
pub fn flip_middle_byte(path: &Path) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::options().read(true).write(true).open(path).expect("partial");
    let middle = file.metadata().expect("metadata").len() / 2;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, middle).expect("read");
    file.write_all_at(&[byte[0] ^ 0xff], middle).expect("write");
}

/// The files beneath `dir`, however deep, with their sizes.
fn local_files(dir: &Path) -> Box<dyn Iterator<Item = u64>> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok);
    Box::new(entries.flat_map(|entry| match entry.file_type() {
        Ok(kind) if kind.is_dir() => local_files(&entry.path()),
        _ => Box::new(std::iter::once(entry.metadata().map_or(0, |m| m.len()))),
    }))
}
