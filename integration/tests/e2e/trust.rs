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
    let said = format!("the server's certificate is not one {other_cert} issued or holds");
    assert!(text(&out.stderr).contains(&said), "{}", text(&out.stderr));
}

/// `wharf --system-ca -c pwd` with `SSL_CERT_FILE` standing in for the system's CA store.
fn with_system_store(server: &TestServer, store: &std::path::Path) -> std::process::Output {
    let home = tempfile::tempdir().expect("home");
    std::process::Command::new(wharf_integration::binary("wharf"))
        .args(["--system-ca", "-c", "pwd", &target(server, "ann")])
        .env("HOME", home.path())
        .env("WHARF_PASSWORD", "pw")
        .env("SSL_CERT_FILE", store)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wharf")
}

#[test]
fn a_certificate_from_elsewhere_and_the_system_ca_store() {
    // The server presents a certificate kept outside certs/, named in [tls].
    let mut server = TestServer::new("");
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let (cert, key) = (elsewhere.path().join("chain.pem"), elsewhere.path().join("key.pem"));
    std::fs::rename(server.cert(), &cert).expect("move cert");
    std::fs::rename(server.root().join("certs/server.key"), &key).expect("move key");
    let config = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert.display(), key.display());
    std::fs::write(server.root().join("etc/wharfd.toml"), config).expect("config");
    server.add_user("ann", "pw", "1MiB");
    server.start();

    // A store holding the CA that signed it (here, the certificate itself) is trusted...
    let out = with_system_store(&server, &cert);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "/");
    // ...and a store without it is not.
    let other = TestServer::new("");
    let out = with_system_store(&server, &other.cert());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let said = "not issued by a CA this system trusts";
    assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
}
