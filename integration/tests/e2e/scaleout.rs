//! The s3 backend, on real engines started by the tests: a one-node Garage for the files and a
//! PostgreSQL for the namespace. Several wharfd nodes share them; a client moves between nodes.
//! Skipped, saying why, where Garage or PostgreSQL is missing; `.ci/run` provides both and sets
//! `WHARF_REQUIRE_ENGINES`, which turns a skip into a failure.

use std::time::{Duration, Instant};

use wharf_common::hash::Sha256Digest;
use wharf_integration::client::login;
use wharf_integration::engines::Engines;
use wharf_integration::server::TestServer;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};

#[test]
fn a_node_refuses_a_database_without_its_schema_and_migrate_is_idempotent() {
    let Some(engines) = Engines::start("schema test") else { return };
    let server = engines.root("");
    // Not migrated: serving refuses at once, and says what to do.
    let out = server.wharfd(&["serve", "--listen", "127.0.0.1:0"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("wharfd migrate"), "{stderr}");
    let first = server.wharfd(&["migrate"], None);
    let applied = String::from_utf8_lossy(&first.stdout);
    let all: Vec<i32> = (1..=wharfd::db::SCHEMA_VERSION).collect();
    assert!(applied.contains(&format!("applied migrations {all:?}")), "{applied}");
    let again = server.wharfd(&["migrate"], None);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"), "{again:?}");
    // A schema from a newer wharfd: this one refuses it rather than guess.
    engines.postgres.query("INSERT INTO wharf_schema (version) VALUES (999) RETURNING version");
    let out = server.wharfd(&["serve", "--listen", "127.0.0.1:0"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("upgrade wharfd"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_serve_the_same_files_from_the_store_and_the_database() {
    let Some(engines) = Engines::start("two-node test") else { return };
    let segmented = "[transfer]\nsegment_threshold = 1\nsegment_lanes = 4\n";
    let a = engines.node(segmented, &["ann", "bob"]);
    let b = engines.node(segmented, &[]);
    let local = tempfile::tempdir().expect("local");
    let (on_a, on_b) = (login(&a, "ann", "pw").await, login(&b, "ann", "pw").await);

    // Sizes around a piece, and several pieces on four lanes, so that pieces arrive out of order.
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    for (seed, size) in [0, 1, piece - 1, piece, 3 * piece + 5].into_iter().enumerate() {
        let data = content(size, seed as u64);
        let source = local.path().join(format!("f{seed}"));
        std::fs::write(&source, &data).expect("source");
        let remote = p(&format!("/f{seed}"));
        let up = on_a.put(&source, &remote, true, NO_PROGRESS).await.expect("put on a");
        assert_eq!(up.sha256, Sha256Digest::of(&data));
        let back = local.path().join(format!("f{seed}.back"));
        let down = on_b.get(&remote, &back, true, NO_PROGRESS).await.expect("get on b");
        assert_eq!((down.size, down.sha256), (size as u64, up.sha256), "size {size}");
        assert_eq!(std::fs::read(&back).expect("back"), data, "size {size}");
    }
    // Nothing is kept on either node's disk, and the users are the database's.
    for node in [&a, &b] {
        let homes = std::fs::read_dir(node.root().join("var/homes/ann")).map_or(0, Iterator::count);
        assert_eq!(homes, 0, "a file landed in a node's local home");
        let records = std::fs::read_dir(node.root().join("var/users")).map_or(0, Iterator::count);
        assert_eq!(records, 0, "a user record landed on a node's disk");
    }
    assert_eq!(engines.postgres.count("users"), 2);

    // Directories, renames of whole trees and removals, seen from the other node.
    on_b.mkdir(&p("/d/e"), true).await.expect("mkdir -p on b");
    on_a.rename(&p("/f4"), &p("/d/e/big")).await.expect("mv on a");
    on_b.rename(&p("/d"), &p("/moved")).await.expect("mv dir on b");
    let entry = on_a.stat(&p("/moved/e/big")).await.expect("stat on a");
    assert_eq!(entry.size, 3 * piece as u64 + 5);
    assert!(on_a.stat(&p("/d")).await.is_err(), "the old name is gone");
    on_a.remove(&p("/moved"), true).await.expect("rm -r on a");
    assert!(on_b.stat(&p("/moved/e/big")).await.is_err());

    // One user sees nothing of another's.
    let bob = login(&b, "bob", "pw").await;
    assert!(bob.stat(&p("/f1")).await.is_err(), "bob sees ann's file");
    let listing = bob.list(&p("/")).await.expect("ls");
    assert!(listing.is_empty(), "bob's home lists {listing:?}");
    for session in [on_a, on_b, bob] {
        session.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_by_a_killed_node_resumes_on_another() {
    let Some(engines) = Engines::start("failover test") else { return };
    let segmented = "[transfer]\nsegment_threshold = 1\nsegment_lanes = 2\n";
    let mut a = engines.node(segmented, &["ann"]);
    let b = engines.node(segmented, &[]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let data = content(12 * piece + 3, 9);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");

    // kill -9 node A once some pieces of the upload are recorded.
    let on_a = login(&a, "ann", "pw").await;
    let upload = {
        let source = source.clone();
        tokio::spawn(async move { on_a.put(&source, &p("/big.bin"), true, NO_PROGRESS).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while engines.postgres.count("upload_pieces") < 2 {
        assert!(!upload.is_finished(), "the upload finished before the kill");
        assert!(Instant::now() < deadline, "no piece recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill();
    // The client would notice only at its idle timeout: it moves on at once, as a person would.
    upload.abort();

    let on_b = login(&b, "ann", "pw").await;
    let resumed = on_b.put(&source, &p("/big.bin"), true, NO_PROGRESS).await.expect("put on b");
    assert!(resumed.resumed_from >= 2 * piece as u64, "resumed at {}", resumed.resumed_from);
    assert_eq!(resumed.sha256, Sha256Digest::of(&data));
    let back = local.path().join("back.bin");
    on_b.get(&p("/big.bin"), &back, false, NO_PROGRESS).await.expect("get");
    assert_eq!(std::fs::read(&back).expect("back"), data);
    assert_eq!(engines.postgres.count("uploads"), 0, "the upload is finished everywhere");
    on_b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_piece_changed_in_the_store_fails_the_download_and_installs_nothing() {
    use object_store::ObjectStoreExt as _;
    let Some(engines) = Engines::start("corruption test") else { return };
    let port = wharf_integration::free_tcp_port().expect("port");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let node = engines.node(&format!("[metrics]\nlisten = \"{metrics}\"\n"), &["ann"]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let data = content(piece + 100, 4);
    let source = local.path().join("f.bin");
    std::fs::write(&source, &data).expect("source");
    let session = login(&node, "ann", "pw").await;
    session.put(&source, &p("/f.bin"), true, NO_PROGRESS).await.expect("put");

    // One byte of the second piece flips in the store, behind wharfd's back.
    let blob = engines.postgres.query("SELECT blob FROM entries WHERE path = '/f.bin'");
    let key = object_store::path::Path::from(format!("blobs/{blob}/1"));
    let store = engines.garage.client().expect("s3 client");
    let mut piece_bytes =
        store.get(&key).await.expect("piece").bytes().await.expect("bytes").to_vec();
    piece_bytes[7] ^= 1;
    store.put(&key, piece_bytes.into()).await.expect("tamper");

    let back = local.path().join("back.bin");
    let got = session.get(&p("/f.bin"), &back, false, NO_PROGRESS).await;
    assert!(
        matches!(
            &got,
            Err(wharf::error::ClientError::Remote {
                code: wharf_common::proto::ErrorCode::ChecksumMismatch,
                ..
            })
        ),
        "{got:?}"
    );
    assert!(!back.exists(), "a corrupt file was installed");
    // The node's metrics saw the store and the database at work. (The node sent what its store
    // held: the download failed at the client, not at the node.)
    let scraped = wharf_integration::scrape(metrics);
    let value = |name| wharf_integration::sample(&scraped, name).unwrap_or(0.0);
    assert!(value("wharf_store_seconds_count") >= 3.0, "{scraped}");
    assert!(value("wharf_database_seconds_count") >= 1.0, "{scraped}");
    assert_eq!(value("wharf_transfers_total{direction=\"upload\",result=\"ok\"}"), 1.0);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_cut_off_by_a_killed_node_resumes_on_another() {
    let Some(engines) = Engines::start("download failover test") else { return };
    let segmented = "[transfer]\nsegment_threshold = 1\nsegment_lanes = 2\n";
    let mut a = engines.node(segmented, &["ann"]);
    let b = engines.node(segmented, &[]);
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let data = content(12 * piece + 3, 10);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let on_b = login(&b, "ann", "pw").await;
    on_b.put(&source, &p("/big.bin"), false, NO_PROGRESS).await.expect("put on b");

    // kill -9 node A once the client has recorded some of the download.
    let dest = local.path().join("back.bin");
    let mut record = wharf::transfer::part_path(&dest).into_os_string();
    record.push(".meta");
    let recorded = || std::fs::read_to_string(&record).is_ok_and(|t| t.contains("present = [["));
    let on_a = login(&a, "ann", "pw").await;
    let download = {
        let dest = dest.clone();
        tokio::spawn(async move { on_a.get(&p("/big.bin"), &dest, true, NO_PROGRESS).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !recorded() {
        assert!(!download.is_finished(), "the download finished before the kill");
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.kill();
    download.abort();
    let _ = download.await;

    let resumed = on_b.get(&p("/big.bin"), &dest, true, NO_PROGRESS).await.expect("get on b");
    assert!(resumed.resumed_from > 0, "resumed at {}", resumed.resumed_from);
    assert_eq!(resumed.sha256, Sha256Digest::of(&data));
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
    on_b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_holds_across_nodes() {
    let Some(engines) = Engines::start("quota test") else { return };
    let a = engines.node_with_quota("", &["ann"], "24MiB");
    let b = engines.node("", &[]);
    let local = tempfile::tempdir().expect("local");
    let sixteen = local.path().join("sixteen.bin");
    std::fs::write(&sixteen, content(16 << 20, 1)).expect("source");
    let eight = local.path().join("eight.bin");
    std::fs::write(&eight, content(8 << 20, 2)).expect("source");
    // Both log in first: each node measures the user's usage (nothing yet) at login, so only the
    // shared reservation can stop node B.
    let (on_a, on_b) = (login(&a, "ann", "pw").await, login(&b, "ann", "pw").await);

    let upload = {
        let sixteen = sixteen.clone();
        tokio::spawn(async move {
            let outcome = on_a.put(&sixteen, &p("/a.bin"), true, NO_PROGRESS).await;
            on_a.close().await;
            outcome
        })
    };
    // Once node A holds its reservation (or has installed the file), node B cannot fit another 16.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engines.postgres.count("uploads WHERE reserved > 0") == 0
        && engines.postgres.count("entries WHERE path = '/a.bin'") == 0
    {
        assert!(Instant::now() < deadline, "node A never reserved");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let refused = on_b.put(&sixteen, &p("/b.bin"), true, NO_PROGRESS).await;
    assert!(
        matches!(
            &refused,
            Err(wharf::error::ClientError::Remote {
                code: wharf_common::proto::ErrorCode::QuotaExceeded,
                ..
            })
        ),
        "{refused:?}"
    );
    upload.await.expect("task").expect("node A's upload");
    // What is left still fits, exactly.
    on_b.put(&eight, &p("/c.bin"), true, NO_PROGRESS).await.expect("the last 8 MiB");
    let used = engines.postgres.query("SELECT sum(size) FROM entries WHERE NOT is_dir");
    assert_eq!(used, (24u64 << 20).to_string());
    assert_eq!(engines.postgres.count("uploads"), 0);
    on_b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_total_of_a_users_files_follows_every_change_and_migrate_rebuilds_it() {
    let Some(engines) = Engines::start("usage total test") else { return };
    let node = engines.node("", &["ann"]);
    let session = login(&node, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let put = async |remote: &str, size: usize| {
        let source = local.path().join("source");
        std::fs::write(&source, content(size, size as u64)).expect("source");
        session.put(&source, &p(remote), true, NO_PROGRESS).await.expect("put");
    };
    let total = || engines.postgres.query("SELECT coalesce(sum(files), 0) FROM usage");
    let files =
        || engines.postgres.query("SELECT coalesce(sum(size), 0) FROM entries WHERE NOT is_dir");

    // New files (inline and in the bucket), a file replaced by a smaller one, a file moved over
    // another, a folder removed with what it holds.
    put("/one", 5000).await;
    put("/two", 100_000).await;
    put("/one", 3000).await;
    session.mkdir(&p("/d"), false).await.expect("mkdir");
    put("/d/x", 7).await;
    put("/d/y", 70_000).await;
    assert_eq!((total(), files()), ("173007".to_owned(), "173007".to_owned()));
    let stripes = engines.postgres.count("usage");
    assert!(stripes > 1, "six changes went to one of 16 stripes ({stripes}); odds of 1 in 16^5");
    session.rename(&p("/two"), &p("/one")).await.expect("mv over a file");
    assert_eq!((total(), files()), ("170007".to_owned(), "170007".to_owned()));
    assert_eq!(engines.objects(), 2, "the two files over the inline limit are in the bucket");
    session.remove(&p("/d"), true).await.expect("rm -r");
    assert_eq!((total(), files()), ("100000".to_owned(), "100000".to_owned()));
    // The removed file's blob was queued, and the sweep deletes it from the bucket.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engines.objects() != 1 || engines.postgres.count("blob_gc") != 0 {
        assert!(Instant::now() < deadline, "the removed file's blob was never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(session.quota().await.expect("quota").used, 100_000);
    session.close().await;

    // A database from before the total existed: migrate computes it from the files.
    engines.postgres.query("DROP TABLE usage; DELETE FROM wharf_schema WHERE version >= 7");
    let migrated = node.wharfd(&["migrate"], None);
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("[7, 8]"), "{migrated:?}");
    assert_eq!(total(), "100000");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_on_one_node_count_on_every_node() {
    let Some(engines) = Engines::start("throttle test") else { return };
    let auth =
        "[auth]\nmax_failures_per_ip = 3\nthrottle_base_delay_ms = 1\nthrottle_max_delay_ms = 10\n";
    let a = engines.node(auth, &["ann"]);
    let b = engines.node(auth, &[]);
    let options_a = wharf_integration::client::options(&a);
    for _ in 0..3 {
        let guess = wharf::session::Session::open(&options_a, "ann", "wrong").await;
        assert!(matches!(guess, Err(wharf::error::ClientError::Auth(_))), "{:?}", guess.err());
    }
    // Node B never saw a failure itself, and still refuses the address.
    let options_b = wharf_integration::client::options(&b);
    let refused = wharf::session::Session::open(&options_b, "ann", "pw").await;
    match refused {
        Err(wharf::error::ClientError::Auth(message)) => {
            assert!(message.contains("too many failed logins"), "{message}");
        }
        other => panic!("node B let the address in: {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_stay_readable_and_writable_when_a_store_node_dies() {
    let Some(engines) = Engines::start("store failover test") else { return };
    let mut cluster = wharf_integration::garage::GarageCluster::start().expect("garage cluster");
    let mut node = TestServer::new("");
    let config = format!(
        "{}\n[database]\nurl = \"{}\"\n",
        cluster.storage_config(node.root(), 0),
        engines.postgres.url()
    );
    std::fs::write(node.root().join("etc/wharfd.toml"), config).expect("config");
    assert!(node.wharfd(&["migrate"], None).status.success());
    node.add_user("ann", "pw", "1GiB");
    node.start();
    let session = login(&node, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let piece = wharf_common::transfer::PIECE_SIZE as usize;
    let before = content(2 * piece + 9, 21);
    let source = local.path().join("before.bin");
    std::fs::write(&source, &before).expect("source");
    session.put(&source, &p("/before.bin"), true, NO_PROGRESS).await.expect("put");

    // One of the three store nodes dies: two copies of every piece remain, and a quorum of two.
    cluster.kill(2);
    let back = local.path().join("back.bin");
    session.get(&p("/before.bin"), &back, false, NO_PROGRESS).await.expect("get after the kill");
    assert_eq!(std::fs::read(&back).expect("back"), before);
    let after = content(piece + 1, 22);
    let source = local.path().join("after.bin");
    std::fs::write(&source, &after).expect("source");
    let up = session.put(&source, &p("/after.bin"), true, NO_PROGRESS).await.expect("put after");
    assert_eq!(up.sha256, Sha256Digest::of(&after));

    // A second one dies: no quorum. An upload fails with an error the user can act on, and the
    // session goes on. (The timeout only guards against a hang; wharfd gives up after 20 s.)
    cluster.kill(1);
    let source = local.path().join("lost.bin");
    std::fs::write(&source, content(piece, 23)).expect("source");
    let lost = p("/lost.bin");
    let put = session.put(&source, &lost, true, NO_PROGRESS);
    let failed = tokio::time::timeout(Duration::from_secs(300), put).await.expect("no hang");
    assert!(matches!(failed, Err(wharf::error::ClientError::Remote { .. })), "{failed:?}");
    session.stat(&p("/before.bin")).await.expect("the session goes on");
    session.close().await;
}

/// Statements sent together (pipelined) run in the order they are polled only if none stops to
/// prepare on the way. The install and the quota check depend on that order (the new row takes its
/// content from the upload's pieces before the upload and its pieces go; the per-user lock comes
/// before the check it guards), so they call `prepare_all` first: here, on a connection that has
/// prepared only the later statement, the earlier one must still run first.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_batch_runs_in_order_on_a_connection_that_prepared_only_part_of_it() {
    use wharfd::db::Cached as _;
    let Some(engines) = Engines::start("pipelining test") else { return };
    let settings = wharfd::config::DatabaseSettings { url: engines.postgres.url(), pool_size: 1 };
    let pool = wharfd::db::pool(&settings).expect("pool");
    let client = pool.get().await.expect("a connection");
    client
        .batch_execute("CREATE TABLE runs (n serial PRIMARY KEY, what text)")
        .await
        .expect("table");
    let first = "INSERT INTO runs (what) VALUES ('first')";
    let second = "INSERT INTO runs (what) VALUES ('second')";
    client.prepare_cached(second).await.expect("the second statement prepared alone");
    client.prepare_all(&[first, second]).await.expect("both prepared");
    futures_util::future::try_join(
        client.execute_cached(first, &[]),
        client.execute_cached(second, &[]),
    )
    .await
    .expect("the batch");
    let rows = client.query("SELECT what FROM runs ORDER BY n", &[]).await.expect("select");
    let order: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(order, ["first", "second"]);
}
