//! Senders that lie: about the size, with bytes past their piece, with pieces the plan does not
//! have, with a wrong digest, or naming a transfer that does not exist. Each fails alone; nothing is
//! installed; the session carries on.

use wharf_common::hash::Sha256Digest;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_integration::raw::{RawClient, error_code, upload, write_end, write_segment};
use wharf_integration::server::TestServer;

use crate::util::content;

/// Starts an upload of `declared` bytes and sends one segment claiming `segment` (offset, length),
/// then `body`, then an end frame claiming `digest`.
async fn lying_upload(
    raw: &mut RawClient,
    id: u32,
    name: &str,
    (declared, segment): (u64, (u64, u64)),
    body: &[u8],
    digest: Sha256Digest,
) -> Reply {
    let cmd = upload(&format!("/{name}"), declared, false);
    raw.send(id, cmd).await;
    let Reply::Transfer { transfer, lanes: 1, .. } = raw.reply().await.reply else {
        panic!("expected a one-lane transfer")
    };
    let mut lane = raw.open_transfer(transfer).await;
    let _ = write_segment(&mut lane, segment, body).await;
    let _ = write_end(&mut lane, digest).await;
    let reply = raw.reply().await;
    assert_eq!(reply.id, id);
    reply.reply
}

#[tokio::test(flavor = "multi_thread")]
async fn lying_senders_fail_alone_and_install_nothing() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = content(10_000, 1);
    let digest = Sha256Digest::of(&data);

    // Fewer bytes than declared: the lane ends inside its piece.
    let short = lying_upload(&mut raw, 2, "short", (20_000, (0, 20_000)), &data, digest).await;
    assert_eq!(error_code(&short), ErrorCode::TransferFailed, "{short:?}");
    // More bytes than the piece holds: the extra bytes are where the next frame should be.
    let long = lying_upload(&mut raw, 3, "long", (5_000, (0, 5_000)), &data, digest).await;
    assert_eq!(error_code(&long), ErrorCode::TransferFailed, "{long:?}");
    // A segment past the declared size, and one that is not a piece of the plan.
    let past = lying_upload(&mut raw, 4, "past", (5_000, (0, 10_000)), &data, digest).await;
    assert_eq!(error_code(&past), ErrorCode::TransferFailed, "{past:?}");
    let off = lying_upload(&mut raw, 5, "off", (10_000, (1, 9_999)), &data[1..], digest).await;
    assert_eq!(error_code(&off), ErrorCode::TransferFailed, "{off:?}");
    // The right size with the wrong digest.
    let wrong_digest = Sha256Digest::of(b"other");
    let wrong =
        lying_upload(&mut raw, 6, "wrong", (10_000, (0, 10_000)), &data, wrong_digest).await;
    assert_eq!(error_code(&wrong), ErrorCode::ChecksumMismatch, "{wrong:?}");
    for name in ["short", "long", "past", "off", "wrong"] {
        assert!(!server.exists("ann", name), "{name} must not be installed");
    }
    let quota = raw.quota(7).await;
    assert_eq!(quota.reserved, 0, "failed uploads hold no reservation: {quota:?}");

    // The same connection still works, and an honest upload succeeds.
    let honest = lying_upload(&mut raw, 8, "honest", (10_000, (0, 10_000)), &data, digest).await;
    assert!(matches!(honest, Reply::Done { size: 10_000, .. }), "{honest:?}");
    assert_eq!(server.stored("ann", "honest").expect("stored"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_naming_unknown_or_foreign_transfers_are_stopped() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let mut ann = RawClient::login(&server, "ann", "pw").await;
    let mut bob = RawClient::login(&server, "bob", "pw2").await;
    let cmd = upload("/mine", 10, false);
    ann.send(2, cmd).await;
    let Reply::Transfer { transfer, .. } = ann.reply().await.reply else {
        panic!("expected transfer")
    };

    // Bob names Ann's transfer id, and then one that exists nowhere: both streams are stopped.
    for id in [transfer, 999_999] {
        let stream = bob.open_transfer(id).await;
        let stopped =
            tokio::time::timeout(std::time::Duration::from_secs(20), stream.stopped()).await;
        let code = stopped.expect("stopped in time").expect("stop code");
        assert_eq!(code.map(u64::from), Some(1), "stop code for transfer {id}");
    }
    bob.send(2, Command::Quota).await;
    assert!(matches!(bob.reply().await.reply, Reply::Quota { .. }), "bob's session carries on");
    assert!(!server.exists("bob", "mine") && !server.exists("ann", "mine"));

    // Ann's upload is untouched by all this and completes.
    let mut lane = ann.open_transfer(transfer).await;
    write_segment(&mut lane, (0, 10), b"0123456789").await.expect("bytes");
    write_end(&mut lane, Sha256Digest::of(b"0123456789")).await.expect("end");
    assert!(matches!(ann.reply().await.reply, Reply::Done { size: 10, .. }));
}
