//! Segmented transfers: large files travel as pieces on several lanes, are written in place in any
//! order, and a slow lane's share is taken over by the others.

use std::sync::Arc;

use wharf_common::hash::Sha256Digest;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::{CHUNK_SIZE, PIECE_SIZE, Plan, Ranges};
use wharf_integration::client::login;
use wharf_integration::raw::{RawClient, read_lane, upload, write_end, write_segment};
use wharf_integration::server::TestServer;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const PIECE: usize = PIECE_SIZE as usize;

#[tokio::test(flavor = "multi_thread")]
async fn files_at_piece_boundaries_arrive_whole_in_both_directions() {
    let server = TestServer::segmented(4, &[("ann", "pw")]);
    let session = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    for (seed, size) in [PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 7].into_iter().enumerate() {
        let data = content(size, seed as u64 + 40);
        let source = local.path().join(format!("up-{size}"));
        std::fs::write(&source, &data).expect("source");
        let remote = p(&format!("/f-{size}"));
        let put = session.put(&source, &remote, true, NO_PROGRESS).await.expect("put");
        assert_eq!(put.sha256, Sha256Digest::of(&data), "{size} bytes up");
        assert_eq!(server.stored("ann", &format!("f-{size}")).expect("stored"), data);

        let dest = local.path().join(format!("down-{size}"));
        let got = session.get(&remote, &dest, true, NO_PROGRESS).await.expect("get");
        assert_eq!(got.sha256, Sha256Digest::of(&data), "{size} bytes down");
        assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
    }
    let used = session.quota().await.expect("quota").used;
    assert_eq!(used, (PIECE - 1 + PIECE + PIECE + 1 + 3 * PIECE + 7) as u64);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_lane_gives_its_share_to_the_fast_one() {
    let server = TestServer::segmented(2, &[("ann", "pw")]);
    let data = content(6 * PIECE, 7);
    server.place("ann", "big", &data);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    raw.send(2, Command::Get { path: "/big".into(), have: Ranges::new(), version: None }).await;
    let Reply::Transfer { lanes: 2, ranges, .. } = raw.reply().await.reply else {
        panic!("expected a two-lane transfer")
    };
    assert_eq!(ranges, Ranges::full(data.len() as u64));

    // The first lane to arrive is not read at all until the other has ended (each lane ends as soon
    // as its own pieces are sent).
    let mut slow = raw.conn.accept_uni().await.expect("first lane");
    let mut fast = raw.conn.accept_uni().await.expect("second lane");
    let fast = read_lane(&mut fast).await;
    let slow = read_lane(&mut slow).await;

    // An even split would give each lane 3 pieces; the stalled one holds only what was already in
    // flight when it stalled (one piece in its stream window, one queued behind it).
    assert!(slow.pieces.len() <= 2, "the slow lane carried {} pieces", slow.pieces.len());
    assert_eq!(fast.pieces.len() + slow.pieces.len(), 6);
    let mut file = vec![0; data.len()];
    for (offset, bytes) in fast.pieces.iter().chain(&slow.pieces) {
        let offset = usize::try_from(*offset).expect("offset");
        file[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
    assert!(file == data, "the pieces make up the file");
    let digest = Sha256Digest::of(&data).to_string();
    assert_eq!((fast.sha256, slow.sha256), (digest.clone(), digest));
    assert!(matches!(raw.reply().await.reply, Reply::Done { .. }));
}

/// Starts a raw upload of `data` and returns the transfer id and plan.
async fn start_upload(raw: &mut RawClient, id: u32, name: &str, size: usize) -> (u64, Plan) {
    let cmd = upload(&format!("/{name}"), size as u64, true);
    raw.send(id, cmd).await;
    match raw.reply().await.reply {
        Reply::Transfer { transfer, size, ranges, lanes, .. } => {
            (transfer, Plan::checked(size, &ranges, lanes).expect("a sane plan"))
        }
        other => panic!("expected transfer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pieces_in_any_order_are_written_in_place_and_bad_pieces_fail_the_upload() {
    let server = TestServer::segmented(2, &[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = Arc::new(content(3 * PIECE + 100, 9));
    let digest = Sha256Digest::of(&data);
    let piece = |offset: u64, len: u64| {
        let start = usize::try_from(offset).expect("offset");
        data[start..start + usize::try_from(len).expect("len")].to_vec()
    };

    // Backwards: the second lane sends the last pieces first, the first lane the first piece last.
    let (transfer, plan) = start_upload(&mut raw, 2, "backwards", data.len()).await;
    assert_eq!(plan.lanes, 2);
    let pieces: Vec<(u64, u64)> = plan.ranges.pieces(PIECE_SIZE).into_iter().collect();
    assert_eq!(pieces.len(), 4);
    let (mut first, mut second) =
        (raw.open_transfer(transfer).await, raw.open_transfer(transfer).await);
    for &(offset, len) in pieces[1..].iter().rev() {
        write_segment(&mut second, (offset, len), &piece(offset, len)).await.expect("piece");
    }
    let (offset, len) = pieces[0];
    write_segment(&mut first, (offset, len), &piece(offset, len)).await.expect("piece");
    write_end(&mut first, digest).await.expect("end");
    write_end(&mut second, digest).await.expect("end");
    let done = raw.reply().await.reply;
    assert!(matches!(done, Reply::Done { .. }), "{done:?}");
    assert!(server.stored("ann", "backwards").expect("stored") == *data);

    // The same piece twice, and a lane that claims another digest: each fails, nothing installed.
    let (transfer, plan) = start_upload(&mut raw, 3, "twice", data.len()).await;
    let (offset, len) = plan.ranges.pieces(PIECE_SIZE)[0];
    let (mut first, mut second) =
        (raw.open_transfer(transfer).await, raw.open_transfer(transfer).await);
    let _ = write_segment(&mut first, (offset, len), &piece(offset, len)).await;
    let _ = write_segment(&mut second, (offset, len), &piece(offset, len)).await;
    let twice = raw.reply().await.reply;
    assert!(
        matches!(&twice, Reply::Error(err) if err.code == ErrorCode::TransferFailed),
        "{twice:?}"
    );

    let (transfer, plan) = start_upload(&mut raw, 4, "disagree", data.len()).await;
    let pieces: Vec<(u64, u64)> = plan.ranges.pieces(PIECE_SIZE).into_iter().collect();
    let (mut first, mut second) =
        (raw.open_transfer(transfer).await, raw.open_transfer(transfer).await);
    for (index, &(offset, len)) in pieces.iter().enumerate() {
        let lane = if index % 2 == 0 { &mut first } else { &mut second };
        write_segment(lane, (offset, len), &piece(offset, len)).await.expect("piece");
    }
    write_end(&mut first, digest).await.expect("end");
    write_end(&mut second, Sha256Digest::of(b"something else")).await.expect("end");
    let disagree = raw.reply().await.reply;
    assert!(
        matches!(&disagree, Reply::Error(err) if err.code == ErrorCode::TransferFailed),
        "{disagree:?}"
    );
    for name in ["twice", "disagree"] {
        assert!(!server.exists("ann", name), "{name} must not be installed");
    }
    assert_eq!(raw.quota(5).await.reserved, 0, "failed uploads hold no reservation");
}

/// Waits until the user's partials on the server reach `len` bytes: the lanes that carried them
/// have arrived and the server has written what they brought.
async fn partial_reaches(server: &TestServer, len: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.partial_bytes("ann") < len {
        assert!(tokio::time::Instant::now() < deadline, "the partial never reached {len} bytes");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_that_stops_keeps_what_every_lane_carried() {
    // A cancelled client finishes its lanes wherever they are. The first to end must not make the
    // server drop what the others still carry: here a whole piece, and a half piece that is still
    // arriving when the first lane ends.
    let server = TestServer::segmented(3, &[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = content(3 * PIECE, 10);
    let (transfer, plan) = start_upload(&mut raw, 2, "stopped", data.len()).await;
    assert_eq!(plan.lanes, 3);
    let piece = PIECE as u64;
    let (half, short) = (piece / 2 + 123, 1000);
    // The local backend keeps every chunk written; the s3 backend keeps whole pieces only (each is
    // an object of its own), so there only the first lane's arrival can be seen.
    let local = server.is_local();
    // One lane at a time, each seen to arrive (by what it wrote) before the next opens.
    let mut lanes = Vec::new();
    for (offset, sent) in [(0, piece), (piece, piece / 4), (2 * piece, short)] {
        let mut lane = raw.open_transfer(transfer).await;
        let bytes = &data[offset as usize..(offset + sent) as usize];
        write_segment(&mut lane, (offset, piece), bytes).await.expect("piece");
        if sent == piece || (local && sent >= CHUNK_SIZE as u64) {
            partial_reaches(&server, offset + sent).await;
        }
        lanes.push(lane);
    }
    // The short lane ends first; only then does the second lane send the rest of its half piece,
    // whose last, partly gathered chunk is flushed when that lane ends.
    let _ = lanes[2].finish();
    if local {
        partial_reaches(&server, 2 * piece + short).await;
    }
    let rest = &data[(piece + piece / 4) as usize..(piece + half) as usize];
    let _ = lanes[1].write_all(rest).await;
    let _ = lanes[0].finish();
    let _ = lanes[1].finish();
    let stopped = raw.reply().await.reply;
    assert!(
        matches!(&stopped, Reply::Error(err) if err.code == ErrorCode::TransferFailed),
        "{stopped:?}"
    );

    let (transfer, plan) = start_upload(&mut raw, 3, "stopped", data.len()).await;
    let mut owed = Ranges::new();
    if local {
        owed.insert(piece + half, 2 * piece);
        owed.insert(2 * piece + short, 3 * piece);
    } else {
        owed.insert(piece, 3 * piece);
    }
    assert_eq!(plan.ranges, owed, "the resume asks for exactly what no lane carried");
    let digest = Sha256Digest::of(&data);
    let mut lanes = Vec::new();
    for _ in 0..plan.lanes {
        lanes.push(raw.open_transfer(transfer).await);
    }
    for (index, (offset, len)) in plan.ranges.pieces(PIECE_SIZE).into_iter().enumerate() {
        let bytes = &data[offset as usize..(offset + len) as usize];
        let lane = index % lanes.len();
        write_segment(&mut lanes[lane], (offset, len), bytes).await.expect("piece");
    }
    for lane in &mut lanes {
        write_end(lane, digest).await.expect("end");
    }
    let done = raw.reply().await.reply;
    assert!(matches!(done, Reply::Done { .. }), "{done:?}");
    assert!(server.stored("ann", "stopped").expect("stored") == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn pieces_that_came_ahead_of_the_first_are_kept_when_the_sender_stops() {
    // The receiver holds pieces that arrive before the bytes ahead of them in memory, to hash and
    // write them once those are in. A sender that stops before then must not lose them: they are
    // written and recorded, and the resume asks only for what never came.
    let server = TestServer::segmented(2, &[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = content(4 * PIECE, 12);
    let (transfer, plan) = start_upload(&mut raw, 2, "ahead", data.len()).await;
    let pieces: Vec<(u64, u64)> = plan.ranges.pieces(PIECE_SIZE).into_iter().collect();
    assert_eq!((plan.lanes, pieces.len()), (2, 4));
    let (mut first, mut second) =
        (raw.open_transfer(transfer).await, raw.open_transfer(transfer).await);
    for &(offset, len) in pieces[2..].iter().rev() {
        let bytes = &data[offset as usize..(offset + len) as usize];
        write_segment(&mut second, (offset, len), bytes).await.expect("piece");
    }
    let _ = first.finish();
    let _ = second.finish();
    let stopped = raw.reply().await.reply;
    assert!(
        matches!(&stopped, Reply::Error(err) if err.code == ErrorCode::TransferFailed),
        "{stopped:?}"
    );

    let (transfer, plan) = start_upload(&mut raw, 3, "ahead", data.len()).await;
    let mut owed = Ranges::new();
    owed.insert(0, 2 * PIECE_SIZE);
    assert_eq!(plan.ranges, owed, "the resume asks for the first two pieces alone");
    let mut lane = raw.open_transfer(transfer).await;
    for (offset, len) in plan.ranges.pieces(PIECE_SIZE) {
        let bytes = &data[offset as usize..(offset + len) as usize];
        write_segment(&mut lane, (offset, len), bytes).await.expect("piece");
    }
    write_end(&mut lane, Sha256Digest::of(&data)).await.expect("end");
    for _ in 1..plan.lanes {
        let mut idle = raw.open_transfer(transfer).await;
        write_end(&mut idle, Sha256Digest::of(&data)).await.expect("end");
    }
    let done = raw.reply().await.reply;
    assert!(matches!(done, Reply::Done { .. }), "{done:?}");
    assert!(server.stored("ann", "ahead").expect("stored") == data);
}
