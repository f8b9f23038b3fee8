//! Where things live under a server root (`--root`, the current directory by default).
//!
//! ```text
//! certs/server.crt, certs/server.key   written by `wharfd setup`
//! certs/reset.key                      the stateless-reset secret, made once
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

    /// The secret behind QUIC stateless resets, kept across restarts (see [`crate::setup`]).
    pub fn reset_key(&self) -> PathBuf {
        self.certs_dir().join("reset.key")
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
    pub fn dirs(&self) -> [PathBuf; 7] {
        [
            self.certs_dir(),
            self.root.join("etc"),
            self.users(),
            self.homes(),
            self.partials(),
            self.digests(),
            self.logs(),
        ]
    }

    /// Whether `dir` holds secrets or other users' data, and so is for the service's user alone:
    /// password hashes, partial uploads, digests, logs. Homes are 0700 each, one by one.
    pub fn is_private(&self, dir: &Path) -> bool {
        [self.users(), self.partials(), self.digests(), self.logs(), self.certs_dir()]
            .iter()
            .any(|private| private == dir)
    }
}

/// Creates `dir` (and its parents) if missing and makes it readable by its owner only, also when it
/// already existed with looser permissions (a root made by an older version).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
