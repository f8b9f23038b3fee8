//! `quota` → `quota {used, reserved, limit}`. Re-reads the user record first, so a limit changed with
//! `wharfd user quota` shows at once.

use super::{CmdResult, Session};
use wharf_common::proto::Reply;

pub async fn run(session: &Session) -> CmdResult {
    let ledger = session.ledger.get().await?;
    if let Some(record) = session.ctx.auth.reload(&session.user).await {
        ledger.set_limit(record.quota);
    }
    Ok(Reply::Quota { quota: ledger.info() })
}
