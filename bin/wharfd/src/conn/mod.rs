//! One client connection, from handshake to close.
//!
//! A connection goes through two phases on its control stream (the first bidirectional stream the
//! client opens): [`login`], bounded by the login timeout, then [`requests`], which serves commands
//! concurrently until the client leaves, goes idle, breaks the protocol or the server shuts down.
//! Frames are read by a task of their own ([`io::spawn_reader`]) so that no half-read frame is ever
//! dropped by a `select!`.

mod io;
mod login;
mod requests;

use std::sync::Arc;
use wharf_common::net::CloseCodeExt as _;

use tokio::sync::watch;
use wharf_common::proto::CloseCode;

use crate::context::ServerContext;

/// Why a connection ends, and what the client is told.
#[derive(Debug)]
pub struct Close {
    pub code: CloseCode,
    pub reason: String,
}

impl Close {
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Close {
        Close { code, reason: reason.into() }
    }
}

/// Serves one established connection until it ends.
pub async fn handle(
    conn: quinn::Connection,
    ctx: Arc<ServerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let close = run(&conn, ctx, &mut shutdown).await;
    // How the path behaved, for whoever tunes `[transport]`: at debug level, one line per connection.
    let stats = conn.stats();
    tracing::debug!(
        rtt_ms = stats.path.rtt.as_millis() as u64,
        mtu = stats.path.current_mtu,
        cwnd = stats.path.cwnd,
        sent_packets = stats.path.sent_packets,
        lost_packets = stats.path.lost_packets,
        congestion_events = stats.path.congestion_events,
        black_holes = stats.path.black_holes_detected,
        "path"
    );
    if logged_out(&conn) {
        tracing::info!("client logged out");
    } else {
        tracing::info!(code = ?close.code, reason = %close.reason, "connection closed");
    }
    conn.close(close.code.varint(), close.reason.as_bytes());
}

async fn run(
    conn: &quinn::Connection,
    ctx: Arc<ServerContext>,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    let login_timeout = ctx.config.auth.login_timeout();
    let logged_in = tokio::select! {
        outcome = tokio::time::timeout(login_timeout, login::run(conn, &ctx)) => match outcome {
            Ok(Ok(logged_in)) => logged_in,
            Ok(Err(close)) => return close,
            Err(_) => return Close::new(CloseCode::LoginTimeout, "no login within the time allowed"),
        },
        () = stopping(shutdown) => {
            return Close::new(CloseCode::ShuttingDown, "server shutting down");
        }
    };
    let _open = crate::metrics::global().session();
    requests::run(logged_in, ctx, shutdown).await
}

/// Whether the client closed the connection itself, normally: a logout, not a lost connection.
fn logged_out(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == CloseCode::Normal.varint()
    )
}

/// Completes once the server starts shutting down. (The `watch` guard is dropped inside, so the
/// future stays `Send` wherever it is awaited.)
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
