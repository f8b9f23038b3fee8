//! Large files written around the page cache (`O_DIRECT`), where the filesystem takes it.
//!
//! The writer hashes a received file as its bytes arrive, so the bytes that land right where the
//! hash has reached are never read again before the file is installed: copying them into the page
//! cache buys nothing and costs CPU on the cores the transfer needs. On our 2-core VM the copy of a
//! 1 GiB upload into the page cache was 44 % of wharfd's samples under `perf` (the pages fault
//! back in from the host's balloon; see `integration/BENCHMARK.md`). Bytes that arrive ahead of
//! the hash (another lane's piece) are read back once the bytes before them are in, so they stay
//! on the ordinary path, where the read finds them in the cache: written around it too, the
//! read-back went to the disk, and 1 GiB gets took 2.95–3.18 s instead of 2.38–2.79 s.
//!
//! A write goes around the cache only when its buffer, offset and length are all aligned to
//! [`DIRECT_ALIGN`]; the rest (a file's tail, a resume from an odd offset, a small chunk) takes the
//! ordinary path on the file's other handle. Both handles are one file, and Linux keeps them
//! coherent: a direct write first flushes and drops any cached page it overlaps. A filesystem that
//! refuses `O_DIRECT` at the open or at a write leaves the file on the ordinary path. Durability is
//! unchanged: a direct write may sit in the disk's cache, so whoever needs it still syncs the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Destination;

/// Alignment of a direct write's buffer, offset and length: the largest logical block size of
/// common disks, so that every device this runs on takes it.
pub const DIRECT_ALIGN: usize = 4096;

/// Files written around the page cache are at least this large: below it, the cache's copy costs
/// little, and a file that small is likely to be read again soon.
pub const DIRECT_FROM: u64 = 8 * 1024 * 1024;

/// The flag that opens a file for direct I/O, on systems that have one.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub const DIRECT_FLAG: Option<i32> = Some(libc::O_DIRECT);
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub const DIRECT_FLAG: Option<i32> = None;

/// A file whose bytes written once ([`Destination::write_once`]) go around the page cache where
/// the write allows it.
pub struct Unbuffered {
    file: File,
    /// The same file, opened again for direct writes.
    direct: Option<File>,
    /// Set once the filesystem refused a direct write.
    refused: AtomicBool,
    /// Bytes written around the cache.
    direct_bytes: AtomicU64,
}

impl Unbuffered {
    /// `file`, of which a transfer will write `size` bytes, and `reopen` to open the same file
    /// again, for writing, with the extra open flags it is given. A file under [`DIRECT_FROM`], a
    /// system without direct I/O, or a reopen that fails or finds another file, leaves every
    /// write on `file`.
    pub fn new(file: File, size: u64, reopen: impl FnOnce(i32) -> io::Result<File>) -> Unbuffered {
        let direct = DIRECT_FLAG
            .filter(|_| size >= DIRECT_FROM)
            .and_then(|flag| reopen(flag).ok())
            .filter(|direct| same_file(&file, direct));
        Unbuffered {
            file,
            direct,
            refused: AtomicBool::new(false),
            direct_bytes: AtomicU64::new(0),
        }
    }

    /// Bytes written around the page cache so far.
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes.load(Ordering::Relaxed)
    }

    /// Writes `bytes` around the cache; false if they must take the ordinary path.
    fn write_direct(&self, bytes: &[u8], offset: u64) -> io::Result<bool> {
        let Some(direct) = &self.direct else { return Ok(false) };
        if self.refused.load(Ordering::Relaxed) || !aligned(bytes, offset) {
            return Ok(false);
        }
        match FileExt::write_all_at(direct, bytes, offset) {
            Ok(()) => {
                self.direct_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(true)
            }
            // The filesystem takes the open but not the write (or wants a larger alignment):
            // whatever part went through is written again the ordinary way.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                self.refused.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}

/// Whether a direct write of `bytes` at `offset` meets [`DIRECT_ALIGN`] everywhere.
fn aligned(bytes: &[u8], offset: u64) -> bool {
    let align = DIRECT_ALIGN as u64;
    !bytes.is_empty()
        && bytes.as_ptr().align_offset(DIRECT_ALIGN) == 0
        && bytes.len().is_multiple_of(DIRECT_ALIGN)
        && offset.is_multiple_of(align)
}

fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Destination for Unbuffered {
    fn held(&self) -> io::Result<u64> {
        self.file.held()
    }

    fn clear(&self) -> io::Result<()> {
        self.file.clear()
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, bytes, offset)
    }

    fn write_once(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        if self.write_direct(bytes, offset)? {
            return Ok(());
        }
        FileExt::write_all_at(&self.file, bytes, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn start_writeback(&self) {
        self.file.start_writeback();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use super::*;

    /// A buffer of `len` bytes (`seed` repeated with its index) starting at an aligned address.
    fn aligned_bytes(len: usize, seed: u8) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; len + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        for (i, byte) in buf[start..start + len].iter_mut().enumerate() {
            *byte = seed.wrapping_add(i as u8);
        }
        (buf, start)
    }

    fn open(path: &Path, size: u64) -> Unbuffered {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("open");
        Unbuffered::new(file, size, |flags| {
            std::fs::OpenOptions::new().write(true).custom_flags(flags).open(path)
        })
    }

    /// Whether an aligned write to a file beside `path`, opened with [`DIRECT_FLAG`], goes through.
    fn takes_direct_writes(path: &Path) -> bool {
        let Some(flag) = DIRECT_FLAG else { return false };
        let probe = path.with_file_name("probe");
        let mut opened = std::fs::OpenOptions::new();
        opened.write(true).create(true).truncate(true).custom_flags(flag);
        let (block, start) = aligned_bytes(DIRECT_ALIGN, 0);
        let written = opened
            .open(&probe)
            .and_then(|file| FileExt::write_all_at(&file, &block[start..start + DIRECT_ALIGN], 0));
        let _ = std::fs::remove_file(probe);
        written.is_ok()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wharf-direct-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir.join("file")
    }

    #[test]
    fn aligned_writes_once_go_around_the_cache_and_the_rest_does_not() {
        let path = scratch("mixed");
        let takes_direct = takes_direct_writes(&path);
        let file = open(&path, DIRECT_FROM);
        let (chunk, start) = aligned_bytes(64 * 1024, 1);
        let chunk = &chunk[start..start + 64 * 1024];
        file.write_once(chunk, 0).expect("write");
        let direct = file.direct_bytes();
        // Unaligned in each way: the offset, the length, the buffer.
        file.write_once(&chunk[..4096], 64 * 1024 + 512).expect("write");
        file.write_once(&chunk[..1000], 128 * 1024).expect("write");
        file.write_once(&chunk[1..4097], 256 * 1024).expect("write");
        // Aligned, but to be read back: kept in the cache.
        file.write_all_at(chunk, 512 * 1024).expect("write");
        let on_disk = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_dir_all(path.with_file_name(""));

        if !takes_direct {
            eprintln!("skipped: this system or filesystem has no direct writes");
            return;
        }
        assert_eq!(direct, 64 * 1024, "the aligned chunk went around the cache");
        assert_eq!(file.direct_bytes(), direct, "the other writes took the ordinary path");
        assert_eq!(&on_disk[..64 * 1024], chunk);
        assert_eq!(&on_disk[64 * 1024 + 512..64 * 1024 + 512 + 4096], &chunk[..4096]);
        assert_eq!(&on_disk[128 * 1024..128 * 1024 + 1000], &chunk[..1000]);
        assert_eq!(&on_disk[256 * 1024..256 * 1024 + 4096], &chunk[1..4097]);
        assert_eq!(&on_disk[512 * 1024..], chunk);
    }

    #[test]
    fn a_direct_write_over_cached_bytes_is_what_reads_back() {
        let path = scratch("coherent");
        let file = open(&path, DIRECT_FROM);
        let (old, a) = aligned_bytes(8192, 7);
        let (new, b) = aligned_bytes(8192, 99);
        // Cached first (the ordinary path, unaligned by length), then overwritten around it.
        file.write_all_at(&old[a..a + 8191], 0).expect("write");
        let mut cached = vec![0u8; 8191];
        file.read_exact_at(&mut cached, 0).expect("read");
        file.write_once(&new[b..b + 8192], 0).expect("write");
        let mut read = vec![0u8; 8192];
        file.read_exact_at(&mut read, 0).expect("read");
        let _ = std::fs::remove_dir_all(path.with_file_name(""));
        assert_eq!(read, &new[b..b + 8192]);
    }

    #[test]
    fn small_files_and_other_files_stay_on_the_ordinary_path() {
        let path = scratch("small");
        let file = open(&path, DIRECT_FROM - 1);
        let (chunk, start) = aligned_bytes(4096, 3);
        file.write_once(&chunk[start..start + 4096], 0).expect("write");
        assert_eq!(file.direct_bytes(), 0, "a file under DIRECT_FROM");

        let other = path.with_file_name("other");
        let plain = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        let file = Unbuffered::new(plain, DIRECT_FROM, |_| {
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&other)
        });
        file.write_once(&chunk[start..start + 4096], 0).expect("write");
        let written = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_dir_all(path.with_file_name(""));
        assert_eq!(file.direct_bytes(), 0, "a reopen that found another file is not used");
        assert_eq!(written, &chunk[start..start + 4096]);
    }
}
