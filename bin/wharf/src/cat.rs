//! `cat`: remote files written to the output, as lftp's `cat` does, each only once its whole
//! SHA-256 has been verified: a file is downloaded like any other (into a temporary folder), and
//! not a byte of it is shown before it checks out.

use std::io::{IsTerminal as _, Write};

use tokio::io::AsyncReadExt as _;

use crate::error::{ClientError, Result};
use crate::session::Session;

/// Bytes copied to the output at a time.
const CHUNK: usize = 256 * 1024;

/// `cat REMOTE...`: each file in turn (wildcards match remote names), stopping at the first that
/// fails. On a terminal, control characters are shown escaped, as names are
/// ([`crate::format::printable`]); into a pipe or a file the bytes go as they are.
pub async fn cat(session: &Session, paths: &[String], out: &mut (dyn Write + Send)) -> Result<()> {
    let raw = !std::io::stdout().is_terminal();
    let local = |err| ClientError::local("a temporary folder for cat", err);
    let scratch = tempfile::tempdir().map_err(local)?;
    for remote in crate::expand::remote_paths(session, paths).await? {
        let file = scratch.path().join("cat");
        session.get(&remote, &file, false, &|_| {}).await?;
        let mut verified = tokio::fs::File::open(&file).await.map_err(local)?;
        let mut chunk = vec![0; CHUNK];
        // On a terminal: the bytes of a character cut by the chunk's end, kept for the next.
        let mut pending = Vec::new();
        loop {
            let read = verified.read(&mut chunk).await.map_err(local)?;
            if raw {
                let written = out.write_all(&chunk[..read]);
                written.map_err(|err| ClientError::local("writing output", err))?;
            } else {
                pending.extend_from_slice(&chunk[..read]);
                let whole = match std::str::from_utf8(&pending) {
                    Err(cut) if read > 0 && cut.error_len().is_none() => cut.valid_up_to(),
                    _ => pending.len(),
                };
                crate::exec::emit(out, &String::from_utf8_lossy(&pending[..whole]))?;
                pending.drain(..whole);
            }
            if read == 0 {
                break;
            }
        }
        tokio::fs::remove_file(&file).await.map_err(local)?;
    }
    Ok(())
}
