//! The two storage ends of a transfer: a [`Source`] the sender reads pieces from, and a
//! [`Destination`] the receiver writes pieces into.
//!
//! The engine never sees a file. The client's ends are local files; the server's are whatever its
//! storage backend owns (a partial file beside the home today, an object store's multipart upload
//! tomorrow). Every method is blocking and runs on a transfer thread ([`super::workers`]), never on
//! the async runtime, so a backend may do real I/O in them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::Ranges;

/// Where a sender reads the file's bytes.
pub trait Source: Send + Sync {
    /// Fills `buf` with the bytes at `offset`. A source shorter than that fails with
    /// [`io::ErrorKind::UnexpectedEof`]: the file changed after it was announced.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// Where a receiver writes the file's bytes, in any order, each byte once.
pub trait Destination: Send + Sync + 'static {
    /// The bytes it holds now, kept from an earlier attempt or written since.
    fn held(&self) -> io::Result<u64>;
    /// Drops everything it holds: a fresh start that must leave no old bytes behind as a tail.
    fn clear(&self) -> io::Result<()>;
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Writes bytes that will not be read back: the writer hashed them as they came. A destination
    /// may keep them out of its caches.
    fn write_once(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(bytes, offset)
    }
    /// Reads back bytes written before, to hash pieces that arrived ahead of those before them.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Records which ranges are in place, for a later resume. Called every
    /// [`super::CHECKPOINT_EVERY`] bytes and when the writer stops short of the whole file. A lost
    /// record only makes a resume send more, so failures are the implementation's to log.
    fn checkpoint(&self, _present: &Ranges) {}

    /// A hint that the bytes written so far will be made durable at the end: the destination may
    /// start on that now, so the final sync has little left to do.
    fn start_writeback(&self) {}
}

impl Source for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl Destination for File {
    fn held(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn clear(&self) -> io::Result<()> {
        self.set_len(0)
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn start_writeback(&self) {
        super::write::start_writeback(self);
    }
}

/// A destination whose progress records go to `record`: a local file with its metadata beside it.
pub struct Recorded<D, R> {
    pub dest: D,
    pub record: R,
}

/// A destination with something that must live exactly as long as the writing (a claim on the
/// partial, say): the writer drops it after its last write, even when the transfer was abandoned
/// before.
pub struct Held<D, G> {
    pub dest: D,
    pub guard: G,
}

/// Forwards the byte operations of a wrapper to the destination inside it.
macro_rules! forward_bytes {
    () => {
        fn held(&self) -> io::Result<u64> {
            self.dest.held()
        }
        fn clear(&self) -> io::Result<()> {
            self.dest.clear()
        }
        fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.dest.write_all_at(bytes, offset)
        }
        fn write_once(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.dest.write_once(bytes, offset)
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.dest.read_exact_at(buf, offset)
        }
        fn start_writeback(&self) {
            self.dest.start_writeback()
        }
    };
}

impl<D: Destination, R: Fn(&Ranges) + Send + Sync + 'static> Destination for Recorded<D, R> {
    forward_bytes!();

    fn checkpoint(&self, present: &Ranges) {
        (self.record)(present);
    }
}

impl<D: Destination, G: Send + Sync + 'static> Destination for Held<D, G> {
    forward_bytes!();

    fn checkpoint(&self, present: &Ranges) {
        self.dest.checkpoint(present);
    }
}

impl<D: Destination + ?Sized> Destination for Arc<D> {
    fn held(&self) -> io::Result<u64> {
        (**self).held()
    }
    fn clear(&self) -> io::Result<()> {
        (**self).clear()
    }
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(bytes, offset)
    }
    fn write_once(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_once(bytes, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn checkpoint(&self, present: &Ranges) {
        (**self).checkpoint(present);
    }
    fn start_writeback(&self) {
        (**self).start_writeback();
    }
}

/// A destination read back as a source, to hash what it holds.
pub(super) struct ReadBack<'a, D>(pub &'a D);

impl<D: Destination> Source for ReadBack<'_, D> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}
