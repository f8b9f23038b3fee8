//! The lifecycle of accounts and of the server root: sessions end with their account, names are not
//! handed another user's files, a failed start leaves nothing behind, and secrets are private.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use wharf::error::ClientError;
use wharf::session::Session;
use wharf_integration::client::{login, options, text};
use wharf_integration::server::{TestServer, serve_and_read};

const SERVE: &[&str] = &["serve", "--listen", "127.0.0.1:0"];

/// Long enough for several account re-checks, however loaded the machine.
const NOTICE: Duration = Duration::from_secs(30);

async fn ended_by_server(session: &Session) -> ClientError {
    tokio::time::timeout(NOTICE, session.closed()).await.expect("the server ends the session")
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_or_changing_their_password_ends_their_sessions() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw")]);
    let ann = login(&server, "ann", "pw").await;
    let bob = login(&server, "bob", "pw").await;

    let changed = server.wharfd(&["user", "passwd", "ann", "--password-stdin"], Some("new\n"));
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    let err = ended_by_server(&ann).await;
    assert!(matches!(&err, ClientError::Auth(m) if m.contains("password was changed")), "{err:?}");
    login(&server, "ann", "new").await.close().await;

    let deleted = server.wharfd(&["user", "del", "bob"], None);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let err = ended_by_server(&bob).await;
    assert!(matches!(&err, ClientError::Auth(m) if m.contains("deleted")), "{err:?}");
    assert!(Session::open(&options(&server), "bob", "pw").await.is_err(), "bob is gone");
}

#[test]
fn a_re_added_name_does_not_silently_inherit_the_old_home() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "1MiB");
    server.place("ann", "diary.txt", b"old secrets");
    assert!(server.wharfd(&["user", "del", "ann"], None).status.success());

    let again = server.wharfd(&["user", "add", "ann", "--password-stdin"], Some("pw2\n"));
    assert_eq!(again.status.code(), Some(1));
    let stderr = text(&again.stderr);
    assert!(stderr.contains("--reuse-home") && stderr.contains("earlier user"), "{stderr}");
    assert!(!server.root().join("var/users/ann.toml").exists(), "no account was made");

    let reused =
        server.wharfd(&["user", "add", "ann", "--reuse-home", "--password-stdin"], Some("pw2\n"));
    assert!(reused.status.success(), "{}", text(&reused.stderr));
    assert_eq!(server.stored("ann", "diary.txt").expect("kept"), b"old secrets");

    // `del --purge` leaves nothing to inherit.
    assert!(server.wharfd(&["user", "del", "ann", "--purge"], None).status.success());
    let fresh = server.wharfd(&["user", "add", "ann", "--password-stdin"], Some("pw3\n"));
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
}

#[test]
fn demo_is_not_created_on_top_of_an_old_demo_home() {
    let server = TestServer::new("");
    std::fs::create_dir_all(server.home("demo")).expect("old home");
    server.place("demo", "left.txt", b"x");
    let out = serve_briefly(&server);
    assert!(out.contains("demo was not created"), "{out}");
    assert!(!server.root().join("var/users/demo.toml").exists());
}

#[test]
fn a_start_that_fails_creates_no_demo_user() {
    let server = TestServer::new("");
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("occupy a port");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = server.wharfd(&["serve", "--listen", &addr], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("binding UDP"), "{}", text(&out.stderr));
    assert!(!server.root().join("var/users/demo.toml").exists(), "no demo without its password");
    drop(busy);

    let out = serve_briefly(&server);
    assert!(out.contains("created user demo with password"), "{out}");
    assert!(server.root().join("var/users/demo.toml").exists());
}

/// What `wharfd serve` prints in a root without users, up to what it says about `demo`.
fn serve_briefly(server: &TestServer) -> String {
    let lines = serve_and_read(server.root(), SERVE, |line| {
        line.contains("wharf --ca") || line.contains("demo was not created")
    });
    lines.join("\n")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_logs_and_partials_are_for_the_service_user_alone() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let session = login(&server, "ann", "pw").await;
    session.close().await;
    server.stop();
    let root = server.root();
    for dir in ["var/users", "var/partials", "var/digests", "var/log", "certs", "var/homes/ann"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
    for file in [
        "var/users/ann.toml",
        "var/log/audit.log",
        "var/log/wharfd.log",
        "certs/server.key",
        "certs/reset.key",
    ] {
        assert_eq!(mode(&root.join(file)), 0o600, "{file}");
    }
    // A root made before these rules is tightened by the next setup.
    std::fs::set_permissions(root.join("var/users"), std::fs::Permissions::from_mode(0o755))
        .expect("loosen");
    assert!(server.wharfd(&["setup"], None).status.success());
    assert_eq!(mode(&root.join("var/users")), 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_downloads_renames_and_deletes_are_audited() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let local = tempfile::tempdir().expect("local");
    let source = local.path().join("report.txt");
    std::fs::write(&source, b"numbers").expect("source");
    let session = login(&server, "ann", "pw").await;
    let remote = wharf_common::path::RemotePath::parse("/report.txt").expect("path");
    session.put(&source, &remote, true, &|_| {}).await.expect("put");
    session.get(&remote, &local.path().join("copy.txt"), true, &|_| {}).await.expect("get");
    let renamed = wharf_common::path::RemotePath::parse("/final.txt").expect("path");
    session.rename(&remote, &renamed).await.expect("mv");
    session.remove(&renamed, false).await.expect("rm");
    let refused = session.remove(&renamed, false).await;
    assert!(refused.is_err());
    session.close().await;
    server.stop();
    let audit = server.audit_log();
    let has = |parts: &[&str]| audit.lines().any(|line| parts.iter().all(|p| line.contains(p)));
    assert!(has(&["\"ann\"", "upload", "\"/report.txt\"", "size=7", "result=\"ok\""]), "{audit}");
    assert!(has(&["download", "\"/report.txt\"", "size=7"]), "{audit}");
    assert!(has(&["rename", "\"/report.txt\"", "to=\"/final.txt\""]), "{audit}");
    assert!(has(&["delete", "\"/final.txt\"", "result=\"ok\""]), "{audit}");
    assert!(has(&["delete", "\"/final.txt\"", "result=\"not_found\""]), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_plain_text_say_logout_and_reopen_on_sighup() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    login(&server, "ann", "pw").await.close().await;
    let logs = server.root().join("var/log");
    // The log is written by a thread of its own: a line still on its way when the file is rotated
    // would land in the fresh one. (Under a loaded machine's full suite, once in several runs.)
    let deadline = std::time::Instant::now() + NOTICE;
    let written = || std::fs::read_to_string(logs.join("audit.log")).unwrap_or_default();
    while !written().contains("result=\"success\"") {
        assert!(std::time::Instant::now() < deadline, "the login never reached audit.log");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rotated away, as logrotate does; SIGHUP makes the server write to a fresh file of the name.
    std::fs::rename(logs.join("audit.log"), logs.join("audit.log.1")).expect("rotate");
    server.hangup();
    let deadline = std::time::Instant::now() + NOTICE;
    while !logs.join("audit.log").exists() {
        assert!(std::time::Instant::now() < deadline, "no new audit.log after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    login(&server, "ann", "pw").await.close().await;
    server.stop();
    let rotated = std::fs::read_to_string(logs.join("audit.log.1")).expect("old audit log");
    let fresh = std::fs::read_to_string(logs.join("audit.log")).expect("new audit log");
    assert_eq!(rotated.matches("result=\"success\"").count(), 1, "{rotated}");
    assert_eq!(fresh.matches("result=\"success\"").count(), 1, "{fresh}");

    let main = std::fs::read_to_string(logs.join("wharfd.log")).expect("main log");
    let console = server.log();
    for (name, text) in [("wharfd.log", &main), ("console", &console)] {
        assert!(!text.contains('\u{1b}'), "{name} has colour codes:\n{text}");
    }
    assert!(main.contains("client logged out"), "{main}");
    // The user is recorded on the connection's span after login, once, whichever log shows it.
    for (name, text) in [("wharfd.log", &main), ("console", &console)] {
        for line in text.lines().filter(|line| line.contains("client logged out")) {
            assert_eq!(line.matches("user=\"ann\"").count(), 1, "{name}: {line}");
        }
    }
    assert!(!main.contains("connection lost"), "a logout is not a lost connection:\n{main}");
}

#[test]
fn an_invalid_log_level_is_refused() {
    let server = TestServer::new("[log]\nlevel = \"loud\"\n");
    let out = server.wharfd(&["serve", "--listen", "127.0.0.1:0"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid [log] level \"loud\""), "{}", text(&out.stderr));
}
