//! Interrupted transfers resume from where they stopped, are verified over the whole file, start
//! over when the source changed, and never install a corrupted result. The files are three pieces
//! long and the servers split them into three lanes where it matters, so the partials have holes.

use std::time::{Duration, SystemTime};

use wharf::error::ClientError;
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::ErrorCode;
use wharf_common::transfer::{CHECKPOINT_EVERY, CHUNK_SIZE, PIECE_SIZE};
use wharf_integration::client::{login, spawn_wharf, target, text};
use wharf_integration::server::TestServer;
use wharf_integration::stored::flip_middle_byte;

use crate::util::{Direction, content, interrupt, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const SIZE: usize = 24 << 20;
/// A cut late enough that the receiver has certainly written part of the file: at most the stream
/// window (8 MiB) and the chunks queued for the disk thread (8 MiB) can be in between.
const LATE_CUT: u64 = (SIZE as u64) * 7 / 8;

/// Cut points spread over the file, different for each run of the test binary, but printed so that a
/// failure can be reproduced.
fn cut_points() -> Vec<u64> {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64);
    println!("cut point seed: {seed}");
    let quarter = (SIZE / 4) as u64;
    (0..3).map(|i| quarter * i + 1 + (seed.wrapping_mul(i + 7) % quarter)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_resume_after_interruptions_and_verify_the_whole_file() {
    let server = TestServer::segmented(3, &[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let data = content(SIZE, 1);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let remote = p("/big.bin");
    let session = login(&server, "ann", "pw").await;
    for cut in cut_points() {
        interrupt(
            &session,
            &server,
            Direction::Put { local: &source, remote: &remote, user: "ann" },
            cut,
        )
        .await;
        assert!(!server.exists("ann", "big.bin"), "nothing installed while incomplete");
    }
    let outcome = session.put(&source, &remote, true, NO_PROGRESS).await.expect("resumed put");
    assert!(outcome.resumed_from > 0, "the last attempt resumed, at {}", outcome.resumed_from);
    assert_eq!(outcome.sha256, Sha256Digest::of(&data));
    assert_eq!(server.stored("ann", "big.bin").expect("stored"), data);
    assert_eq!(server.partial_bytes("ann"), 0);
    assert_eq!(
        session.quota().await.expect("quota").used,
        SIZE as u64,
        "partials no longer counted"
    );
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_resume_after_interruptions() {
    let server = TestServer::segmented(3, &[("ann", "pw")]);
    let data = content(SIZE, 2);
    server.place("ann", "big.bin", &data);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("big.bin");
    let session = login(&server, "ann", "pw").await;
    for cut in cut_points() {
        interrupt(&session, &server, Direction::Get { remote: &p("/big.bin"), local: &dest }, cut)
            .await;
        assert!(!dest.exists(), "nothing installed while incomplete");
        assert!(wharf::transfer::part_path(&dest).exists(), "the partial is kept");
    }
    let outcome = session.get(&p("/big.bin"), &dest, true, NO_PROGRESS).await.expect("resumed get");
    assert!(outcome.resumed_from > 0, "resumed at {}", outcome.resumed_from);
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
    assert!(!wharf::transfer::part_path(&dest).exists());
    session.close().await;
}

/// Kills the server (SIGKILL) in the middle of an upload through `lanes` lanes, restarts it, runs
/// the put again, and returns where it resumed and how many bytes the partial held after the crash.
/// The final file must be whole and the quota must match the disk at every step.
async fn kill_mid_upload_then_put_again(mut server: TestServer) -> (u64, u64) {
    let local = tempfile::tempdir().expect("local");
    // The s3 backend keeps whole 8 MiB pieces, stored a few at a time: a file of twelve leaves
    // most of it still to come once the first are recorded.
    let (size, enough) = match server.is_local() {
        true => (SIZE, 3 * CHECKPOINT_EVERY),
        false => (12 * PIECE_SIZE as usize, 2 * PIECE_SIZE),
    };
    let data = content(size, 3);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let session = login(&server, "ann", "pw").await;
    // Killed once the server has written a few checkpoints' worth, while the upload runs.
    let remote = p("/big.bin");
    let put = session.put(&source, &remote, true, NO_PROGRESS);
    tokio::pin!(put);
    // Lanes write at several places, so the partial's length alone says little: wait for the
    // server to have recorded some ranges too, or a resume at 0 would be the right answer.
    let meta = server
        .root()
        .join("var/partials/ann")
        .join(format!("{}.meta", Sha256Digest::of(b"/big.bin")));
    // (On the s3 backend, what counts is recorded already.)
    let recorded = || {
        !server.is_local()
            || std::fs::read_to_string(&meta).is_ok_and(|text| text.contains("present = [["))
    };
    while server.partial_bytes("ann") < enough || !recorded() {
        tokio::select! {
            result = &mut put => panic!("finished before the crash: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
    server.kill();
    let kept = server.partial_bytes("ann");
    assert!(!server.exists("ann", "big.bin"), "never a torn file under the final name");

    let addr = server.addr();
    server.start_on(addr);
    let session = login(&server, "ann", "pw").await;
    // The local backend counts what the partial holds; the s3 backend counts that, or what the
    // upload reserved while its lease runs, whichever is more.
    let used = session.quota().await.expect("quota").used;
    let counted =
        if server.is_local() { used == kept } else { (kept..=size as u64).contains(&used) };
    assert!(counted, "usage after restart counts the partial: {used} for {kept} kept");
    let outcome =
        session.put(&source, &p("/big.bin"), true, NO_PROGRESS).await.expect("put after restart");
    assert_eq!(server.stored("ann", "big.bin").expect("stored"), data);
    assert_eq!(session.quota().await.expect("quota").used, size as u64, "usage matches the disk");
    session.close().await;
    (outcome.resumed_from, kept)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_resumes_after_the_server_is_killed_and_restarted() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let (resumed_from, kept) = kill_mid_upload_then_put_again(server).await;
    // One lane writes in order: killed outright, the server loses at most what it wrote since its
    // last checkpoint (and the chunk that crossed the line, if it died before recording it).
    let lost = kept - resumed_from.min(kept);
    let most = CHECKPOINT_EVERY + CHUNK_SIZE as u64;
    assert!(resumed_from > 0 && lost <= most, "resumed at {resumed_from} of {kept}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segmented_upload_survives_the_server_being_killed() {
    // Three lanes write three places at once, so the partial has holes that count against the
    // quota by the partial's length: the rerun fills them without charging them twice.
    let server = TestServer::segmented(3, &[("ann", "pw")]);
    let (resumed_from, kept) = kill_mid_upload_then_put_again(server).await;
    assert!(resumed_from > 0 && resumed_from <= kept, "resumed at {resumed_from} of {kept}");
}

fn mismatch<T: std::fmt::Debug>(result: Result<T, ClientError>) {
    assert!(
        matches!(result, Err(ClientError::Remote { code: ErrorCode::ChecksumMismatch, .. })),
        "expected a checksum mismatch, got {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_partials_are_caught_in_both_directions() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let data = content(SIZE, 4);
    let source = local.path().join("up.bin");
    std::fs::write(&source, &data).expect("source");
    let session = login(&server, "ann", "pw").await;

    interrupt(
        &session,
        &server,
        Direction::Put { local: &source, remote: &p("/up.bin"), user: "ann" },
        LATE_CUT,
    )
    .await;
    assert_eq!(server.corrupt_partials("ann"), 1, "the interrupted upload left its partial");
    mismatch(session.put(&source, &p("/up.bin"), true, NO_PROGRESS).await);
    assert!(!server.exists("ann", "up.bin"), "a mismatch installs nothing");
    assert_eq!(server.partial_uploads("ann"), 0, "the bad partial is dropped");
    let fresh = session.put(&source, &p("/up.bin"), true, NO_PROGRESS).await.expect("fresh put");
    assert_eq!(fresh.resumed_from, 0);
    assert_eq!(server.stored("ann", "up.bin").expect("stored"), data);

    let dest = local.path().join("down.bin");
    interrupt(&session, &server, Direction::Get { remote: &p("/up.bin"), local: &dest }, LATE_CUT)
        .await;
    flip_middle_byte(&wharf::transfer::part_path(&dest));
    mismatch(session.get(&p("/up.bin"), &dest, true, NO_PROGRESS).await);
    assert!(!dest.exists() && !wharf::transfer::part_path(&dest).exists());
    session.get(&p("/up.bin"), &dest, true, NO_PROGRESS).await.expect("fresh get");
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_source_starts_over_instead_of_mixing() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let source = local.path().join("doc.bin");
    std::fs::write(&source, content(SIZE, 5)).expect("v1");
    let session = login(&server, "ann", "pw").await;
    interrupt(
        &session,
        &server,
        Direction::Put { local: &source, remote: &p("/doc.bin"), user: "ann" },
        (SIZE / 2) as u64,
    )
    .await;
    let v2 = content(SIZE, 6);
    std::fs::write(&source, &v2).expect("v2, same size");
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&source)
        .expect("open")
        .set_modified(later)
        .expect("mtime");
    let outcome = session.put(&source, &p("/doc.bin"), true, NO_PROGRESS).await.expect("put v2");
    assert_eq!(outcome.resumed_from, 0, "a changed source is not resumed");
    assert_eq!(server.stored("ann", "doc.bin").expect("stored"), v2);

    // And downloads: the server's file changes between attempts.
    let dest = local.path().join("copy.bin");
    interrupt(
        &session,
        &server,
        Direction::Get { remote: &p("/doc.bin"), local: &dest },
        (SIZE / 2) as u64,
    )
    .await;
    let v3 = content(SIZE, 7);
    server.place("ann", "doc.bin", &v3);
    let outcome = session.get(&p("/doc.bin"), &dest, true, NO_PROGRESS).await.expect("get v3");
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).expect("downloaded"), v3);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_resumes_after_the_client_is_killed() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(96 << 20, 8);
    server.place("ann", "big.bin", &data);
    let (home, local) = (tempfile::tempdir().expect("home"), tempfile::tempdir().expect("local"));
    let (cert, to) = (server.cert().display().to_string(), target(&server, "ann"));
    let dest_dir = local.path().display().to_string();
    let args = ["--ca", &cert, "-c", &format!("get big.bin {dest_dir}"), &to];
    let dest = local.path().join("big.bin");
    let part = wharf::transfer::part_path(&dest);

    // SIGKILL once the client has recorded some progress: no chance to clean up or say goodbye.
    // (The lanes write at four places at once, so the partial's length says little.)
    let mut meta = part.clone().into_os_string();
    meta.push(".meta");
    let recorded =
        || std::fs::read_to_string(&meta).is_ok_and(|text| text.contains("present = [["));
    let mut child = spawn_wharf(home.path(), Some("pw"), &args, false);
    let started = std::time::Instant::now();
    while !recorded() {
        assert!(child.try_wait().expect("wait").is_none(), "finished before the kill");
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert!(!dest.exists(), "nothing installed");

    let rerun = wharf_integration::client::wharf(home.path(), Some("pw"), &args, None);
    let out = text(&rerun.stdout);
    assert!(rerun.status.success(), "{out}{}", text(&rerun.stderr));
    assert!(out.contains("resumed at") && out.contains("sha256 ok"), "{out}");
    assert!(std::fs::read(&dest).expect("downloaded") == data, "the resumed file is whole");
    assert!(!part.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_says_when_a_corrupt_partial_makes_it_start_over() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(SIZE, 9);
    server.place("ann", "up.bin", &data);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("down.bin");
    let session = login(&server, "ann", "pw").await;
    interrupt(&session, &server, Direction::Get { remote: &p("/up.bin"), local: &dest }, LATE_CUT)
        .await;
    session.close().await;
    flip_middle_byte(&wharf::transfer::part_path(&dest));

    let home = tempfile::tempdir().expect("home");
    let (cert, to) = (server.cert().display().to_string(), target(&server, "ann"));
    let script = format!("get up.bin {}", dest.display());
    let out = wharf_integration::client::wharf(
        home.path(),
        Some("pw"),
        &["--ca", &cert, "-c", &script, &to],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "get up.bin: the partial file was corrupt (checksum mismatch); starting over"
        ),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
}
