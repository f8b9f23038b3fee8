//! `chmod {path, mode}` → `ok`: permission bits only, so no set-id or sticky bit ever comes from a
//! client.

use super::{CmdResult, Session, parse_path};
use crate::storage::StorageError;
use wharf_common::proto::{ErrorCode, Reply};

/// The bits a client may set.
const PERMISSION_BITS: u32 = 0o777;

pub async fn run(session: &Session, path: &str, mode: u32) -> CmdResult {
    let path = parse_path(path)?;
    if mode & !PERMISSION_BITS != 0 {
        return Err(StorageError::new(
            ErrorCode::BadRequest,
            format!("{path}: mode {mode:o} has bits beyond {PERMISSION_BITS:o}"),
        ));
    }
    session.home.chmod(&path, mode).await?;
    Ok(Reply::Ok)
}
