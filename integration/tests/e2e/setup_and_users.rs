//! `wharfd setup` and `wharfd user ...`, and that a running server sees user changes at once.

use std::os::unix::fs::PermissionsExt as _;

use wharf::error::ClientError;
use wharf::session::Session;
use wharf_integration::client::{login, options, text};
use wharf_integration::server::{TestServer, serve_and_read};

const SERVE: &[&str] = &["serve", "--listen", "127.0.0.1:0"];

fn fingerprint_line(stdout: &[u8]) -> String {
    text(stdout)
        .lines()
        .find(|l| l.starts_with("fingerprint "))
        .expect("fingerprint line")
        .to_owned()
}

#[test]
fn setup_writes_the_documented_config_and_keeps_an_edited_one() {
    // A root of its own: the harness's roots have a configuration the harness wrote.
    let root = tempfile::tempdir().expect("root");
    let setup = || {
        let out = std::process::Command::new(wharf_integration::binary("wharfd"))
            .arg("--root")
            .arg(root.path())
            .arg("setup")
            .output()
            .expect("run setup");
        assert!(out.status.success(), "setup: {}", text(&out.stderr));
    };
    setup();
    let config = root.path().join("etc/wharfd.toml");
    let written = std::fs::read_to_string(&config).expect("setup writes etc/wharfd.toml");
    let documented = include_str!("../../../etc/wharfd.toml");
    assert_eq!(written, documented, "setup writes the committed, documented configuration");
    std::fs::write(&config, "# edited\n[server]\nmax_connections = 7\n").expect("edit");
    setup();
    let kept = std::fs::read_to_string(&config).expect("config");
    assert!(kept.contains("max_connections = 7"), "setup keeps an edited config: {kept}");
}

#[test]
fn setup_writes_cert_key_and_layout_and_keeps_the_cert() {
    let server = TestServer::new("");
    let root = server.root();
    for dir in ["certs", "etc", "var/users", "var/homes", "var/log"] {
        assert!(root.join(dir).is_dir(), "{dir} missing");
    }
    let key_mode =
        std::fs::metadata(root.join("certs/server.key")).expect("key").permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600, "private key must be owner-only");

    let first = server.wharfd(&["setup"], None);
    let again = server.wharfd(&["setup"], None);
    assert!(text(&again.stdout).contains("kept existing certificate"));
    assert_eq!(fingerprint_line(&first.stdout), fingerprint_line(&again.stdout));
    assert!(fingerprint_line(&first.stdout).starts_with("fingerprint SHA256:"));

    let forced = server.wharfd(&["setup", "--force", "--host", "files.example.test"], None);
    assert!(forced.status.success());
    assert_ne!(fingerprint_line(&forced.stdout), fingerprint_line(&first.stdout));
    let pem = std::fs::read_to_string(root.join("certs/server.crt")).expect("cert");
    let der = wharf_common::tls::load_certs(&root.join("certs/server.crt")).expect("parse cert");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let contains = |needle: &[u8]| der[0].windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"files.example.test"), "extra --host SAN");
    assert!(contains(b"localhost"), "localhost SAN");
    assert!(contains(&[127, 0, 0, 1]), "127.0.0.1 SAN");
}

#[test]
fn user_commands_manage_records_homes_and_quotas() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw-ann", "5MiB");
    server.add_user("anna", "pw-anna", "unlimited");
    let record = std::fs::read_to_string(server.root().join("var/users/ann.toml")).expect("record");
    assert!(record.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{record}");
    assert!(!record.contains("pw-ann"), "the password itself must never be stored");
    assert!(server.home("ann").is_dir());

    server.place("ann", "f", &vec![0u8; 3000]);
    let list = text(&server.wharfd(&["user", "list"], None).stdout);
    let ann_line = list.lines().find(|l| l.starts_with("ann ")).expect("ann listed");
    assert!(ann_line.contains("5.0 MiB") && ann_line.contains("2.9 KiB"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("anna ") && l.contains("unlimited")), "{list}");

    let dup = server.wharfd(&["user", "add", "ann", "--password-stdin"], Some("x\n"));
    assert_eq!(dup.status.code(), Some(1), "adding an existing user fails");
    let bad = server.wharfd(&["user", "add", "../evil", "--password-stdin"], Some("x\n"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        !server.root().join("var/evil").exists() && !server.root().join("var/evil.toml").exists()
    );
    let empty = server.wharfd(&["user", "add", "bob", "--password-stdin"], Some("\n"));
    assert_eq!(empty.status.code(), Some(1), "empty passwords are refused");
    // A password piped in without --password-stdin is not silently traded for a prompt.
    let piped = server.wharfd(&["user", "add", "bob"], Some("pw-bob\n"));
    assert_eq!(piped.status.code(), Some(1));
    assert!(text(&piped.stderr).contains("pass --password-stdin"), "{}", text(&piped.stderr));
    assert!(!server.root().join("var/users/bob.toml").exists());

    assert!(server.wharfd(&["user", "quota", "ann", "2G"], None).status.success());
    let record = std::fs::read_to_string(server.root().join("var/users/ann.toml")).expect("record");
    assert!(record.contains(&format!("quota = {}", 2u64 << 30)), "{record}");

    assert!(server.wharfd(&["user", "del", "anna"], None).status.success());
    assert!(server.home("anna").is_dir(), "del without --purge keeps the home");
    assert!(server.wharfd(&["user", "del", "ann", "--purge"], None).status.success());
    assert!(!server.home("ann").exists(), "--purge removes the home");
    assert_eq!(server.wharfd(&["user", "del", "ann"], None).status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_sees_new_users_passwords_and_quotas() {
    let mut server = TestServer::with_users(&[("ann", "first")]);
    server.add_user("bob", "bobpw", "1MiB");
    login(&server, "bob", "bobpw").await.close().await;

    let out = server.wharfd(&["user", "passwd", "ann", "--password-stdin"], Some("second\n"));
    assert!(out.status.success());
    let old = Session::open(&options(&server), "ann", "first").await;
    assert!(matches!(old, Err(ClientError::Auth(_))), "old password must fail");
    let ann = login(&server, "ann", "second").await;

    assert_eq!(ann.quota().await.expect("quota").limit, Some(100 << 20));
    assert!(server.wharfd(&["user", "quota", "ann", "7MiB"], None).status.success());
    assert_eq!(ann.quota().await.expect("quota").limit, Some(7 << 20), "quota change seen live");
    ann.close().await;
}

#[test]
fn serve_on_a_fresh_root_sets_up_and_creates_a_demo_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = serve_and_read(dir.path(), SERVE, |line| line.contains("wharf --ca"));
    let all = lines.join("\n");
    assert!(all.contains("wharfd listening on 127.0.0.1:"), "{all}");
    let password_line =
        lines.iter().find(|l| l.starts_with("created user demo with password ")).expect("demo");
    let password = password_line.split_whitespace().nth(5).expect("password word");
    assert!(password.len() >= 16, "{password_line}");
    assert!(all.contains("wharf --ca ") && all.contains("demo@localhost:"), "{all}");
    assert!(dir.path().join("certs/server.crt").exists());
    let record =
        std::fs::read_to_string(dir.path().join("var/users/demo.toml")).expect("demo record");
    assert!(!record.contains(password), "the demo password must be stored hashed");
}

#[test]
fn serving_raises_the_open_files_limit_to_the_hard_one() {
    let mut server = TestServer::new("");
    server.start_with_open_files(256);
    let pid = server.pid().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).expect("line");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "the soft limit is the hard one now: {open_files}");
    assert_ne!(numbers[0], "256", "{open_files}");
    let log = server.log();
    assert!(log.contains("before=Some(256)"), "the log says what it was: {log}");
    server.stop();
}

#[test]
fn signals_sent_as_soon_as_the_server_listens_are_handled_not_fatal() {
    let mut server = TestServer::new("");
    for _ in 0..5 {
        // `stop` sends SIGTERM and asserts a clean exit, not death by the signal.
        server.start();
        server.stop();
        // SIGHUP reopens the logs; its default action would end the process.
        server.start();
        server.hangup();
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.stop();
    }
}

#[test]
fn wharfd_alone_with_listen_serves_an_existing_root() {
    let server = TestServer::new("");
    let lines = serve_and_read(server.root(), &["--listen", "127.0.0.1:0"], |line| {
        line.starts_with("certificate fingerprint")
    });
    assert!(lines.iter().any(|l| l.starts_with("wharfd listening on 127.0.0.1:")), "{lines:?}");
}
