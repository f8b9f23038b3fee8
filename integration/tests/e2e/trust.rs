//! Trusting the server: pinning on first use, refusing a changed certificate, and `--ca`.

use wharf_integration::client::{target, text, wharf};
use wharf_integration::server::TestServer;

#[test]
fn first_use_pinning_then_a_changed_certificate_is_refused_loudly() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let known_hosts = home.path().join(".config/wharf/known_hosts");
    let to = target(&server, "ann");

    // Batch mode refuses an unknown host and says how to check it.
    let out = wharf(home.path(), Some("pw"), &["-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("SHA256:"), "{}", text(&out.stderr));
    assert!(!known_hosts.exists(), "nothing is pinned without consent");

    let out = wharf(home.path(), Some("pw"), &["--accept-new-host", "-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pinned = std::fs::read_to_string(&known_hosts).expect("pinned");
    let setup = server.wharfd(&["setup"], None);
    let fingerprint =
        text(&setup.stdout).lines().find_map(|l| l.strip_prefix("fingerprint ").map(str::to_owned));
    assert!(
        pinned.contains(&fingerprint.expect("fingerprint")),
        "pins the fingerprint setup printed"
    );

    // Pinned now: batch mode connects without any flag.
    let out = wharf(home.path(), Some("pw"), &["-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "/");

    // The server gets a new certificate on the same address: refuse, loudly, even with the flag.
    server.stop();
    assert!(server.wharfd(&["setup", "--force"], None).status.success());
    let addr = server.addr();
    server.start_on(addr);
    let out = wharf(home.path(), Some("pw"), &["--accept-new-host", "-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("CERTIFICATE HAS CHANGED"), "{stderr}");
    assert!(
        stderr.contains("line 1 of") && stderr.contains("known_hosts"),
        "says how to fix it: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("pins"), pinned, "the old pin is kept");
}

#[test]
fn ca_file_trust_verifies_the_certificate_and_the_name() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let cert = server.cert().display().to_string();
    let port = server.addr().port();
    let out = wharf(
        home.path(),
        Some("pw"),
        &["--ca", &cert, "-c", "pwd", &format!("ann@localhost:{port}")],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!home.path().join(".config/wharf/known_hosts").exists(), "--ca pins nothing");

    // Another server's certificate is not a CA for this one.
    let other = TestServer::new("");
    let other_cert = other.cert().display().to_string();
    let out = wharf(
        home.path(),
        Some("pw"),
        &["--ca", &other_cert, "-c", "pwd", &target(&server, "ann")],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
