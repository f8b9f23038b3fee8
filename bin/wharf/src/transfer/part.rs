//! A download's partial file: bytes land in `NAME.wharf-part`, and what they belong to (the
//! server's file version) and which ranges are in place are recorded in `NAME.wharf-part.meta`. A
//! part whose version no longer matches is started over. Like scp and sftp, a download is not
//! fsynced: the local disk's durability is the local system's business, and syncing costs a second
//! pass.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wharf_common::claims::Claim;
use wharf_common::release::freeing_later_at;
use wharf_common::transfer::{
    Destination, Held, PartialRecord, RESUME_MIN_SIZE, Ranges, Recorded, Unbuffered,
};

use super::local_error;
use crate::error::{ClientError, Result};
use crate::local::blocking;

/// The partial file of a download to `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".wharf-part");
    PathBuf::from(name)
}

/// What a partial download belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RemoteVersion {
    version: String,
}

/// The partial of one download, and its record.
#[derive(Debug, Clone)]
pub(super) struct LocalPart {
    pub part: PathBuf,
    meta: PathBuf,
    /// The file the partial becomes.
    dest: PathBuf,
}

impl LocalPart {
    pub fn of(dest: &Path) -> LocalPart {
        let part = part_path(dest);
        let mut meta = part.clone().into_os_string();
        meta.push(".meta");
        LocalPart { part, meta: PathBuf::from(meta), dest: dest.to_owned() }
    }

    /// The ranges in place and the remote version they belong to, if a partial and its record
    /// are both there and agree.
    pub async fn existing(&self) -> (Ranges, Option<String>) {
        let (part, meta) = (self.part.clone(), self.meta.clone());
        blocking(move || {
            let (Ok(part), Ok(text)) = (std::fs::metadata(&part), std::fs::read_to_string(&meta))
            else {
                return (Ranges::new(), None);
            };
            let record = PartialRecord::<RemoteVersion>::parse(&text);
            match record.and_then(|r| Some((r.present_within(part.len())?, r.of.version))) {
                Some((present, version)) => (present, Some(version)),
                None => (Ranges::new(), None),
            }
        })
        .await
    }

    /// Opens the partial for a download of `size` bytes of `version`, whose `present` ranges are
    /// in place, and records that at once. The claim lives as long as the writing.
    pub async fn open(
        &self,
        size: u64,
        version: String,
        present: Ranges,
        claim: Arc<Claim<PathBuf>>,
    ) -> Result<impl Destination> {
        let (part, meta, dest) = (self.part.clone(), self.meta.clone(), self.dest.clone());
        let opened = blocking(move || {
            if let Some(refusal) = not_to_replace(&dest) {
                return Ok(Err(refusal));
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&part)?;
            // Small downloads are never resumed, so nothing is recorded for them.
            let resumable = (size >= RESUME_MIN_SIZE).then_some((meta, RemoteVersion { version }));
            let record = move |present: &Ranges| record(resumable.as_ref(), present);
            let file = Unbuffered::new(file, size, |flags| {
                std::fs::OpenOptions::new().write(true).custom_flags(flags).open(&part)
            });
            let dest = Held { dest: Recorded { dest: file, record }, guard: claim };
            dest.checkpoint(&present);
            Ok::<_, std::io::Error>(Ok(dest))
        })
        .await
        .map_err(local_error(&self.part))?;
        opened.map_err(|refusal| ClientError::local(self.dest.display().to_string(), refusal))
    }

    /// Removes the partial and its record.
    pub async fn discard(&self) {
        let (part, meta) = (self.part.clone(), self.meta.clone());
        blocking(move || {
            let _ = std::fs::remove_file(part);
            let _ = std::fs::remove_file(meta);
        })
        .await;
    }

    /// Renames the verified partial to the file it becomes, and drops its record.
    pub async fn install(&self) -> Result<()> {
        let (part, meta, final_path) = (self.part.clone(), self.meta.clone(), self.dest.clone());
        blocking(move || {
            // A large file replaced here is freed after the install, not inside the rename.
            freeing_later_at(&final_path, || std::fs::rename(&part, &final_path))?;
            let _ = std::fs::remove_file(&meta);
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(local_error(&self.dest))
    }
}

/// Why the verified partial must not be renamed over what is at `dest`, if it must not: checked
/// before anything is written. A folder would refuse the rename only once every byte had come,
/// leaving the partial behind; a device, FIFO or socket would be replaced by a plain file (`get
/// big /dev/null`, sftp's speed test, once made root's /dev/null one). A file, or a link (the link
/// itself is replaced), may be.
fn not_to_replace(dest: &Path) -> Option<std::io::Error> {
    let meta = std::fs::symlink_metadata(dest).ok()?;
    if meta.is_dir() {
        Some(std::io::Error::from(std::io::ErrorKind::IsADirectory))
    } else if meta.is_file() || meta.is_symlink() {
        None
    } else {
        Some(std::io::Error::other(
            "not a regular file: a download is written beside its name and renamed over it once \
             verified, which would replace it",
        ))
    }
}

/// Records which ranges are in place, in the record file `resumable` names.
fn record(resumable: Option<&(PathBuf, RemoteVersion)>, present: &Ranges) {
    let Some((meta, version)) = resumable else { return };
    let written = PartialRecord::new(version.clone(), present)
        .to_text()
        .and_then(|text| crate::local::replace_file(meta, text.as_bytes()));
    if let Err(err) = written {
        tracing::debug!(%err, "cannot record the progress of a download");
    }
}
