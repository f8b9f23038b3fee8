//! Key logins: `wharf keygen`, `wharfd user key add|list|del`, and the proof bound to the TLS
//! session, refused for unknown, removed and other users' keys, for replays, and throttled like
//! passwords.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wharf::error::ClientError;
use wharf::identity::{Identity, generate, public_path};
use wharf::session::Session;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_integration::client::{options, target, text};
use wharf_integration::raw::{RawClient, error_code};
use wharf_integration::server::TestServer;

/// A fresh unsealed key pair in `dir`.
fn key(dir: &Path, name: &str) -> (PathBuf, Arc<Identity>) {
    let path = dir.join(name);
    generate(&path, None, name).expect("keygen");
    let identity = Identity::load(&path, || None).expect("load");
    (path, Arc::new(identity))
}

fn authorize(server: &TestServer, user: &str, private: &Path) {
    let public = public_path(private).display().to_string();
    let out = server.wharfd(&["user", "key", "add", user, &public], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

async fn key_login(
    server: &TestServer,
    user: &str,
    identity: &Arc<Identity>,
) -> Result<Session, ClientError> {
    let session = Session::connect(&options(server)).await?;
    session.login_key(user, identity.clone()).await?;
    Ok(session)
}

/// `wharf [ARGS] -c pwd ann@server` with HOME in `home` and no password anywhere.
fn wharf_without_password(server: &TestServer, home: &Path, args: &[&str]) -> std::process::Output {
    let cert = server.cert().display().to_string();
    std::process::Command::new(wharf_integration::binary("wharf"))
        .args(["--ca", &cert])
        .args(args)
        .args(["-c", "pwd", &target(server, "ann")])
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("WHARF_PASSWORD")
        .env_remove("WHARF_KEY_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wharf")
}

#[test]
fn keygen_then_key_add_lets_a_script_log_in_without_a_password() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "1MiB");
    server.start();
    let home = tempfile::tempdir().expect("home");

    // No key yet, no password: refused at once.
    assert_eq!(wharf_without_password(&server, home.path(), &[]).status.code(), Some(4));

    let keygen = std::process::Command::new(wharf_integration::binary("wharf"))
        .args(["keygen", "--no-passphrase", "-C", "ann@laptop"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("keygen");
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let default = home.path().join(".config/wharf/id_ed25519");
    authorize(&server, "ann", &default);
    let listed = text(&server.wharfd(&["user", "key", "list", "ann"], None).stdout);
    assert!(listed.contains("SHA256:") && listed.contains("ann@laptop"), "{listed}");

    // The default key is used by itself.
    let out = wharf_without_password(&server, home.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "/");

    // A sealed key given with -i, its passphrase from the environment.
    let sealed = home.path().join("sealed");
    generate(&sealed, Some("secret words"), "sealed").expect("keygen");
    authorize(&server, "ann", &sealed);
    let other_home = tempfile::tempdir().expect("home without a default key");
    let sealed_arg = sealed.display().to_string();
    let mut command = std::process::Command::new(wharf_integration::binary("wharf"));
    command
        .args(["--ca", &server.cert().display().to_string(), "-i", &sealed_arg])
        .args(["-c", "pwd", &target(&server, "ann")])
        .env("HOME", other_home.path())
        .env_remove("WHARF_PASSWORD")
        .env("WHARF_KEY_PASSPHRASE", "secret words")
        .stdin(std::process::Stdio::null());
    let out = command.output().expect("wharf -i");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    server.stop();
    let audit = server.audit_log();
    let fingerprint = Identity::load(&default, || None).expect("load").public().fingerprint();
    assert!(
        audit.lines().any(|l| l.contains("method=\"key\"")
            && l.contains(&fingerprint)
            && l.contains("success")),
        "the audit log names the key:\n{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_other_users_and_removed_keys_are_refused() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw")]);
    let dir = tempfile::tempdir().expect("keys");
    let (ann_path, ann_key) = key(dir.path(), "ann");
    let (bob_path, bob_key) = key(dir.path(), "bob");
    let (_, stranger) = key(dir.path(), "stranger");
    authorize(&server, "ann", &ann_path);
    authorize(&server, "bob", &bob_path);

    let session = key_login(&server, "ann", &ann_key).await.expect("ann's key");
    assert!(matches!(key_login(&server, "ann", &stranger).await, Err(ClientError::Auth(_))));
    assert!(
        matches!(key_login(&server, "ann", &bob_key).await, Err(ClientError::Auth(_))),
        "bob's key is not ann's"
    );

    let fingerprint = ann_key.public().fingerprint();
    let out = server.wharfd(&["user", "key", "del", "ann", &fingerprint[..16]], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ended =
        tokio::time::timeout(Duration::from_secs(30), session.closed()).await.expect("ended");
    assert!(matches!(&ended, ClientError::Auth(m) if m.contains("key")), "{ended:?}");
    assert!(
        matches!(key_login(&server, "ann", &ann_key).await, Err(ClientError::Auth(_))),
        "removed"
    );
    // A password still works for a user who has one.
    wharf_integration::client::login(&server, "ann", "pw").await.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_proof_is_worthless_on_another_connection() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let dir = tempfile::tempdir().expect("keys");
    let (path, identity) = key(dir.path(), "ann");
    authorize(&server, "ann", &path);

    let mut first = RawClient::connect(&server).await;
    let exported = wharf_common::tls::login_exporter(&first.conn, "ann").expect("exporter");
    let proof = Command::LoginKey {
        user: "ann".into(),
        key: identity.public().to_base64(),
        signature: identity.sign_login("ann", &exported),
    };
    first.send(1, proof.clone()).await;
    assert!(matches!(first.reply().await.reply, Reply::LoggedIn { .. }));

    // The same bytes, replayed on a new connection by someone who saw them.
    let mut replay = RawClient::connect(&server).await;
    replay.send(1, proof).await;
    assert_eq!(error_code(&replay.reply().await.reply), ErrorCode::AuthFailed);
    // Garbage in the key fields fails the same way, without hurting the server.
    let garbage =
        Command::LoginKey { user: "ann".into(), key: "%%%".into(), signature: "AA==".into() };
    replay.send(2, garbage).await;
    assert_eq!(error_code(&replay.reply().await.reply), ErrorCode::AuthFailed);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_key_logins_meet_the_password_throttle() {
    let config = "[auth]\nmax_failures_per_ip = 3\nthrottle_base_delay_ms = 1\nthrottle_max_delay_ms = 5\nmax_failures_per_connection = 10\n";
    let server = TestServer::configured(config, &[("ann", "pw")]);
    let dir = tempfile::tempdir().expect("keys");
    let (path, good) = key(dir.path(), "good");
    let (_, wrong) = key(dir.path(), "wrong");
    authorize(&server, "ann", &path);
    for _ in 0..3 {
        assert!(matches!(key_login(&server, "ann", &wrong).await, Err(ClientError::Auth(_))));
    }
    let locked = key_login(&server, "ann", &good).await;
    assert!(
        matches!(&locked, Err(ClientError::Auth(m)) if m.contains("too many")),
        "the address is locked out for keys too: {locked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_only_users_and_servers() {
    let mut server = TestServer::new("[auth]\npasswords = false\n");
    let added = server.wharfd(&["user", "add", "ann", "--no-password"], None);
    assert!(added.status.success(), "{}", text(&added.stderr));
    server.add_user("bob", "pw", "1MiB");
    server.start();
    let dir = tempfile::tempdir().expect("keys");
    let (path, identity) = key(dir.path(), "ann");
    authorize(&server, "ann", &path);

    key_login(&server, "ann", &identity).await.expect("key login").close().await;
    let password = Session::open(&options(&server), "bob", "pw").await;
    assert!(
        matches!(&password, Err(ClientError::Auth(m)) if m.contains("password logins are disabled")),
        "{password:?}"
    );
    let record = std::fs::read_to_string(server.root().join("var/users/ann.toml")).expect("record");
    assert!(!record.contains("password"), "a keys-only user has no password hash: {record}");
}
