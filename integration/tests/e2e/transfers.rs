//! Uploads and downloads: sizes, names, many files, parallelism, a bad network, and a control stream
//! that stays responsive while bytes move.

use std::net::SocketAddr;
use std::sync::Arc;

use wharf::error::ClientError;
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::CHUNK_SIZE;
use wharf_integration::client::{login, options, target, text, wharf};
use wharf_integration::raw::{RawClient, write_end, write_segment};
use wharf_integration::relay::{Impairment, Relay};
use wharf_integration::server::TestServer;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};

#[tokio::test(flavor = "multi_thread")]
async fn every_size_and_name_round_trips_verified() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let session = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local dir");
    let sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7];
    let names =
        ["empty", "one byte", "ünïcödé – chunk-1", "chunk", "chunk+1", "three chunks & a bit"];
    for (seed, (size, name)) in sizes.iter().zip(names).enumerate() {
        let data = content(*size, seed as u64);
        let source = local.path().join(name);
        std::fs::write(&source, &data).expect("write source");
        let remote = p(&format!("/{name}"));
        let up = session.put(&source, &remote, true, NO_PROGRESS).await.expect("put");
        assert_eq!((up.size, up.sha256), (*size as u64, Sha256Digest::of(&data)), "{name}");
        assert_eq!(server.stored("ann", name).expect("stored"), data, "{name} stored");

        let back = local.path().join(format!("{name}.back"));
        let down = session.get(&remote, &back, true, NO_PROGRESS).await.expect("get");
        assert_eq!(down.sha256, up.sha256);
        assert_eq!(std::fs::read(&back).expect("downloaded"), data, "{name} downloaded");
        assert!(!wharf::transfer::part_path(&back).exists(), "no partial left behind");
    }
    // Partials and reservations are all gone; usage is exactly the files.
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (sizes.iter().sum::<usize>() as u64, 0));
    assert_eq!(server.partial_uploads("ann"), 0);
    session.close().await;
}

#[test]
fn a_thousand_small_files_and_sixteen_in_parallel_through_the_cli() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work dir");
    let tree = work.path().join("tree");
    for dir in 0..10 {
        std::fs::create_dir_all(tree.join(format!("d{dir}"))).expect("dir");
        for file in 0..100 {
            let data = content(4096, dir * 1000 + file);
            std::fs::write(tree.join(format!("d{dir}/f{file:03}")), data).expect("file");
        }
    }
    // Folders with no files, and a file deep down: made on the way up and on the way back.
    std::fs::create_dir_all(tree.join("empty/deeper/deepest")).expect("empty dirs");
    std::fs::create_dir_all(tree.join("d3/x/y/z")).expect("deep dir");
    std::fs::write(tree.join("d3/x/y/z/deep.txt"), b"deep").expect("deep file");
    for n in 0..16 {
        std::fs::write(work.path().join(format!("par{n:02}.bin")), content(2 << 20, 50_000 + n))
            .expect("file");
    }
    let home = tempfile::tempdir().expect("home");
    let cert = server.cert().display().to_string();
    let to = target(&server, "ann");
    let run = |commands: &str| {
        let script = format!("lcd {}; {commands}", work.path().display());
        wharf(home.path(), Some("pw"), &["--ca", &cert, "-c", &script, &to], None)
    };
    let out = run("put -r -j 8 tree /; put -j 16 par*.bin /");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("sha256 ok").count(), 1017, "one verified line per file");
    assert!(server.exists("ann", "tree/empty/deeper/deepest"), "an empty folder goes up");
    std::fs::create_dir(work.path().join("back")).expect("back dir");
    let out = run("get -r -j 8 tree back; get -j 16 'par*.bin' back");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for dir in 0..10 {
        for file in 0..100 {
            let relative = format!("d{dir}/f{file:03}");
            let back =
                std::fs::read(work.path().join("back/tree").join(&relative)).expect("downloaded");
            assert_eq!(back, content(4096, dir * 1000 + file), "{relative}");
        }
    }
    assert!(work.path().join("back/tree/empty/deeper/deepest").is_dir(), "and comes back");
    let deep = std::fs::read(work.path().join("back/tree/d3/x/y/z/deep.txt")).expect("deep");
    assert_eq!(deep, b"deep");
    for n in 0..16 {
        let name = format!("par{n:02}.bin");
        assert_eq!(
            std::fs::read(work.path().join("back").join(&name)).expect("back"),
            content(2 << 20, 50_000 + n)
        );
    }
    // The uploads made the folders they went into on their way; only the empty folder was made
    // by a `mkdir` of its own, a round trip before them.
    server.stop();
    let audit = server.audit_log();
    let asked: Vec<&str> =
        audit.lines().filter(|line| line.contains("mkdir") && !line.contains("via")).collect();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert!(asked[0].contains("\"/tree/empty/deeper/deepest\""), "{asked:#?}");
    let made = |dir: &str| audit.lines().any(|l| l.contains("via") && l.contains(dir));
    assert!(made("\"/tree/d3/x/y/z\"") && made("\"/tree/d0\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_survive_loss_duplication_and_reordering() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let bad = Impairment { drop_percent: 3, duplicate_percent: 2, reorder_percent: 5 };
    let relay = Relay::start(server.addr(), bad, 7).await;
    let mut through_relay = options(&server);
    through_relay.target.port = relay.addr().port();
    let session =
        wharf::session::Session::open(&through_relay, "ann", "pw").await.expect("login via relay");
    let local = tempfile::tempdir().expect("local");
    let data = content(8 << 20, 99);
    std::fs::write(local.path().join("lossy.bin"), &data).expect("source");
    let up = session
        .put(&local.path().join("lossy.bin"), &p("/lossy.bin"), true, NO_PROGRESS)
        .await
        .expect("put");
    assert_eq!(up.sha256, Sha256Digest::of(&data));
    let back = local.path().join("back.bin");
    session.get(&p("/lossy.bin"), &back, true, NO_PROGRESS).await.expect("get");
    assert_eq!(std::fs::read(back).expect("back"), data);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_stream_answers_while_an_upload_is_in_flight() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let data = content(100_000, 5);
    let cmd = Command::Put {
        path: "/slow.bin".into(),
        size: data.len() as u64,
        source: "v1".into(),
        resume: false,
        mtime: None,
        eager: None,
        parents: false,
    };
    raw.send(2, cmd).await;
    let Reply::Transfer { transfer, lanes: 1, .. } = raw.reply().await.reply else {
        panic!("expected transfer")
    };
    let mut lane = raw.open_transfer(transfer).await;
    write_segment(&mut lane, (0, data.len() as u64), &data[..1000]).await.expect("first bytes");

    // The upload is stalled halfway; other requests are still served, and the quota shows it.
    raw.send(3, Command::List { path: "/".into() }).await;
    let listed = raw.reply().await;
    assert_eq!(listed.id, 3);
    assert!(
        matches!(listed.reply, Reply::Entries { ref entries, done: true } if entries.is_empty()),
        "{listed:?}"
    );
    let other = login(&server, "ann", "pw").await;
    let quota = other.quota().await.expect("quota");
    // Bytes count as used once written (in chunks of up to 1 MiB), the rest stays reserved.
    assert_eq!(quota.used + quota.reserved, 100_000, "{quota:?}");
    assert!(quota.reserved > 0, "{quota:?}");

    lane.write_all(&data[1000..]).await.expect("rest");
    write_end(&mut lane, Sha256Digest::of(&data)).await.expect("end");
    let done = raw.reply().await;
    let Reply::Done { size: 100_000, version: Some(version), .. } = done.reply else {
        panic!("an upload's done names the stored file's version: {done:?}")
    };
    assert_eq!(server.stored("ann", "slow.bin").expect("stored"), data);
    // The version a listing gives it: a mirror remembers the one without asking for the other.
    raw.send(4, Command::Tree { path: "/".into() }).await;
    let Reply::TreeEntries { entries, .. } = raw.reply().await.reply else { panic!("tree") };
    let listed = entries.iter().find(|entry| entry.path == "slow.bin").expect("listed");
    assert_eq!(listed.version, version);
    other.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_transfers_name_their_reason() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let session = Arc::new(login(&server, "ann", "pw").await);
    server.make_dir("ann", "dir");
    let local = tempfile::tempdir().expect("local");
    std::fs::write(local.path().join("f"), b"data").expect("file");
    let code = |result: Result<wharf::transfer::Outcome, ClientError>| match result {
        Err(ClientError::Remote { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let f = local.path().join("f");
    assert_eq!(code(session.put(&f, &p("/dir"), true, NO_PROGRESS).await), ErrorCode::IsADirectory);
    assert_eq!(
        code(session.put(&f, &p("/missing/f"), true, NO_PROGRESS).await),
        ErrorCode::NotFound
    );
    assert_eq!(code(session.put(&f, &p("/"), true, NO_PROGRESS).await), ErrorCode::InvalidPath);
    let dest = local.path().join("out");
    assert_eq!(code(session.get(&p("/nope"), &dest, true, NO_PROGRESS).await), ErrorCode::NotFound);
    assert_eq!(
        code(session.get(&p("/dir"), &dest, true, NO_PROGRESS).await),
        ErrorCode::IsADirectory
    );
    assert!(!dest.exists() && !wharf::transfer::part_path(&dest).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_survives_the_client_changing_address() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(24 << 20, 77);
    server.place("ann", "moving.bin", &data);
    let session = Arc::new(login(&server, "ann", "pw").await);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("moving.bin");
    let halfway = tokio::sync::Notify::new();
    let moved = std::sync::atomic::AtomicU64::new(0);
    let on_bytes = |n: u64| {
        if moved.fetch_add(n, std::sync::atomic::Ordering::Relaxed) < (4 << 20) {
            return;
        }
        halfway.notify_one();
    };
    let remote = p("/moving.bin");
    let download = session.get(&remote, &dest, true, &on_bytes);
    let migrate = async {
        halfway.notified().await;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("new socket");
        session.rebind(socket).expect("rebind");
        moved.load(std::sync::atomic::Ordering::Relaxed)
    };
    let (outcome, moved_at_rebind) = tokio::join!(download, migrate);
    assert!(moved_at_rebind < data.len() as u64, "the address changed mid-transfer");
    let outcome = outcome.expect("the download completes after the address change");
    assert_eq!(outcome.sha256, Sha256Digest::of(&data));
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_file_cut_short_during_an_upload_is_reported_as_changed_here() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let session = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local dir");
    let source = local.path().join("shrinks.bin");
    std::fs::write(&source, content(16 << 20, 3)).expect("source");
    // Cut to 1 MiB once the upload has opened the file, before its bytes go.
    let cut = std::sync::Once::new();
    let on_bytes = |_| {
        cut.call_once(|| {
            let file = std::fs::File::options().write(true).open(&source).expect("open");
            file.set_len(1 << 20).expect("cut");
        });
    };
    let err = session.put(&source, &p("/shrinks.bin"), true, &on_bytes).await.expect_err("cut");
    // This end's fault, in its own words; not the server's reply to the lanes it saw end.
    assert!(err.to_string().contains("the source file changed during the transfer"), "{err}");
    assert!(server.stored("ann", "shrinks.bin").is_none(), "nothing was installed");
    session.close().await;
}

/// Loopback carries datagrams of 64 KiB: both ends' path-MTU search must find them, so that a
/// transfer is not cut into 1,452-byte packets (each with its own encryption and acknowledgement).
#[tokio::test(flavor = "multi_thread")]
async fn datagrams_grow_to_what_the_route_carries() {
    use wharf_common::datagram::{DEFAULT_DATAGRAM, largest_datagram_towards};
    let route = largest_datagram_towards(SocketAddr::from(([127, 0, 0, 1], 0)));
    if route <= DEFAULT_DATAGRAM {
        eprintln!("skipped: loopback carries no more than {route} bytes a datagram here");
        return;
    }
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(32 << 20, 81);
    server.place("ann", "down.bin", &data);
    let session = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let average = |bytes: u64, datagrams: u64| bytes / datagrams.max(1);

    let before = session.transport_stats().udp_rx;
    let down = local.path().join("down.bin");
    session.get(&p("/down.bin"), &down, true, NO_PROGRESS).await.expect("get");
    assert_eq!(std::fs::read(&down).expect("downloaded"), data);
    let received = session.transport_stats().udp_rx;
    let (bytes, datagrams) = (received.bytes - before.bytes, received.datagrams - before.datagrams);
    assert!(
        average(bytes, datagrams) > u64::from(DEFAULT_DATAGRAM),
        "the server sent {bytes} bytes in {datagrams} datagrams"
    );

    let before = session.transport_stats().udp_tx;
    let up = session.put(&down, &p("/up.bin"), true, NO_PROGRESS).await.expect("put");
    assert_eq!(up.sha256, Sha256Digest::of(&data));
    assert_eq!(server.stored("ann", "up.bin").expect("stored"), data);
    let stats = session.transport_stats();
    let (bytes, datagrams) =
        (stats.udp_tx.bytes - before.bytes, stats.udp_tx.datagrams - before.datagrams);
    assert!(
        average(bytes, datagrams) > u64::from(DEFAULT_DATAGRAM),
        "the client sent {bytes} bytes in {datagrams} datagrams"
    );
    assert!(stats.path.current_mtu > DEFAULT_DATAGRAM, "mtu {}", stats.path.current_mtu);
    session.close().await;
}
