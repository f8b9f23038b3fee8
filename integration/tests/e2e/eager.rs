//! Eager uploads on the wire: a small file's one lane sent without waiting for the `transfer`
//! reply. A lane may arrive before its request, after its request was refused, or twice; its
//! number may be stale or reused; its bytes may lie. None of it installs anything it should not,
//! leaks quota, or harms the session.

use std::time::Duration;

use wharf_common::hash::Sha256Digest;
use wharf_common::limits::MAX_EAGER_SIZE;
use wharf_common::proto::{Command, ErrorCode, Reply, Response};
use wharf_integration::raw::{RawClient, error_code, write_end, write_segment};
use wharf_integration::server::TestServer;

/// A lane the server stops is told so well within this.
const STOP_WAIT: Duration = Duration::from_secs(5);

fn eager_put(path: &str, size: u64, number: u64) -> Command {
    Command::Put {
        path: path.into(),
        size,
        source: "v".into(),
        resume: false,
        mtime: None,
        eager: Some(number),
        parents: false,
    }
}

/// Sends `bytes` as a whole lane whose end frame claims `claimed`.
async fn send_lane(lane: &mut quinn::SendStream, bytes: &[u8], claimed: Sha256Digest) {
    write_segment(lane, (0, bytes.len() as u64), bytes).await.expect("segment");
    write_end(lane, claimed).await.expect("end");
}

/// The stop code the server gave `lane`, waiting at most [`STOP_WAIT`].
async fn stop_code(lane: &mut quinn::SendStream) -> Option<u64> {
    let stopped = tokio::time::timeout(STOP_WAIT, lane.stopped()).await;
    stopped.ok().and_then(Result::ok).flatten().map(quinn::VarInt::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lane_that_arrives_before_its_request_waits_for_it() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let mut lane = raw.open_eager(1).await;
    send_lane(&mut lane, b"abc", Sha256Digest::of(b"abc")).await;
    // Let the lane reach the server, and wait there, before the request says what it is for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(2, eager_put("/early", 3, 1)).await;
    let accepted = raw.reply().await;
    assert!(
        matches!(accepted.reply, Reply::Transfer { transfer: 0, size: 3, lanes: 1, .. }),
        "{accepted:?}"
    );
    let done = raw.reply().await;
    assert!(matches!(done, Response { id: 2, reply: Reply::Done { size: 3, .. } }), "{done:?}");
    assert_eq!(server.stored("ann", "early").expect("installed"), b"abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_number_is_refused_and_a_stale_lane_is_stopped() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    raw.send(2, eager_put("/first", 3, 5)).await;
    let mut lane = raw.open_eager(5).await;
    send_lane(&mut lane, b"abc", Sha256Digest::of(b"abc")).await;
    assert!(matches!(raw.reply().await.reply, Reply::Transfer { .. }));
    assert!(matches!(raw.reply().await.reply, Reply::Done { .. }));

    raw.send(3, eager_put("/again", 3, 5)).await;
    let refused = raw.reply().await;
    assert_eq!(error_code(&refused.reply), ErrorCode::BadRequest, "{refused:?}");
    raw.send(4, eager_put("/lower", 3, 4)).await;
    assert_eq!(error_code(&raw.reply().await.reply), ErrorCode::BadRequest);

    // A lane naming a number whose request has ended (or was refused) is stopped at once. (It is
    // left unfinished: a lane the server has read to its end needs no stopping.)
    let mut stale = raw.open_eager(4).await;
    // The stop may come before the segment is written (it did once, in CI's s3 run): either way
    // the lane is stopped.
    let _ = write_segment(&mut stale, (0, 3), b"xyz").await;
    assert_eq!(stop_code(&mut stale).await, Some(1), "the stale lane is stopped");
    assert!(!server.exists("ann", "again"));
    assert!(!server.exists("ann", "lower"));
    assert_eq!(raw.quota(6).await.used, 3, "only the first upload counts");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_refused_for_quota_stops_its_lane_and_leaves_nothing() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "1KiB");
    server.start();
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = vec![7u8; 4096];
    raw.send(2, eager_put("/big", 4096, 1)).await;
    let mut lane = raw.open_eager(1).await;
    let refused = raw.reply().await;
    assert_eq!(error_code(&refused.reply), ErrorCode::QuotaExceeded, "{refused:?}");
    // The lane may already be written or not: either way the server stops it.
    let _ = write_segment(&mut lane, (0, 4096), &data).await;
    assert_eq!(
        stop_code(&mut lane).await,
        Some(1),
        "the refused upload's lane is stopped\n{}",
        server.log()
    );
    assert!(!server.exists("ann", "big"));
    let quota = raw.quota(3).await;
    assert_eq!((quota.used, quota.reserved), (0, 0), "nothing is charged: {quota:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_upload_past_the_size_limit_is_refused_and_the_session_goes_on() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    raw.send(2, eager_put("/large", MAX_EAGER_SIZE + 1, 1)).await;
    let mut lane = raw.open_eager(1).await;
    let refused = raw.reply().await;
    assert_eq!(error_code(&refused.reply), ErrorCode::BadRequest, "{refused:?}");
    let _ = write_segment(&mut lane, (0, 3), b"abc").await;
    assert_eq!(stop_code(&mut lane).await, Some(1));
    assert!(!server.exists("ann", "large"));
    assert_eq!(raw.quota(3).await.used, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_lane_whose_bytes_do_not_match_its_digest_installs_nothing() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    server.place("ann", "kept", b"old");
    raw.send(2, eager_put("/kept", 3, 1)).await;
    let mut lane = raw.open_eager(1).await;
    // Corrupted on the way: the bytes are not the ones the sender hashed.
    send_lane(&mut lane, b"abd", Sha256Digest::of(b"abc")).await;
    assert!(matches!(raw.reply().await.reply, Reply::Transfer { .. }));
    let failed = raw.reply().await;
    assert_eq!(error_code(&failed.reply), ErrorCode::ChecksumMismatch, "{failed:?}");
    assert_eq!(server.stored("ann", "kept").expect("kept"), b"old");
    let quota = raw.quota(3).await;
    assert_eq!(quota.reserved, 0, "the reservation is given back: {quota:?}");
}
