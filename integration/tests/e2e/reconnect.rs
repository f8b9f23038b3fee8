//! A transfer whose connection dies reconnects by itself, logs in again and resumes, a bounded
//! number of times; the result is verified like any other.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::sync::Notify;
use wharf::error::ClientError;
use wharf::reconnect::{RECONNECT_ATTEMPTS, with_reconnects};
use wharf::session::Session;
use wharf::transfer::Outcome;
use wharf_common::hash::Sha256Digest;
use wharf_integration::client::options;
use wharf_integration::server::TestServer;

use crate::util::{Direction, content, p};

/// Three times the connection's flow-control window, so that a third of the way in the server still
/// has bytes to send when it dies.
const SIZE: usize = 96 << 20;

/// A session that notices a dead connection, or a server that does not answer, after two silent
/// seconds instead of thirty (or ten).
async fn quick_to_notice(server: &TestServer) -> Session {
    let mut options = options(server);
    options.transport.idle_timeout_secs = 2;
    options.transport.keep_alive_secs = 1;
    options.connect_timeout = std::time::Duration::from_secs(2);
    Session::open(&options, "ann", "pw").await.expect("login")
}

/// Runs the transfer under [`with_reconnects`], kills the server with SIGKILL once a third of the
/// file has moved, restarts it on the same address if `restart`, and returns what the transfer
/// returned and how many times it reconnected.
async fn through_a_server_crash(
    server: &mut TestServer,
    session: &Session,
    direction: Direction<'_>,
    restart: bool,
) -> (Result<Outcome, ClientError>, u32) {
    let moved = AtomicU64::new(0);
    let reached = Notify::new();
    let on_bytes = |n: u64| {
        if moved.fetch_add(n, Ordering::Relaxed) + n >= SIZE as u64 / 3 {
            reached.notify_one();
        }
    };
    let reconnects = AtomicU32::new(0);
    let counted = |_: u32, _: &ClientError| {
        reconnects.fetch_add(1, Ordering::Relaxed);
    };
    let run = with_reconnects(session, true, counted, |resume| {
        let on_bytes = &on_bytes;
        let direction = &direction;
        async move {
            match *direction {
                Direction::Put { local, remote, .. } => {
                    session.put(local, remote, resume, on_bytes).await
                }
                Direction::Get { remote, local } => {
                    session.get(remote, local, resume, on_bytes).await
                }
            }
        }
    });
    tokio::pin!(run);
    tokio::select! {
        () = reached.notified() => {}
        result = &mut run => panic!("finished before the crash: {:?}", result.err()),
    }
    let addr = server.addr();
    server.kill();
    if restart {
        server.start_on(addr);
    }
    let result = run.await;
    (result, reconnects.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_reconnects_and_resumes_after_a_server_crash() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let data = content(SIZE, 21);
    let source = local.path().join("up.bin");
    std::fs::write(&source, &data).expect("source");
    let session = quick_to_notice(&server).await;
    let remote = p("/up.bin");
    let direction = Direction::Put { local: &source, remote: &remote, user: "ann" };
    let (result, reconnects) = through_a_server_crash(&mut server, &session, direction, true).await;
    let outcome = result.expect("the upload rides out the crash");
    assert!((1..=RECONNECT_ATTEMPTS).contains(&reconnects), "{reconnects} reconnections");
    assert_eq!(outcome.sha256, Sha256Digest::of(&data));
    assert_eq!(server.stored("ann", "up.bin").expect("stored"), data);
    assert_eq!(session.quota().await.expect("quota").used, SIZE as u64, "usage matches the disk");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_reconnects_and_resumes_after_a_server_crash() {
    let mut server = TestServer::segmented(3, &[("ann", "pw")]);
    let data = content(SIZE, 22);
    server.place("ann", "down.bin", &data);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("down.bin");
    let session = quick_to_notice(&server).await;
    let remote = p("/down.bin");
    let direction = Direction::Get { remote: &remote, local: &dest };
    let (result, reconnects) = through_a_server_crash(&mut server, &session, direction, true).await;
    let outcome = result.expect("the download rides out the crash");
    assert!((1..=RECONNECT_ATTEMPTS).contains(&reconnects), "{reconnects} reconnections");
    assert_eq!(outcome.sha256, Sha256Digest::of(&data));
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_gives_up_when_the_server_stays_away() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(SIZE, 23);
    server.place("ann", "gone.bin", &data);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("gone.bin");
    let session = quick_to_notice(&server).await;
    let remote = p("/gone.bin");
    let direction = Direction::Get { remote: &remote, local: &dest };
    let (result, reconnects) =
        through_a_server_crash(&mut server, &session, direction, false).await;
    let err = result.expect_err("no server, no download");
    assert_eq!(reconnects, RECONNECT_ATTEMPTS, "{err}");
    assert!(!dest.exists(), "nothing installed");
    assert!(wharf::transfer::part_path(&dest).exists(), "the partial is kept for later");
}
