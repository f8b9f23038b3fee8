//! `rename {from, to}` → `ok`: both paths inside the home; a replaced file's bytes go back to the quota.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, from: &str, to: &str) -> CmdResult {
    let freed = session.home.rename(&parse_path(from)?, &parse_path(to)?).await?;
    session.ledger.release(freed);
    Ok(Reply::Ok)
}
