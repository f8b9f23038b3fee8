//! Replacing a small file in one rename, beneath a directory handle: readers see the old contents
//! or the new, never a mix, and a crash leaves one or the other. The one way the server writes its
//! records (users, partial-upload metadata, digests).

use std::io::{self, Write as _};

use cap_std::fs::{Dir, Permissions, PermissionsExt as _};

/// Whether the new contents must survive a crash once this returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced, and the directory too: records that are the truth (a user's password hash).
    Synced,
    /// Left to the kernel: hints whose loss costs a resend or a rehash, never wrong data.
    Hint,
}

/// Replaces `dir/name` with `contents`, readable and writable by the server's user alone (mode
/// 0600, from the first byte: the temporary file is created so).
pub fn replace(dir: &Dir, name: &str, contents: &[u8], durability: Durability) -> io::Result<()> {
    let mut temp = cap_tempfile::TempFile::new(dir)?;
    temp.as_file().set_permissions(Permissions::from_mode(0o600))?;
    temp.write_all(contents)?;
    if durability == Durability::Synced {
        temp.as_file().sync_all()?;
    }
    temp.replace(name)?;
    if durability == Durability::Synced {
        // The rename is durable only once the directory is. (`open_dir` gives an O_PATH handle,
        // which fsync refuses, hence a read-only open of ".".)
        dir.open_with(".", cap_std::fs::OpenOptions::new().read(true))?.sync_all()?;
    }
    Ok(())
}
