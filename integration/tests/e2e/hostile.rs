//! Hostile clients speaking the wire directly. Each case asserts that the server answers with the
//! documented error or closes only the offending connection, and that a bystander's session carries
//! on unaffected. (Requests before login: `login.rs`; streams naming unknown or foreign transfers and
//! lying senders: `bad_senders.rs`.)

use std::time::{Duration, Instant};

use wharf::session::Session;
use wharf_common::proto::{CloseCode, Command, ErrorCode, Reply, Request, Response};
use wharf_common::transfer::{Ranges, StreamHeader};
use wharf_integration::client::login;
use wharf_integration::raw::{RawClient, error_code, upload, write_segment};
use wharf_integration::server::TestServer;

use crate::util::{content, p};

/// The bystander still gets answers, promptly.
async fn bystander_unaffected(bystander: &Session) {
    let started = Instant::now();
    let quota = tokio::time::timeout(Duration::from_secs(10), bystander.quota()).await;
    assert!(matches!(quota, Ok(Ok(_))), "bystander's quota: {quota:?}");
    bystander.stat(&p("/")).await.expect("bystander's stat");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_close_only_their_connection() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let bystander = login(&server, "bob", "pw2").await;
    let protocol_error = Some(CloseCode::ProtocolError as u64);

    // A length prefix one past the maximum, and one of 4 GiB - 1: refused before any body is read.
    for prefix in [(1u32 << 20) + 1, u32::MAX] {
        let mut raw = RawClient::connect(&server).await;
        raw.send_bytes(&prefix.to_be_bytes()).await;
        assert_eq!(raw.close_code().await, protocol_error, "length prefix {prefix}");
        bystander_unaffected(&bystander).await;
    }

    // A frame cut short: the length says 100, ten bytes come, then the stream ends.
    let mut raw = RawClient::connect(&server).await;
    raw.send_bytes(&100u32.to_be_bytes()).await;
    raw.send_bytes(&[0x80; 10]).await;
    raw.finish_control();
    assert_eq!(raw.close_code().await, protocol_error, "truncated frame");

    // Garbage where MessagePack should be (0xc1 is never valid), nesting far past the bound, a
    // well-formed message of the wrong type (a reply sent as a request), and a `put` whose
    // `parents` is a string, before and after login.
    let nested: Vec<u8> = std::iter::repeat_n(0x91, 10_000).chain([0x00]).collect();
    let wrong_type =
        rmp_serde::to_vec_named(&Response { id: 1, reply: Reply::Ok }).expect("encode");
    let cases = [
        ("garbage", vec![0xc1; 64]),
        ("deep nesting", nested),
        ("wrong type", wrong_type),
        ("parents not a bool", put_with_parents_as_a_string()),
        ("copy without its destination", copy_without_to()),
    ];
    for (what, body) in cases {
        for logged_in in [false, true] {
            let mut raw = if logged_in {
                RawClient::login(&server, "ann", "pw").await
            } else {
                RawClient::connect(&server).await
            };
            let len = u32::try_from(body.len()).expect("length");
            raw.send_bytes(&len.to_be_bytes()).await;
            raw.send_bytes(&body).await;
            assert_eq!(raw.close_code().await, protocol_error, "{what}, logged in: {logged_in}");
        }
        bystander_unaffected(&bystander).await;
    }
}

/// A `copy` request with `from` and no `to`.
fn copy_without_to() -> Vec<u8> {
    let copy = Command::Copy { from: "/a".into(), to: "/b".into() };
    let body = rmp_serde::to_vec_named(&Request { id: 6, cmd: copy }).expect("encode");
    // The command is the last map: one entry fewer (0x83 -> 0x82), and the `to` pair cut off.
    let tail = [&[0xa2][..], b"to", &[0xa2], b"/b"].concat();
    assert!(body.ends_with(&tail), "`to` comes last");
    let mut body = body[..body.len() - tail.len()].to_vec();
    let at = body.iter().rposition(|&b| b == 0x83).expect("the command's map");
    body[at] = 0x82;
    body
}

/// A `put` request whose `parents` is the string "yes" instead of a boolean.
fn put_with_parents_as_a_string() -> Vec<u8> {
    let put = Command::Put {
        path: "/made/on/the/way".into(),
        size: 1,
        source: "s".into(),
        resume: false,
        mtime: None,
        eager: None,
        parents: true,
    };
    let body = rmp_serde::to_vec_named(&Request { id: 5, cmd: put }).expect("encode");
    // The key `parents` (a 7-byte string), then `true` (0xc3): make the value "yes".
    let key = [&[0xa7][..], b"parents"].concat();
    let at = body.windows(key.len()).position(|w| w == key).expect("parents key") + key.len();
    assert_eq!(body[at], 0xc3, "true follows the key");
    [&body[..at], &[0xa3, b'y', b'e', b's'], &body[at + 1..]].concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_request_id_is_refused_and_the_first_request_carries_on() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let bystander = login(&server, "bob", "pw2").await;
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    // Request 5 (an upload) stays in flight until its lane arrives.
    let put = upload("/a", 3, false);
    raw.send(5, put).await;
    let Reply::Transfer { transfer, .. } = raw.reply().await.reply else { panic!("transfer") };
    raw.send(5, Command::Quota).await;
    let duplicate = raw.reply().await;
    assert_eq!((duplicate.id, error_code(&duplicate.reply)), (5, ErrorCode::DuplicateId));
    bystander_unaffected(&bystander).await;

    let mut lane = raw.open_transfer(transfer).await;
    write_segment(&mut lane, (0, 3), b"abc").await.expect("bytes");
    wharf_integration::raw::write_end(&mut lane, wharf_common::hash::Sha256Digest::of(b"abc"))
        .await
        .expect("end");
    let done = raw.reply().await;
    assert!(matches!(done, Response { id: 5, reply: Reply::Done { size: 3, .. } }), "{done:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lane_reset_halfway_fails_its_upload_alone() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let bystander = login(&server, "bob", "pw2").await;
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let size = 3 << 20;
    let data = content(size, 31);
    let put = upload("/reset", size as u64, true);
    raw.send(2, put).await;
    let Reply::Transfer { transfer, .. } = raw.reply().await.reply else { panic!("transfer") };
    let mut lane = raw.open_transfer(transfer).await;
    write_segment(&mut lane, (0, size as u64), &data[..size / 2]).await.expect("first half");
    // Reset only once the server is writing (its first 1 MiB chunk): a reset discards whatever it
    // has not read yet, header included, and a lane that never arrives is a different case.
    let watcher = login(&server, "ann", "pw").await;
    let started = Instant::now();
    while watcher.quota().await.expect("quota").used == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the server never wrote");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lane.reset(quinn::VarInt::from_u32(7)).expect("reset");
    let failed = raw.reply().await;
    assert_eq!(error_code(&failed.reply), ErrorCode::TransferFailed, "{failed:?}");
    assert!(!server.exists("ann", "reset"));
    assert_eq!(raw.quota(3).await.reserved, 0, "the reservation is given back");
    bystander_unaffected(&bystander).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_ten_thousand_streams_harms_no_one() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw2")]);
    let bystander = login(&server, "bob", "pw2").await;
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let started = Instant::now();
    let flood = async {
        for n in 0..10_000u64 {
            // The server grants new streams only as it stops old ones: at most 64 are open at once.
            let mut stream = raw.conn.open_uni().await.expect("stream credit");
            let header = wharf_common::frame::encode_frame(&StreamHeader::of(1_000_000 + n))
                .expect("header");
            let _ = stream.write_all(&header).await;
            let _ = stream.finish();
        }
    };
    let watch = async {
        // Meanwhile the bystander is served as usual.
        for _ in 0..5 {
            bystander_unaffected(&bystander).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(flood, watch);
    println!("10,000 streams in {:?}", started.elapsed());
    raw.send(2, Command::Quota).await;
    assert!(matches!(raw.reply().await.reply, Reply::Quota { .. }), "the flooder's session too");
    bystander_unaffected(&bystander).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_reads_is_given_up_on() {
    let server = TestServer::configured(
        "[transfer]\nstall_timeout_secs = 2\n",
        &[("ann", "pw"), ("bob", "pw2")],
    );
    server.place("ann", "big", &content(64 << 20, 32));
    let bystander = login(&server, "bob", "pw2").await;
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    raw.send(2, Command::Get { path: "/big".into(), have: Ranges::new(), version: None }).await;
    assert!(matches!(raw.reply().await.reply, Reply::Transfer { .. }));
    // The lanes are never accepted, so flow control stops the server within a window or two.
    bystander_unaffected(&bystander).await;
    let failed = raw.reply().await;
    assert_eq!(error_code(&failed.reply), ErrorCode::TransferFailed, "{failed:?}");
    raw.send(3, Command::Quota).await;
    assert!(
        matches!(raw.reply().await.reply, Reply::Quota { .. }),
        "the session itself carries on"
    );
    bystander_unaffected(&bystander).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_that_stops_sending_is_given_up_on_and_its_partial_kept() {
    let server = TestServer::configured(
        "[transfer]\nstall_timeout_secs = 2\n",
        &[("ann", "pw"), ("bob", "pw2")],
    );
    let bystander = login(&server, "bob", "pw2").await;
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let size = 4 << 20;
    let data = content(size, 33);
    let put = upload("/slow", size as u64, true);
    raw.send(2, put).await;
    let Reply::Transfer { transfer, .. } = raw.reply().await.reply else { panic!("transfer") };
    let mut lane = raw.open_transfer(transfer).await;
    write_segment(&mut lane, (0, size as u64), &data[..1 << 20]).await.expect("first MiB");
    // ... and nothing more, without closing anything.
    let failed = raw.reply().await;
    assert_eq!(error_code(&failed.reply), ErrorCode::TransferFailed, "{failed:?}");
    assert!(!server.exists("ann", "slow"));
    // The s3 backend keeps whole pieces only, and this one never became whole.
    if server.is_local() {
        assert!(server.partial_bytes("ann") > 0, "the partial is kept for a resume");
    }
    bystander_unaffected(&bystander).await;
    drop(lane);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_request_gets_exactly_one_final_reply() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "big.bin", &content(32 << 20, 41));
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    // A download whose lanes nobody reads: it stays in flight until cancelled.
    raw.send(5, Command::Get { path: "/big.bin".into(), have: Ranges::new(), version: None }).await;
    let announced = raw.reply().await;
    assert!(matches!(announced.reply, Reply::Transfer { .. }), "{announced:?}");
    raw.send(6, Command::Cancel { request: 5 }).await;
    // A request after the cancel marks where the cancel's effects must have ended.
    raw.send(7, Command::Quota).await;
    let mut finals_for_5 = Vec::new();
    let mut seen_6_and_7 = (false, false);
    while !(seen_6_and_7.0 && seen_6_and_7.1 && !finals_for_5.is_empty()) {
        let Response { id, reply } =
            tokio::time::timeout(Duration::from_secs(20), raw.reply()).await.expect("replies");
        match id {
            5 if reply.is_final() => finals_for_5.push(reply),
            6 => seen_6_and_7.0 = matches!(reply, Reply::Ok),
            7 => seen_6_and_7.1 = matches!(reply, Reply::Quota { .. }),
            _ => {}
        }
    }
    assert_eq!(finals_for_5.len(), 1, "{finals_for_5:?}");
    assert_eq!(error_code(&finals_for_5[0]), ErrorCode::Cancelled);

    // Cancelling a request that has finished is `ok`, and adds no reply to it.
    raw.send(8, Command::Quota).await;
    assert_eq!(raw.reply().await.id, 8);
    raw.send(9, Command::Cancel { request: 8 }).await;
    raw.send(10, Command::Quota).await;
    let ids = [raw.reply().await.id, raw.reply().await.id];
    assert_eq!(ids, [9, 10], "nothing more for request 8");
}
