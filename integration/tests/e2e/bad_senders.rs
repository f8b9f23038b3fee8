//! Senders that lie: about the size, with bytes past their range, with a wrong digest, or naming a
//! transfer that does not exist. Each fails alone; nothing is installed; the session carries on.

use wharf_common::frame::encode_frame;
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::Trailer;
use wharf_integration::raw::RawClient;
use wharf_integration::server::TestServer;

use crate::util::content;

/// Starts an upload of `declared` bytes and sends `body` then a trailer claiming `digest`.
async fn lying_upload(
    raw: &mut RawClient,
    id: u32,
    name: &str,
    declared: u64,
    body: &[u8],
    digest: Sha256Digest,
) -> Reply {
    let cmd = Command::Put {
        path: format!("/{name}"),
        size: declared,
        source: "v".into(),
        resume: false,
    };
    raw.send(id, cmd).await;
    let Reply::Transfer { transfer, .. } = raw.reply().await.reply else {
        panic!("expected transfer")
    };
    let mut stream = raw.open_transfer(transfer).await;
    let _ = stream.write_all(body).await;
    let trailer = encode_frame(&Trailer { sha256: digest.to_string() }).expect("trailer");
    let _ = stream.write_all(&trailer).await;
    let _ = stream.finish();
    let reply = raw.reply().await;
    assert_eq!(reply.id, id);
    reply.reply
}

fn error_code(reply: &Reply) -> ErrorCode {
    match reply {
        Reply::Error(err) => err.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lying_senders_fail_alone_and_install_nothing() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = content(10_000, 1);
    let digest = Sha256Digest::of(&data);

    // Fewer bytes than declared: the stream ends early.
    let short = lying_upload(&mut raw, 2, "short", 20_000, &data, digest).await;
    assert_eq!(error_code(&short), ErrorCode::TransferFailed, "{short:?}");
    // More bytes than declared: the extra bytes are where the trailer should be.
    let long = lying_upload(&mut raw, 3, "long", 5_000, &data, digest).await;
    assert_eq!(error_code(&long), ErrorCode::TransferFailed, "{long:?}");
    // The right size with the wrong digest.
    let wrong = lying_upload(&mut raw, 4, "wrong", 10_000, &data, Sha256Digest::of(b"other")).await;
    assert_eq!(error_code(&wrong), ErrorCode::ChecksumMismatch, "{wrong:?}");
    for name in ["short", "long", "wrong"] {
        assert!(!server.home("ann").join(name).exists(), "{name} must not be installed");
    }

    // The same connection still works, and an honest upload succeeds.
    let honest = lying_upload(&mut raw, 5, "honest", 10_000, &data, digest).await;
    assert!(matches!(honest, Reply::Done { size: 10_000, .. }), "{honest:?}");
    assert_eq!(std::fs::read(server.home("ann").join("honest")).expect("stored"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_naming_unknown_or_foreign_transfers_are_stopped() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let mut ann = RawClient::login(&server, "ann", "pw").await;
    let mut bob = RawClient::login(&server, "bob", "pw2").await;
    let cmd = Command::Put { path: "/mine".into(), size: 10, source: "v".into(), resume: false };
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
    assert!(!server.home("bob").join("mine").exists() && !server.home("ann").join("mine").exists());

    // Ann's upload is untouched by all this and completes.
    let mut stream = ann.open_transfer(transfer).await;
    stream.write_all(b"0123456789").await.expect("bytes");
    let trailer = Trailer { sha256: Sha256Digest::of(b"0123456789").to_string() };
    stream.write_all(&encode_frame(&trailer).expect("trailer")).await.expect("trailer");
    stream.finish().expect("finish");
    assert!(matches!(ann.reply().await.reply, Reply::Done { size: 10, .. }));
}
