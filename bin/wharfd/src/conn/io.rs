//! The control stream's reader and writer tasks.

use tokio::sync::mpsc;
use wharf_common::frame::{FrameError, read_message, write_message};
use wharf_common::net::CONTROL_PRIORITY;
use wharf_common::proto::{CloseCode, Request};

use crate::cmd::Outgoing;

use super::Close;

/// What the reader hands over: a request, or why reading stopped.
pub type Incoming = Result<Request, Close>;

/// Reads requests off `recv` into a channel, until the stream ends or breaks. The final item says
/// why reading stopped; a clean end of stream is a normal close.
pub fn spawn_reader(mut recv: quinn::RecvStream) -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let item = match read_message::<Request, _>(&mut recv).await {
                Ok(Some(request)) => Ok(request),
                Ok(None) => Err(Close::new(CloseCode::Normal, "client finished")),
                // The connection is gone (closed, reset, timed out): nothing left to tell the client.
                Err(FrameError::Io(err)) => {
                    Err(Close::new(CloseCode::Normal, format!("connection lost: {err}")))
                }
                Err(err) => Err(Close::new(CloseCode::ProtocolError, err.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// Writes responses from a channel onto `send` until every sender is gone, then finishes the stream
/// and waits (briefly) for the client to acknowledge it, so that final replies are not lost to an
/// immediate close.
pub fn spawn_writer(
    mut send: quinn::SendStream,
) -> (mpsc::Sender<Outgoing>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let _ = send.set_priority(CONTROL_PRIORITY);
    let handle = tokio::spawn(async move {
        while let Some(outgoing) = rx.recv().await {
            let response = match outgoing {
                Outgoing::Response(response) => response,
                Outgoing::Flushed(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            if let Err(err) = write_message(&mut send, &response).await {
                tracing::debug!(%err, "control stream write failed");
                return;
            }
        }
        if send.finish().is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
        }
    });
    (tx, handle)
}
