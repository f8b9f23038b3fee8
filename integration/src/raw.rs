//! A client that speaks the wire directly, so that tests can send what `wharf` never would: lying
//! sizes, stray bytes, stalled streams, unknown transfer ids.

use std::sync::Arc;
use std::time::Duration;

use wharf_common::frame::{decode_body, encode_frame, read_frame, read_message, write_message};
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::{Command, ErrorCode, QuotaInfo, Reply, Request, Response};
use wharf_common::transfer::{LaneFrame, StreamHeader};

use crate::server::TestServer;

/// How long a test waits for any one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A raw connection with its control stream.
pub struct RawClient {
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects to `server`, trusting its certificate, and opens the control stream.
    pub async fn connect(server: &TestServer) -> RawClient {
        let verifier = wharf::trust::ca_verifier(&server.cert()).expect("CA verifier");
        let crypto = wharf_common::tls::client_crypto(verifier).expect("client crypto");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(server.addr(), "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let (send, recv) = conn.open_bi().await.expect("control stream");
        RawClient { conn, send, recv, _endpoint: endpoint }
    }

    /// Connects and logs in.
    pub async fn login(server: &TestServer, user: &str, password: &str) -> RawClient {
        let mut client = RawClient::connect(server).await;
        let cmd = Command::Login { user: user.into(), password: password.into() };
        client.send(1, cmd).await;
        match client.reply().await.reply {
            Reply::LoggedIn { .. } => client,
            other => panic!("login failed: {other:?}"),
        }
    }

    pub async fn send(&mut self, id: u32, cmd: Command) {
        write_message(&mut self.send, &Request { id, cmd }).await.expect("send request");
    }

    /// Writes raw bytes on the control stream.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("send bytes");
    }

    /// Asks for the quota as request `id` and returns it.
    pub async fn quota(&mut self, id: u32) -> QuotaInfo {
        self.send(id, Command::Quota).await;
        match self.reply().await.reply {
            Reply::Quota { quota } => quota,
            other => panic!("expected quota, got {other:?}"),
        }
    }

    /// Ends the control stream (what a client that sends a partial frame and stops would do).
    pub fn finish_control(&mut self) {
        let _ = self.send.finish();
    }

    /// Waits for the server to close the connection and returns its application close code (`None`
    /// for any other end, such as a timeout).
    pub async fn close_code(&self) -> Option<u64> {
        let closed = tokio::time::timeout(REPLY_TIMEOUT, self.conn.closed()).await;
        match closed.expect("the server closes the connection in time") {
            quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        }
    }

    /// The next message on the control stream.
    pub async fn reply(&mut self) -> Response {
        let next =
            tokio::time::timeout(REPLY_TIMEOUT, read_message::<Response, _>(&mut self.recv)).await;
        next.expect("a reply in time").expect("a well-formed reply").expect("the stream is open")
    }

    /// Opens an upload stream for `transfer` and writes its header.
    pub async fn open_transfer(&self, transfer: u64) -> quinn::SendStream {
        self.open_lane(StreamHeader::of(transfer)).await
    }

    /// Opens the lane of the eager upload numbered `number` and writes its header.
    pub async fn open_eager(&self, number: u64) -> quinn::SendStream {
        self.open_lane(StreamHeader::eager(number)).await
    }

    async fn open_lane(&self, header: StreamHeader) -> quinn::SendStream {
        let mut stream = self.conn.open_uni().await.expect("open stream");
        stream.write_all(&encode_frame(&header).expect("header")).await.expect("write header");
        stream
    }
}

/// A plain upload request: `path`, `size` bytes, from source version `v`, no time kept, not eager,
/// into a folder that exists.
pub fn upload(path: &str, size: u64, resume: bool) -> Command {
    Command::Put {
        path: path.into(),
        size,
        source: "v".into(),
        resume,
        mtime: None,
        eager: None,
        parents: false,
    }
}

/// The error code of a reply that must be an error.
pub fn error_code(reply: &Reply) -> ErrorCode {
    match reply {
        Reply::Error(err) => err.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Writes a segment frame claiming `len` bytes at `offset`, then `bytes` (which may be more or fewer).
pub async fn write_segment(
    lane: &mut quinn::SendStream,
    (offset, len): (u64, u64),
    bytes: &[u8],
) -> Result<(), quinn::WriteError> {
    lane.write_all(&encode_frame(&LaneFrame::Segment { offset, len }).expect("segment")).await?;
    lane.write_all(bytes).await
}

/// Writes the end frame claiming `digest` and finishes the lane.
pub async fn write_end(
    lane: &mut quinn::SendStream,
    digest: Sha256Digest,
) -> Result<(), quinn::WriteError> {
    let end = LaneFrame::End { sha256: digest.to_string() };
    lane.write_all(&encode_frame(&end).expect("end")).await?;
    let _ = lane.finish();
    Ok(())
}

/// What one lane of a download carried.
#[derive(Debug, Default)]
pub struct Lane {
    /// The transfer its header named.
    pub transfer: u64,
    /// Its pieces in order: offset and bytes.
    pub pieces: Vec<(u64, Vec<u8>)>,
    /// The digest of its end frame.
    pub sha256: String,
}

/// Reads a lane to its end: header, pieces, end frame.
pub async fn read_lane(recv: &mut quinn::RecvStream) -> Lane {
    let header = wharf_common::transfer::read_header(recv).await.expect("lane header");
    let mut lane = Lane { transfer: header.transfer, ..Lane::default() };
    loop {
        let body = read_frame(recv).await.expect("lane frame").expect("an end frame");
        match decode_body::<LaneFrame>(&body).expect("a lane frame") {
            LaneFrame::Segment { offset, len } => {
                let mut bytes = vec![0; usize::try_from(len).expect("piece length")];
                recv.read_exact(&mut bytes).await.expect("piece bytes");
                lane.pieces.push((offset, bytes));
            }
            LaneFrame::End { sha256 } => {
                lane.sha256 = sha256;
                return lane;
            }
        }
    }
}
