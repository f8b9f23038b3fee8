//! Many sessions at once, pipelined requests, connection caps and graceful shutdown.

use std::time::Duration;

use wharf::error::ClientError;
use wharf::session::Session;
use wharf_common::path::RemotePath;
use wharf_common::proto::{CloseCode, Reply};
use wharf_integration::client::{login, options, options_from};
use wharf_integration::raw::{RawClient, upload, write_end, write_segment};
use wharf_integration::server::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_sessions_logged_in_at_once_all_work() {
    let mut server = TestServer::new("[server]\nmax_connections_per_ip = 64\n");
    let users: Vec<String> = (0..5).map(|i| format!("user{i}")).collect();
    for user in &users {
        server.add_user(user, "pw", "10MiB");
    }
    server.start();
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for n in 0..50 {
        let server = server.clone();
        let user = users[n % users.len()].clone();
        tasks.push(tokio::spawn(async move { login(&server, &user, "pw").await }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await.expect("login task"));
    }
    // All 50 are open at the same time; each now works in its own directory.
    let mut work = Vec::new();
    for (n, session) in sessions.into_iter().enumerate() {
        work.push(tokio::spawn(async move {
            let dir = RemotePath::parse(&format!("/s{n}/inner")).expect("path");
            session.mkdir(&dir, true).await.expect("mkdir");
            session.cd(&format!("/s{n}")).await.expect("cd");
            let names: Vec<String> = session
                .list(&session.cwd())
                .await
                .expect("ls")
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(names, ["inner"]);
            session
                .remove(&RemotePath::parse(&format!("/s{n}")).expect("path"), true)
                .await
                .expect("rm -r");
            session.close().await;
        }));
    }
    for task in work {
        task.await.expect("session work");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_on_one_session_each_get_their_own_answer() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    for i in 0..20 {
        server.place("ann", &format!("f{i}"), &vec![0u8; i]);
    }
    let session = std::sync::Arc::new(login(&server, "ann", "pw").await);
    let stats = (0..20).map(|i| {
        let session = session.clone();
        tokio::spawn(async move {
            session.stat(&RemotePath::parse(&format!("/f{i}")).expect("path")).await
        })
    });
    for (i, stat) in stats.enumerate() {
        let entry = stat.await.expect("task").expect("stat");
        assert_eq!((entry.name, entry.size), (format!("f{i}"), i as u64));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_per_ip_cap_are_refused_and_others_carry_on() {
    let mut server = TestServer::new("[server]\nmax_connections_per_ip = 2\n");
    server.add_user("ann", "pw", "1MiB");
    server.start();
    let first = login(&server, "ann", "pw").await;
    let second = login(&server, "ann", "pw").await;
    let third = Session::open(&options(&server), "ann", "pw").await;
    assert!(
        matches!(&third, Err(ClientError::Connect { reason, .. }) if reason.contains("too many connections")),
        "{third:?}"
    );
    // Another address is not affected, and the first two sessions still work.
    let other =
        Session::open(&options_from(&server, [127, 0, 0, 2]), "ann", "pw").await.expect("other ip");
    first.quota().await.expect("first still works");
    second.quota().await.expect("second still works");
    other.close().await;
    first.close().await;
    // A freed place can be taken again.
    login(&server, "ann", "pw").await.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_sessions_cleanly_and_the_server_exits_zero() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let session = login(&server, "ann", "pw").await;
    session.quota().await.expect("works before shutdown");
    server.stop(); // SIGTERM, and asserts a zero exit
    let closed =
        tokio::time::timeout(Duration::from_secs(10), session.closed()).await.expect("closed");
    assert!(
        matches!(&closed, ClientError::ConnectionLost(m) if m.contains("shutting down")),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_total_cap_are_refused_from_any_address() {
    let mut server = TestServer::new("[server]\nmax_connections = 3\n");
    server.add_user("ann", "pw", "1MiB");
    server.start();
    let mut open = Vec::new();
    for ip in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]] {
        open.push(Session::open(&options_from(&server, ip), "ann", "pw").await.expect("under cap"));
    }
    // A fourth, from an address with no connections at all, is refused: the cap is global.
    let fourth = Session::open(&options_from(&server, [127, 0, 0, 4]), "ann", "pw").await;
    assert!(
        matches!(&fourth, Err(ClientError::Connect { reason, .. }) if reason.contains("connection limit reached")),
        "{fourth:?}"
    );
    for session in &open {
        session.quota().await.expect("existing sessions carry on");
    }
    // Once one leaves, its place can be taken.
    open.pop().expect("one").close().await;
    Session::open(&options_from(&server, [127, 0, 0, 4]), "ann", "pw")
        .await
        .expect("a freed place")
        .close()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_uploads_get_the_grace_period_then_close_cleanly_with_partials_kept() {
    let mut server = TestServer::new("[server]\nshutdown_grace_secs = 2\n");
    server.add_user("ann", "pw", "100MiB");
    server.start();
    // Two pieces, so that each half is a whole piece, which the s3 backend keeps as well.
    let size = 2 * wharf_common::transfer::PIECE_SIZE as usize;
    let data = crate::util::content(size, 71);
    let digest = wharf_common::hash::Sha256Digest::of(&data);
    let mut lanes = Vec::new();
    let mut clients = Vec::new();
    for name in ["finishing", "stalled"] {
        let mut raw = RawClient::login(&server, "ann", "pw").await;
        let put = upload(&format!("/{name}"), size as u64, true);
        raw.send(2, put).await;
        let Reply::Transfer { transfer, .. } = raw.reply().await.reply else { panic!("transfer") };
        let mut lane = raw.open_transfer(transfer).await;
        let half = (size / 2) as u64;
        write_segment(&mut lane, (0, half), &data[..size / 2]).await.expect("first half");
        lanes.push(lane);
        clients.push(raw);
    }
    while server.partial_bytes("ann") < size as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.terminate();

    // Within the grace period, an upload that finishes is committed...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut stalled_lane, mut finishing_lane) =
        (lanes.pop().expect("stalled"), lanes.pop().expect("finishing"));
    let (stalled, mut finishing) =
        (clients.pop().expect("stalled"), clients.pop().expect("finishing"));
    let half = (size / 2) as u64;
    write_segment(&mut finishing_lane, (half, half), &data[size / 2..]).await.expect("rest");
    write_end(&mut finishing_lane, digest).await.expect("end");
    let done = loop {
        match finishing.reply().await.reply {
            Reply::Notice { .. } => continue,
            other => break other,
        }
    };
    assert!(matches!(done, Reply::Done { .. }), "{done:?}");
    assert_eq!(server.stored("ann", "finishing").expect("committed"), data);

    // ...one that does not is cut off after it, with a clean close, and its partial kept.
    let code = stalled.close_code().await;
    assert_eq!(code, Some(CloseCode::ShuttingDown as u64));
    let _ = stalled_lane.write_all(b"too late").await;
    server.stop();
    assert!(!server.exists("ann", "stalled"));
    assert!(server.partial_bytes("ann") >= (size / 2) as u64, "partial kept");
    drop(finishing);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_makes_every_client_prove_its_address_still_lets_clients_in() {
    // With no unvalidated handshakes allowed, every connection answers a stateless Retry first.
    let server = TestServer::configured(
        "[server]\nretry_above_handshakes = 0\nmax_requests_in_flight = 40\n",
        &[("ann", "pw")],
    );
    let session = login(&server, "ann", "pw").await;
    assert!(session.list(&RemotePath::root()).await.expect("list").is_empty());
    // The login reply says how many requests may be in flight, which the client keeps under.
    assert_eq!(session.requests_in_flight(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_from_many_tasks_at_once_wait_their_turn_instead_of_being_refused() {
    // Commands running at once (a background job beside the shell's next command) each keep to
    // the server's limit on their own; together they would pass it, and the server would refuse
    // the rest (`busy`). The connection's gate holds the surplus back until slots free up.
    let server =
        TestServer::configured("[server]\nmax_requests_in_flight = 32\n", &[("ann", "pw")]);
    let session = std::sync::Arc::new(login(&server, "ann", "pw").await);
    assert_eq!(session.requests_in_flight(), 32);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let session = session.clone();
        tasks.spawn(async move { session.list(&RemotePath::root()).await.map(|_| ()) });
    }
    let mut refused = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result.expect("task") {
            refused.push(err.to_string());
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 400 failed, the first: {:?}",
        refused.len(),
        refused.first()
    );
}
