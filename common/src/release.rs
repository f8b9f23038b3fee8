//! Freeing the blocks of a replaced or removed file after the reply instead of before it.
//!
//! A rename over an older file, or the unlink of `rm`, frees the old file's blocks inside that
//! call when nothing else holds the file open. On ext4 mounted with `discard`, as virtual machines'
//! disks often are, that is slow: 0.25 s for a 1 GiB file on our machine, spent in the rename that
//! installs an upload, with the user waiting for nothing they asked for. Whoever replaces or removes
//! a large file holds it open across the rename or unlink ([`HOLD_MIN_BYTES`]) and hands the handle
//! to [`close_later`]: the blocks are freed when it closes, on a thread of its own. The server
//! holds files through its jail's directory handles; the client, through [`freeing_later_at`].

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, sync_channel};

/// Files smaller than this are freed in place: their blocks cost less to free (about 0.25 ms a
/// MiB here) than holding them open does.
pub const HOLD_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Handles waiting for the closing thread. Past this many it is behind, and callers close their
/// own, which bounds the open files and the space held by unlinked ones.
const WAITING_MAX: usize = 64;

/// The one thread that closes held files, started by the first; `None` if it could not start.
static CLOSER: OnceLock<Option<SyncSender<File>>> = OnceLock::new();

/// Closes `file` on the closing thread, or here if that thread is behind or could not start.
pub fn close_later(file: File) {
    let closer = CLOSER.get_or_init(|| {
        let (handles, waiting) = sync_channel::<File>(WAITING_MAX);
        std::thread::Builder::new()
            .name("wharf-closer".into())
            .spawn(move || waiting.into_iter().for_each(drop))
            .ok()
            .map(|_| handles)
    });
    if let Some(handles) = closer {
        // A full queue hands the file back inside the error, which closes it here.
        let _ = handles.try_send(file);
    }
}

/// Runs `drop_it`, a rename over the local file `path` or its unlink, with the file held open if it
/// is a large regular file, so that its blocks are freed by [`close_later`] and not inside the call.
pub fn freeing_later_at<T>(path: &Path, drop_it: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    run_holding(hold_at(path), drop_it)
}

/// Runs `drop_it` (a rename over, or an unlink of, the file `held` was opened on) and then hands
/// `held` to [`close_later`]. If `drop_it` fails, `held` closes here: nothing was dropped.
pub fn run_holding<T>(
    held: Option<File>,
    drop_it: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let result = drop_it()?;
    if let Some(held) = held {
        close_later(held);
    }
    Ok(result)
}

/// Opens `path` to hold it if it is a regular file of at least [`HOLD_MIN_BYTES`].
fn hold_at(path: &Path) -> Option<File> {
    if std::fs::symlink_metadata(path).ok()?.len() < HOLD_MIN_BYTES {
        return None;
    }
    open_to_hold(path)
}

/// Opens the regular file `path` for holding: never through a symlink in the last component, and
/// never waiting on a FIFO swapped in since its size was read.
fn open_to_hold(path: &Path) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process still has a descriptor open on a file whose path was `path`.
    fn still_open(path: &std::path::Path) -> bool {
        let deleted = format!("{} (deleted)", path.display());
        std::fs::read_dir("/proc/self/fd").expect("fds").flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == deleted.as_str())
        })
    }

    #[test]
    fn only_large_regular_files_are_held_and_never_through_a_symlink_or_a_fifo() {
        let dir = std::env::temp_dir().join(format!("wharf-hold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let large = dir.join("large");
        File::create(&large).and_then(|f| f.set_len(HOLD_MIN_BYTES)).expect("sparse file");
        let small = dir.join("small");
        File::create(&small).and_then(|f| f.set_len(HOLD_MIN_BYTES - 1)).expect("small file");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&large, &link).expect("symlink");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success(), "mkfifo");
        assert!(hold_at(&large).is_some(), "a large file is held");
        assert!(hold_at(&small).is_none(), "a small one is freed in place");
        assert!(hold_at(&dir.join("absent")).is_none());
        // What the size check cannot see: a name swapped for a symlink or a FIFO after it.
        assert!(open_to_hold(&link).is_none(), "a symlink is never followed");
        let (opened, outcome) = std::sync::mpsc::channel();
        let fifo_path = fifo.clone();
        std::thread::spawn(move || opened.send(open_to_hold(&fifo_path).is_none()));
        // Without O_NONBLOCK, opening a FIFO to read waits for a writer forever.
        let refused = outcome.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(refused, Ok(true), "a FIFO is refused at once");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_held_file_outlives_its_unlink_until_the_closing_thread_drops_it() {
        let dir = std::env::temp_dir().join(format!("wharf-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("old");
        std::fs::write(&path, b"the replaced bytes").expect("write");
        let held = File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        assert!(still_open(&path), "the handle keeps the unlinked file");
        close_later(held);
        let closed = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !still_open(&path)
        });
        assert!(closed, "the closing thread never closed the file");
        std::fs::remove_dir(&dir).expect("clean up");
    }
}
