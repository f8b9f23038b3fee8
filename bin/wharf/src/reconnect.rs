//! Riding out a dropped connection: a transfer that failed because its connection died reconnects
//! (a new QUIC connection, logged in again) and runs again, resuming, a bounded number of times.
//!
//! Connection migration already survives a change of address; this covers what it cannot: a
//! connection that timed out, was reset, or whose server restarted.

use std::time::Duration;

use wharf_common::proto::ErrorCode;

use crate::error::{ClientError, Result};
use crate::session::Session;

/// Reconnections one transfer may make before it gives up.
pub const RECONNECT_ATTEMPTS: u32 = 4;
/// Wait before the first reconnection; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How long a transfer refused with `shutting_down` waits for the server to close the connection
/// (it lets running transfers finish first, for its grace period) before reconnecting anyway.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// Whether the server refused the request because it is going down: the connection will close, and
/// the server may come back.
fn server_going_down(err: &ClientError) -> bool {
    matches!(err, ClientError::Remote { code: ErrorCode::ShuttingDown, .. })
}

/// Whether an error may be cured by reconnecting: the user's own interruption, a refused login
/// or a changed host key are final.
fn worth_reconnecting(err: &ClientError) -> bool {
    !matches!(err, ClientError::Interrupted(_) | ClientError::Auth(_) | ClientError::HostKey(_))
}

/// Runs `attempt(resume)`. Each time it fails because its connection was lost, reconnects and runs
/// it again, resuming (unless `resume` is false, when each run starts afresh). `on_reconnect` hears
/// of each reconnection with its number and the error that caused it.
pub async fn with_reconnects<T, F, Fut>(
    session: &Session,
    resume: bool,
    on_reconnect: impl Fn(u32, &ClientError),
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut reconnects = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let generation = session.generation();
        let err = match attempt(resume).await {
            // The error says the connection was lost, or (a stalled or reset lane, say) the link
            // turned out to be gone when the transfer failed.
            Err(err)
                if worth_reconnecting(&err)
                    && (matches!(err, ClientError::ConnectionLost(_))
                        || session.lost(generation)) =>
            {
                err
            }
            Err(err) if server_going_down(&err) => {
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, session.closed()).await;
                err
            }
            other => return other,
        };
        // Reconnect, retrying the connection itself within the same budget.
        loop {
            if reconnects == RECONNECT_ATTEMPTS {
                return Err(err);
            }
            reconnects += 1;
            on_reconnect(reconnects, &err);
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            match session.reconnect(generation).await {
                Ok(()) => break,
                Err(failed) if !worth_reconnecting(&failed) => return Err(failed),
                Err(_) => {}
            }
        }
    }
}
