//! What a user sees when the server restarts or a client dies under running transfers: no hangs,
//! no lockouts, no waiting for dead connections to time out.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wharf::error::ClientError;
use wharf::reconnect::with_reconnects;
use wharf_integration::client::{login, spawn_wharf, text};
use wharf_integration::server::TestServer;

use crate::util::{content, p};

/// Waits for `child` to exit; `None` if it is still running after `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until the server holds some bytes of an upload by `user` in its partials.
fn upload_under_way(server: &TestServer, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.partial_bytes(user) == 0 {
        assert!(Instant::now() < deadline, "no upload started:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `wharf put ARGS... wharf://ann@127.0.0.1:PORT/` as a process, password in the environment.
fn spawn_put(server: &TestServer, home: &Path, args: &[&str]) -> Child {
    let cert = server.cert().display().to_string();
    let url = format!("wharf://ann@127.0.0.1:{}/", server.addr().port());
    let mut all = vec!["--ca", cert.as_str(), "put"];
    all.extend_from_slice(args);
    all.push(url.as_str());
    spawn_wharf(home, Some("pw"), &all, false)
}

fn kill_hard(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn a_multi_file_put_rides_out_a_graceful_restart() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let (one, two) = (content(24 << 20, 31), content(24 << 20, 32));
    let (path_one, path_two) = (local.path().join("big1"), local.path().join("big2"));
    std::fs::write(&path_one, &one).expect("big1");
    std::fs::write(&path_two, &two).expect("big2");
    let home = tempfile::tempdir().expect("home");
    let (a, b) = (path_one.display().to_string(), path_two.display().to_string());
    let mut client = spawn_put(&server, home.path(), &["-j", "1", &a, &b]);

    upload_under_way(&server, "ann");
    let addr = server.addr();
    server.stop(); // SIGTERM: the running upload gets the grace period, the next one is refused
    server.start_on(addr);

    let Some(status) = exit_within(&mut client, Duration::from_secs(120)) else {
        kill_hard(&mut client);
        panic!("the client hung after the server restarted:\n{}", server.log());
    };
    let out = client.wait_with_output().expect("output");
    assert!(status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(server.stored("ann", "big1").expect("big1"), one);
    assert_eq!(server.stored("ann", "big2").expect("big2"), two);
}

#[test]
fn an_upload_whose_client_was_killed_is_taken_over_at_once_by_the_next() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let data = content(96 << 20, 33);
    let source = local.path().join("big.bin");
    std::fs::write(&source, &data).expect("source");
    let source = source.display().to_string();
    let home = tempfile::tempdir().expect("home");

    let mut first = spawn_put(&server, home.path(), &[&source]);
    upload_under_way(&server, "ann");
    kill_hard(&mut first);
    assert!(
        !server.exists("ann", "big.bin"),
        "the first upload must still have been running when its client died"
    );

    // The server has not noticed the dead client (its idle timeout is 30 s): the same upload again
    // takes over at once and resumes from what was written.
    let second = spawn_put(&server, home.path(), &[&source]);
    let out = second.wait_with_output().expect("second put");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("resumed at"), "it resumes rather than starting over: {stdout}");
    assert_eq!(server.stored("ann", "big.bin").expect("stored"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_resets_old_connections_at_once() {
    // The session keeps the default idle timeout (30 s): only a stateless reset the client accepts
    // can end its old connection sooner.
    let mut server = TestServer::segmented(2, &[("ann", "pw")]);
    let size = 96usize << 20;
    let data = content(size, 34);
    server.place("ann", "down.bin", &data);
    let local = tempfile::tempdir().expect("local");
    let dest = local.path().join("down.bin");
    let session = login(&server, "ann", "pw").await;

    let moved = AtomicU64::new(0);
    let reached = Notify::new();
    let on_bytes = |n: u64| {
        if moved.fetch_add(n, Ordering::Relaxed) + n >= size as u64 / 4 {
            reached.notify_one();
        }
    };
    let reconnects = AtomicU32::new(0);
    let on_reconnect = |_: u32, _: &ClientError| {
        reconnects.fetch_add(1, Ordering::Relaxed);
    };
    let remote = p("/down.bin");
    let run = with_reconnects(&session, true, on_reconnect, |resume| {
        let (session, remote, dest, on_bytes) = (&session, &remote, &dest, &on_bytes);
        async move { session.get(remote, dest, resume, on_bytes).await }
    });
    tokio::pin!(run);
    tokio::select! {
        () = reached.notified() => {}
        result = &mut run => panic!("finished before the crash: {:?}", result.err()),
    }
    let addr = server.addr();
    server.kill();
    server.start_on(addr);
    // `closed` looks at the link it finds when first polled, the old one: `join!` polls it first.
    let (old_link_closed, outcome) = tokio::join!(session.closed(), run);
    let outcome = outcome.expect("the download completes after the restart");
    assert_eq!(outcome.size, size as u64);
    assert_eq!(std::fs::read(&dest).expect("downloaded"), data);
    assert!(reconnects.load(Ordering::Relaxed) >= 1);
    assert!(
        old_link_closed.to_string().contains("reset"),
        "the old connection ends with a stateless reset, not a timeout: {old_link_closed}\n{}",
        server.log()
    );
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_died() {
    // Grace and idle timeout far longer than the assertion: only noticing the dead peer is quick.
    let config = "[server]\nshutdown_grace_secs = 120\n[transport]\nidle_timeout_secs = 120\n";
    let mut server = TestServer::configured(config, &[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let source = local.path().join("big.bin");
    std::fs::write(&source, content(96 << 20, 35)).expect("source");
    let home = tempfile::tempdir().expect("home");
    let mut client = spawn_put(&server, home.path(), &[&source.display().to_string()]);
    upload_under_way(&server, "ann");
    kill_hard(&mut client);

    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "shutdown waited {took:?} for a dead client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_after_the_control_stream_ended_fails_at_once() {
    // A stand-in server that ends its side of the control stream but keeps the connection open, as
    // wharfd does for a moment while it shuts down.
    let root = TestServer::new("");
    let certs = wharf_common::tls::load_certs(&root.cert()).expect("cert");
    let key = wharf_common::tls::load_key(&root.root().join("certs/server.key")).expect("key");
    let crypto = wharf_common::tls::server_crypto(certs, key).expect("tls");
    let config = quinn::ServerConfig::with_crypto(std::sync::Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let port = endpoint.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let conn = endpoint.accept().await.expect("incoming").await.expect("handshake");
        let (mut send, _recv) = conn.accept_bi().await.expect("control stream");
        send.finish().expect("finish");
        conn.closed().await;
    });

    let target = wharf::target::Target { user: None, host: "127.0.0.1".into(), port };
    let options =
        wharf::session::ConnectOptions::new(target, wharf::session::Trust::Ca(root.cert()));
    let session = wharf::session::Session::connect(&options).await.expect("connect");
    // The first request opens the stream (QUIC opens it with its first bytes) and sees it end.
    let first = tokio::time::timeout(Duration::from_secs(10), session.quota()).await;
    assert!(matches!(first, Ok(Err(_))), "the first request fails: {first:?}");
    let later = tokio::time::timeout(Duration::from_secs(10), session.quota()).await;
    assert!(
        matches!(&later, Ok(Err(ClientError::ConnectionLost(_)))),
        "a request after the end fails at once instead of waiting forever: {later:?}"
    );
    session.close().await;
    server.abort();
}
