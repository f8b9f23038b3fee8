//! Where things live under a server root (`--root`, the current directory by default).
//!
//! ```text
//! certs/server.crt, certs/server.key   written by `wharfd setup`
//! etc/wharfd.toml                      configuration
//! var/users/NAME.toml                  user records (Argon2id hashes, quotas)
//! var/homes/NAME/                      each user's home, the root of their jail
//! var/partials/NAME/                   partial uploads (outside the home, so never listed)
//! var/digests/NAME/                    verified SHA-256 digests of stored files, by inode
//! var/log/wharfd.log, var/log/audit.log
//! ```

use std::path::{Path, PathBuf};

/// Paths beneath one server root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.root.join("certs")
    }

    pub fn cert(&self) -> PathBuf {
        self.certs_dir().join("server.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.certs_dir().join("server.key")
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("etc").join("wharfd.toml")
    }

    pub fn var(&self) -> PathBuf {
        self.root.join("var")
    }

    pub fn users(&self) -> PathBuf {
        self.var().join("users")
    }

    pub fn homes(&self) -> PathBuf {
        self.var().join("homes")
    }

    pub fn partials(&self) -> PathBuf {
        self.var().join("partials")
    }

    pub fn digests(&self) -> PathBuf {
        self.var().join("digests")
    }

    pub fn logs(&self) -> PathBuf {
        self.var().join("log")
    }

    /// Every directory `setup` creates.
    pub fn dirs(&self) -> [PathBuf; 5] {
        [self.certs_dir(), self.root.join("etc"), self.users(), self.homes(), self.logs()]
    }
}
