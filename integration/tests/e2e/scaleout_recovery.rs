//! The s3 backend when its engines fail: the database stopped under a node (clear errors, nothing
//! published half-way, service back when it returns), a store that leaves requests unanswered
//! (retried past their timeout, then a clear failure), and a node killed mid-upload whose partial
//! then expires (nothing left in the store). Real Garage and PostgreSQL, as in `scaleout`.

use std::time::{Duration, Instant};

use wharf::error::ClientError;
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::ErrorCode;
use wharf_integration::client::login;
use wharf_integration::engines::Engines;
use wharf_integration::stalling_store::StallingStore;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};

/// Waits, for at most 60 s, until `done` says so.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_database_stopped_requests_fail_clearly_and_nothing_is_published_half_way() {
    let Some(engines) = Engines::start("database outage test") else { return };
    let node = engines.node("", &["ann"]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let data = content(6 * piece + 1, 5);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let session = std::sync::Arc::new(login(&node, "ann", "pw").await);

    // The database stops while an upload is under way.
    let upload = {
        let (session, source) = (session.clone(), source.clone());
        tokio::spawn(async move { session.put(&source, &p("/big.bin"), true, NO_PROGRESS).await })
    };
    until("a piece is recorded", || engines.postgres.count("upload_pieces") > 0).await;
    engines.postgres.halt().expect("stop PostgreSQL");
    let cut = tokio::time::timeout(Duration::from_secs(60), upload).await;
    let cut = cut.expect("the upload fails instead of hanging").expect("task");
    assert!(cut.is_err(), "an upload finished without its database: {cut:?}");

    // Meanwhile every request says what is wrong, and so does a login.
    match session.list(&p("/")).await {
        Err(ClientError::Remote { code: ErrorCode::Io, message }) => {
            assert!(message.contains("database"), "{message}");
        }
        other => panic!("a listing without the database: {other:?}"),
    }
    let options = wharf_integration::client::options(&node);
    let refused = wharf::session::Session::open(&options, "ann", "pw").await;
    assert!(refused.is_err(), "a login without the database");

    // Back: the same session carries on, and the upload resumes to a verified file that was
    // never visible before it was whole.
    engines.postgres.resume().expect("start PostgreSQL again");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        match session.list(&p("/")).await {
            Ok(listing) => break listing,
            Err(err) => assert!(Instant::now() < deadline, "no service after the restart: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(listing.is_empty(), "published half-way: {listing:?}");
    let resumed = session.put(&source, &p("/big.bin"), true, NO_PROGRESS).await.expect("put");
    assert!(resumed.resumed_from > 0, "the pieces recorded before the outage were kept");
    assert_eq!(resumed.sha256, Sha256Digest::of(&data));
    let back = local.path().join("back.bin");
    session.get(&p("/big.bin"), &back, false, NO_PROGRESS).await.expect("get");
    assert!(std::fs::read(&back).expect("back") == data);
}

/// The `[storage]` setting of a node in front of a stalling store: requests give up after 2 s.
const SHORT_REQUESTS: &str = "request_timeout_secs = 2\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_piece_the_store_leaves_unanswered_is_sent_again_after_its_timeout() {
    let Some(engines) = Engines::start("stalled piece test") else { return };
    let store = StallingStore::start(&engines.garage.endpoint, &["PUT"], 1);
    let node = engines.node_via(&store.endpoint(), SHORT_REQUESTS, &["ann"]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let data = content(2 * piece + 1, 7);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let session = login(&node, "ann", "pw").await;

    let put = session.put(&source, &p("/big.bin"), true, NO_PROGRESS).await;
    put.unwrap_or_else(|err| {
        panic!("the upload failed on one stalled piece: {err}\n{}", node.log())
    });
    assert_eq!(store.stalled(), 1, "a piece's PUT was left unanswered");
    assert!(engines.stored("ann", "big.bin") == Some(data), "what the store holds is the file");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_never_answers_fails_transfers_within_their_retries_and_says_so() {
    let Some(engines) = Engines::start("silent store test") else { return };
    let local = tempfile::tempdir().expect("local");
    let size = wharf_common::transfer::PIECE_SIZE as usize + 1;
    let (kept, new) = (local.path().join("kept.bin"), local.path().join("new.bin"));
    std::fs::write(&kept, content(size, 8)).expect("kept");
    std::fs::write(&new, content(size, 9)).expect("new");
    let direct = engines.node("", &["ann"]);
    let session = login(&direct, "ann", "pw").await;
    session.put(&kept, &p("/kept.bin"), false, NO_PROGRESS).await.expect("a file to download");

    // Then the store answers no request for a piece, of a node that reaches it through the proxy.
    let store = StallingStore::start(&engines.garage.endpoint, &["PUT", "GET"], usize::MAX);
    let node = engines.node_via(&store.endpoint(), SHORT_REQUESTS, &[]);
    let session = login(&node, "ann", "pw").await;
    let (to_new, to_kept) = (p("/new.bin"), p("/kept.bin"));
    let back = local.path().join("back.bin");
    // Five tries of 2 s each, and the backoff between them, then the error.
    let limit = Duration::from_secs(60);
    let (put, get) = tokio::join!(
        tokio::time::timeout(limit, session.put(&new, &to_new, true, NO_PROGRESS)),
        tokio::time::timeout(limit, session.get(&to_kept, &back, false, NO_PROGRESS)),
    );
    for (what, result) in [("upload", put.map(drop_ok)), ("download", get.map(drop_ok))] {
        match result.unwrap_or_else(|_| panic!("the {what} hung")) {
            Err(ClientError::Remote { code: ErrorCode::Io, message }) => {
                assert!(message.contains("file store did not answer in time"), "{what}: {message}");
                assert!(!message.contains("blobs/"), "{what} told the store's names: {message}");
            }
            other => panic!("the {what} without a store: {other:?}"),
        }
    }
    assert!(store.stalled() >= 4, "each piece was tried again: {} tries", store.stalled());
    assert!(!engines.exists("ann", "new.bin"), "a file appeared without its content");
    assert!(!back.exists(), "a download appeared without its content");
    let listing = session.list(&p("/")).await.expect("the session carries on");
    assert_eq!(listing.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["kept.bin"]);
}

/// A transfer's result without its outcome, to compare an upload's with a download's.
fn drop_ok<T>(result: Result<T, ClientError>) -> Result<(), ClientError> {
    result.map(drop)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_abandoned_by_a_killed_node_expires_and_leaves_nothing_in_the_store() {
    let Some(engines) = Engines::start("orphan sweep test") else { return };
    let mut a = engines.node("", &["ann"]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let source = local.path().join("big.bin");
    std::fs::write(&source, content(6 * piece + 1, 6)).expect("source");
    let session = login(&a, "ann", "pw").await;
    let upload =
        tokio::spawn(async move { session.put(&source, &p("/big.bin"), true, NO_PROGRESS).await });
    until("two pieces are recorded", || engines.postgres.count("upload_pieces") >= 2).await;
    a.kill();
    upload.abort();
    assert!(engines.objects() >= 2, "the pieces are in the store");

    // Much later, as far as the database can tell, another node starts and sweeps.
    engines.postgres.query(
        "UPDATE uploads SET updated = now() - interval '2 hours', lease_until = now() RETURNING 1",
    );
    let b = engines.node("[server]\npartial_ttl_secs = 3600\n", &[]);
    until("the upload and its blob are gone", || {
        engines.postgres.count("uploads") == 0
            && engines.postgres.count("blob_gc") == 0
            && engines.objects() == 0
    })
    .await;
    let session = login(&b, "ann", "pw").await;
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (0, 0), "the space is given back");
}
