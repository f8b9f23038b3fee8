//! `partials` → `partials {partials}`, and `drop_partials {path?}` → `dropped {count, bytes}`: what
//! interrupted uploads keep, and giving that space back.
//!
//! A partial that an upload is writing right now is never dropped: it is claimed, and dropping takes
//! the claim first.

use super::{CmdResult, Session, parse_path};
use crate::storage::{StorageError, partial_key};
use wharf_common::proto::{ErrorCode, Reply};

pub async fn list(session: &Session) -> CmdResult {
    let partials = session.home.partials().await?;
    Ok(Reply::Partials { partials: partials.into_iter().map(|(_, upload)| upload).collect() })
}

pub async fn drop(session: &Session, path: Option<&str>) -> CmdResult {
    let keys: Vec<String> = match path {
        Some(path) => {
            let key = partial_key(&parse_path(path)?);
            let partials = session.home.partials().await?;
            if !partials.iter().any(|(found, _)| *found == key) {
                return Err(StorageError::new(
                    ErrorCode::NotFound,
                    format!("{path}: no partial upload"),
                ));
            }
            vec![key]
        }
        None => session.home.partials().await?.into_iter().map(|(key, _)| key).collect(),
    };
    let ledger = session.ledger.get().await?;
    let (mut count, mut bytes) = (0, 0);
    for key in keys {
        let Some(_claim) = session.ctx.uploads.try_claim(&session.upload_key(&key)) else {
            if path.is_some() {
                return Err(StorageError::new(
                    ErrorCode::Busy,
                    "that upload is running right now; interrupt it first",
                ));
            }
            continue;
        };
        let freed = session.home.discard_upload(&key).await?;
        ledger.release(freed);
        count += 1;
        bytes += freed;
    }
    Ok(Reply::Dropped { count, bytes })
}
