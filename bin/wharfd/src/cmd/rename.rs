//! `rename {from, to}` → `ok`: both paths inside the home; a replaced file's bytes go back to the quota.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, from: &str, to: &str) -> CmdResult {
    let (from, to) = (parse_path(from)?, parse_path(to)?);
    let ledger = session.ledger.get().await?;
    ledger.release(session.home.rename(&from, &to).await?);
    Ok(Reply::Ok)
}
