//! Transfers across the emulated WAN: the server in one network namespace, the client in another,
//! every packet through the router, which delays and loses them. Skipped, saying why, where
//! namespaces or TUN devices cannot be made (CI runs as root and makes them).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wharf_integration::client::{text, wharf_in};
use wharf_integration::server::TestServer;
use wharf_integration::wan::{self, Profile, Wan};

use crate::util::content;

/// A short, lossy path: 20 ms each way, 100 Mbit/s, 1 % of packets lost each way.
const LOSSY_TEST_PATH: Profile = Profile {
    name: "test",
    round_trip: Duration::from_millis(40),
    rate_bps: Some(100_000_000),
    loss: 0.01,
};

fn wan_or_skip(profile: Profile) -> Option<Wan> {
    if let Some(why) = wan::unavailable() {
        eprintln!("skipped: an emulated WAN cannot be made here: {why}");
        return None;
    }
    Some(Wan::new(profile, 7).expect("emulated WAN"))
}

/// A server for `ann` in the WAN's server namespace, and a home for the client.
fn serve_across(wan: &Wan) -> (TestServer, tempfile::TempDir) {
    let mut server = TestServer::for_host("", &wan.server_ip().to_string());
    server.add_user("ann", "ann-password", "100MiB");
    server.start_in(wan.server_namespace(), SocketAddr::new(wan.server_ip(), 0));
    (server, tempfile::tempdir().expect("home"))
}

/// Runs `commands` as `ann` from the client namespace, in `home`; they must succeed.
fn run_across(wan: &Wan, server: &TestServer, home: &Path, commands: &str) {
    let cert = server.cert().display().to_string();
    let target = format!("ann@{}", server.addr());
    let script = format!("lcd {}; {commands}", home.display());
    let out = wharf_in(
        wan.client_namespace(),
        home,
        Some("ann-password"),
        &["--ca", &cert, "-c", &script, &target],
    );
    assert!(out.status.success(), "wharf failed: {}\n{}", text(&out.stderr), server.log());
}

#[test]
fn a_file_crosses_a_lossy_delayed_path_both_ways_intact() {
    let Some(mut wan) = wan_or_skip(LOSSY_TEST_PATH) else { return };
    let (mut server, home) = serve_across(&wan);
    let data = content(6 << 20, 41);
    let local = home.path().join("data.bin");
    std::fs::write(&local, &data).expect("write");
    run_across(&wan, &server, home.path(), "put data.bin; get data.bin back.bin");

    let uploaded = server.stored("ann", "data.bin").expect("uploaded file");
    let downloaded = std::fs::read(home.path().join("back.bin")).expect("downloaded file");
    let digest = Sha256::digest(&data);
    assert_eq!(Sha256::digest(&uploaded), digest, "the upload arrived changed");
    assert_eq!(Sha256::digest(&downloaded), digest, "the download arrived changed");

    // The transfer really crossed the lossy path: the router carried it and lost some of it.
    let (up, down) = wan.carried().expect("router stats");
    assert!(up.bytes >= data.len() as u64 && down.bytes >= data.len() as u64, "{up:?} {down:?}");
    assert!(up.lost > 0 && down.lost > 0, "no packet was lost: {up:?} {down:?}");
    server.stop();
}

/// A longer, lossier path, where many small files are in flight at once and a lost packet of the
/// control stream holds back replies while the files' lanes keep arriving.
const FAR_LOSSY_TEST_PATH: Profile = Profile {
    name: "test-far",
    round_trip: Duration::from_millis(120),
    rate_bps: Some(100_000_000),
    loss: 0.03,
};

#[test]
fn hundreds_of_small_files_cross_a_far_lossy_path_both_ways_intact() {
    let Some(mut wan) = wan_or_skip(FAR_LOSSY_TEST_PATH) else { return };
    let (mut server, home) = serve_across(&wan);
    let tree = home.path().join("tree");
    std::fs::create_dir(&tree).expect("tree");
    let files: Vec<(String, Vec<u8>)> =
        (0..400).map(|n| (format!("f{n:03}"), content(2048, 1000 + n))).collect();
    for (name, data) in &files {
        std::fs::write(tree.join(name), data).expect("write");
    }
    std::fs::create_dir(home.path().join("back")).expect("back");
    run_across(&wan, &server, home.path(), "put -r tree; get -r tree back");

    for (name, data) in &files {
        let uploaded = server.stored("ann", &format!("tree/{name}")).expect("uploaded file");
        assert!(&uploaded == data, "{name} arrived changed on the server");
        let downloaded =
            std::fs::read(home.path().join("back/tree").join(name)).expect("downloaded");
        assert!(&downloaded == data, "{name} arrived changed back");
    }
    let (up, down) = wan.carried().expect("router stats");
    assert!(up.lost > 0 && down.lost > 0, "no packet was lost: {up:?} {down:?}");
    server.stop();
}
