//! Login: success, failures that look alike, throttling, the per-connection failure limit, the
//! unauthenticated timeout, the audit log, and requests sent behind a login before its answer.

use std::time::{Duration, Instant};

use wharf::error::ClientError;
use wharf::session::{Secret, Session};
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, EntryKind, ErrorCode, Reply};
use wharf_integration::binary;
use wharf_integration::client::{login, options, options_from, target, text, wharf};
use wharf_integration::lying::{LOGIN_HELD_AT_MOST, Lies, LyingServer};
use wharf_integration::pty::PtyShell;
use wharf_integration::server::TestServer;

async fn attempt(
    server: &TestServer,
    from: [u8; 4],
    user: &str,
    password: &str,
) -> (Result<(), ClientError>, Duration) {
    let session = Session::connect(&options_from(server, from)).await.expect("connect");
    let started = Instant::now();
    let result = session.login(user, password).await.map(|_| ());
    let took = started.elapsed();
    session.close().await;
    (result, took)
}

fn auth_message(result: &Result<(), ClientError>) -> String {
    match result {
        Err(ClientError::Auth(message)) => message.clone(),
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_give_the_same_error_after_the_same_work() {
    // No throttle delay here, so that only the Argon2 work is timed.
    let server = TestServer::configured(
        "[auth]\nthrottle_base_delay_ms = 0\nmax_failures_per_ip = 1000\n",
        &[("ann", "right")],
    );
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..5u8 {
        let (result, took) = attempt(&server, [127, 0, 1, round], "ann", "wrong").await;
        wrong.push((auth_message(&result), took));
        let (result, took) = attempt(&server, [127, 0, 2, round], "nobody", "wrong").await;
        unknown.push((auth_message(&result), took));
    }
    assert_eq!(wrong[0].0, unknown[0].0, "the two failures must be indistinguishable");
    // Noise only ever adds time, so the fastest of several runs shows the real work. Without the
    // dummy hash an unknown user answers in about a millisecond, some twenty times faster; a busy
    // machine can slow all five of one kind (a CI run saw 16 ms against 39 ms), hence the margin.
    let fastest = |runs: &[(String, Duration)]| runs.iter().map(|r| r.1).min().expect("runs");
    let (wrong_min, unknown_min) = (fastest(&wrong), fastest(&unknown));
    assert!(
        unknown_min * 4 >= wrong_min,
        "unknown user took {unknown_min:?}, wrong password {wrong_min:?}: the dummy hash is not being checked"
    );
    let (ok, _) = attempt(&server, [127, 0, 3, 1], "ann", "right").await;
    assert!(ok.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_delay_the_address_and_the_user_name_and_lock_only_the_address() {
    let config = "[auth]\nthrottle_base_delay_ms = 400\nthrottle_max_delay_ms = 800\nmax_failures_per_ip = 3\n";
    let server = TestServer::configured(config, &[("ann", "right"), ("bob", "bobpw")]);
    let attacker = [127, 0, 0, 66];
    let (first, _) = attempt(&server, attacker, "ann", "guess1").await;
    auth_message(&first);
    // One failure on record: the next attempt from that address waits at least the base delay.
    let (second, took) = attempt(&server, attacker, "bob", "guess2").await;
    auth_message(&second);
    assert!(took >= Duration::from_millis(400), "second attempt took only {took:?}");
    // The targeted user name is delayed from any address, too.
    let (_, took) = attempt(&server, [127, 0, 0, 67], "ann", "guess3").await;
    assert!(took >= Duration::from_millis(400), "user-name delay missing: {took:?}");

    let (third, _) = attempt(&server, attacker, "ann", "guess4").await;
    auth_message(&third);
    // Three failures from the attacker: even the right password is now refused from there...
    let (locked, _) = attempt(&server, attacker, "bob", "bobpw").await;
    assert!(auth_message(&locked).contains("too many failed logins"), "{locked:?}");
    // ...but the real user still gets in from their own address.
    let (real, _) = attempt(&server, [127, 0, 0, 99], "ann", "right").await;
    assert!(real.is_ok(), "{real:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn third_failure_on_a_connection_closes_it() {
    let server =
        TestServer::configured("[auth]\nthrottle_base_delay_ms = 0\n", &[("ann", "right")]);
    let session = Session::connect(&options(&server)).await.expect("connect");
    for _ in 0..3 {
        assert!(matches!(session.login("ann", "wrong").await, Err(ClientError::Auth(_))));
    }
    let closed =
        tokio::time::timeout(Duration::from_secs(10), session.closed()).await.expect("closed");
    assert!(
        matches!(&closed, ClientError::Auth(m) if m.contains("too many failed logins")),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_before_login_are_refused_and_idle_logins_time_out() {
    let server = TestServer::configured("[auth]\nlogin_timeout_secs = 1\n", &[("ann", "right")]);
    let session = Session::connect(&options(&server)).await.expect("connect");
    let refused = session.call_raw(Command::Stat { path: "/".into() }).await;
    assert!(
        matches!(refused, Err(ClientError::Remote { code: ErrorCode::NotLoggedIn, .. })),
        "{refused:?}"
    );
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), session.closed())
        .await
        .expect("closed in time");
    // The reason names the login timeout; how long it took depends on the machine's load, so the
    // time is only bounded by the wait above.
    assert!(
        matches!(&closed, ClientError::ConnectionLost(m) if m.contains("no login")),
        "{closed:?} after {:?}",
        started.elapsed()
    );

    // A logged-in session is not subject to the login timeout.
    let ann = login(&server, "ann", "right").await;
    let stat = tokio::time::timeout(Duration::from_secs(2), ann.closed()).await;
    assert!(stat.is_err(), "a logged-in session must stay open");
    assert!(matches!(ann.call_raw(Command::Quota).await, Ok(Reply::Quota { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_in_sessions_that_go_idle_are_closed() {
    let server = TestServer::configured("[server]\nsession_idle_secs = 1\n", &[("ann", "right")]);
    let ann = login(&server, "ann", "right").await;
    let closed =
        tokio::time::timeout(Duration::from_secs(10), ann.closed()).await.expect("closed in time");
    assert!(matches!(&closed, ClientError::ConnectionLost(m) if m.contains("idle")), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_is_audited() {
    let mut server =
        TestServer::configured("[auth]\nthrottle_base_delay_ms = 0\n", &[("ann", "right")]);
    login(&server, "ann", "right").await.close().await;
    let failed = Session::open(&options(&server), "mallory", "x").await;
    assert!(failed.is_err());
    server.stop();
    let audit = server.audit_log();
    let line = |user: &str, result: &str| {
        audit.lines().any(|l| {
            l.contains(&format!("user=\"{user}\""))
                && l.contains("ip=127.0.0.1")
                && l.contains(&format!("result=\"{result}\""))
        })
    };
    assert!(line("ann", "success"), "{audit}");
    assert!(line("mallory", "failure"), "{audit}");
    assert!(
        audit.lines().all(|l| l.starts_with("20")),
        "every line starts with a timestamp:\n{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_behind_a_login_are_served_after_it_or_refused_with_it() {
    let server = TestServer::with_users(&[("ann", "right")]);
    let root = RemotePath::root();
    let session = Session::connect(&options(&server)).await.expect("connect");
    let password = |p: &str| Secret::Password(p.to_owned());

    let refused = session.login_then("ann", password("wrong"), session.stat(&root)).await;
    assert!(matches!(&refused, Err(ClientError::Auth(_))), "{refused:?}");
    // The server answered the stat behind the refused login `not_logged_in`, and the connection
    // serves the next login as usual.
    let stat = session.login_then("ann", password("right"), session.stat(&root)).await;
    let entry = stat.expect("logged in").expect("the stat behind the login");
    assert_eq!(entry.kind, EntryKind::Dir);
    assert_eq!(session.user(), "ann");
    let raw = session.call_raw(Command::Stat { path: "/".into() }).await;
    assert!(matches!(raw, Ok(Reply::Stat { .. })), "{raw:?}");
    session.close().await;
}

#[test]
fn a_one_shot_command_leaves_with_its_login_but_nothing_runs_if_the_login_fails() {
    // A server that answers a login only once another request has come (or after 3 s): the
    // client's `ls` must leave before the login's answer.
    let lying = LyingServer::start(Lies { hold_login: 1, ..Lies::default() });
    let home = tempfile::tempdir().expect("home");
    let cert = lying.cert().display().to_string();
    let to = format!("ann@127.0.0.1:{}", lying.addr().port());
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "-c", "ls", &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lying.requests_behind_login(), ["List"], "the ls waited for the login's answer");
    // A script may start with `lcd`, which shows nothing, and still not wait.
    let script = format!("lcd '{}'; ls", home.path().display());
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "-c", &script, &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let behind = lying.requests_behind_login();
    assert_eq!(behind, ["List", "List"], "the ls after lcd waited for the login's answer");

    // Against a real server, a refused login stops everything behind it: the request already
    // sent, and the commands that ask the server nothing (`pwd` prints the remote folder).
    let server = TestServer::with_users(&[("ann", "right")]);
    let cert = server.cert().display().to_string();
    let to = target(&server, "ann");
    for script in ["ls", "pwd", "pwd; ls", "lpwd", "lcd /; ls"] {
        let out = wharf(home.path(), Some("wrong"), &["--ca", &cert, "-c", script, &to], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{script}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{script}: printed before the login failed");
        assert!(!stderr.contains("log in first"), "{script}: {stderr}");
    }
}

#[test]
fn a_one_shot_get_or_put_of_one_file_leaves_whole_with_its_login() {
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("notes.txt");
    std::fs::write(&file, b"notes").expect("local file");
    let (file, dir) = (file.display().to_string(), home.path().display().to_string());

    // `get` of one file sends its stat and its `get` together, both behind the login.
    let lying = LyingServer::start(Lies { hold_login: 2, ..Lies::default() });
    let (cert, port) = (lying.cert().display().to_string(), lying.addr().port());
    let url = format!("wharf://ann@127.0.0.1:{port}/notes.txt");
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "get", &url, &dir], None);
    // This server calls everything a folder.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is a directory (use get -r)"), "{}", text(&out.stderr));
    let mut behind = lying.requests_behind_login();
    behind.sort();
    assert_eq!(behind, ["Get", "Stat"], "the get waited for its stat, or the stat for the login");
    // So does each of a few files named outright.
    let lying = LyingServer::start(Lies { hold_login: 4, ..Lies::default() });
    let (cert, port) = (lying.cert().display().to_string(), lying.addr().port());
    let urls = ["a.txt", "b.txt"].map(|name| format!("wharf://ann@127.0.0.1:{port}/{name}"));
    let out =
        wharf(home.path(), Some("pw"), &["--ca", &cert, "get", &urls[0], &urls[1], &dir], None);
    // Both are attempted, and both fail as the folders this server calls them.
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 of 2 files failed") && stderr.contains("use get -r"), "{stderr}");
    let mut behind = lying.requests_behind_login();
    behind.sort();
    assert_eq!(behind, ["Get", "Get", "Stat", "Stat"], "the gets waited for their stats");

    // `put` into the home asks nothing first: the upload itself goes behind the login.
    let lying = LyingServer::start(Lies { hold_login: 1, ..Lies::default() });
    let (cert, port) = (lying.cert().display().to_string(), lying.addr().port());
    let url = format!("wharf://ann@127.0.0.1:{port}");
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "put", &file, &url], None);
    // It refuses uploads.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lying.requests_behind_login(), ["Put"], "the put was not the first request");
    // Nor into a folder named with a trailing slash.
    let url = format!("wharf://ann@127.0.0.1:{port}/box/");
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "put", &file, &url], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lying.requests_behind_login(), ["Put", "Put"], "the put into box/ was not first");
    // To a name, the put goes out beside a stat of the name (which may be a folder).
    let lying = LyingServer::start(Lies { hold_login: 2, ..Lies::default() });
    let (cert, port) = (lying.cert().display().to_string(), lying.addr().port());
    let url = format!("wharf://ann@127.0.0.1:{port}/name");
    let out = wharf(home.path(), Some("pw"), &["--ca", &cert, "put", &file, &url], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let mut behind = lying.requests_behind_login();
    behind.sort();
    assert_eq!(behind, ["Put", "Stat"], "the put waited for the stat of its name");
}

#[test]
fn transfer_bars_wait_for_the_login_the_transfer_went_out_behind() {
    // The login is held for 3 s (it waits for a third request that never comes); the `get` and
    // its stat have gone out behind it. Until the answer, no bar may show: the login might fail.
    let lying = LyingServer::start(Lies { hold_login: 3, ..Lies::default() });
    let home = tempfile::tempdir().expect("home");
    let (cert, port) = (lying.cert().display().to_string(), lying.addr().port());
    let url = format!("wharf://ann@127.0.0.1:{port}/big.iso");
    let dir = home.path().display().to_string();
    let args = ["--ca", cert.as_str(), "get", url.as_str(), dir.as_str()];
    let env = [("HOME", dir.as_str()), ("WHARF_PASSWORD", "pw")];
    let mut sh = PtyShell::spawn(&binary("wharf"), &args, &env);
    let screen = sh.watch(LOGIN_HELD_AT_MOST / 2);
    assert!(!screen.contains("files"), "a bar showed before the login was answered:\n{screen}");
    assert_eq!(sh.wait(), 2, "this server calls everything a folder");
    let mut behind = lying.requests_behind_login();
    behind.sort();
    assert_eq!(behind, ["Get", "Stat"]);
}
