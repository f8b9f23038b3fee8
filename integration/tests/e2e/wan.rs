//! Transfers across the emulated WAN: the server in one network namespace, the client in another,
//! every packet through the router, which delays and loses them. Skipped, saying why, where
//! namespaces or TUN devices cannot be made (CI runs as root and makes them).

use std::net::SocketAddr;
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

#[test]
fn a_file_crosses_a_lossy_delayed_path_both_ways_intact() {
    let Some(mut wan) = wan_or_skip(LOSSY_TEST_PATH) else { return };
    let mut server = TestServer::for_host("", &wan.server_ip().to_string());
    server.add_user("ann", "ann-password", "100MiB");
    server.start_in(wan.server_namespace(), SocketAddr::new(wan.server_ip(), 0));
    let home = tempfile::tempdir().expect("home");
    let data = content(6 << 20, 41);
    let local = home.path().join("data.bin");
    std::fs::write(&local, &data).expect("write");
    let cert = server.cert().display().to_string();
    let target = format!("ann@{}", server.addr());
    let script =
        format!("lcd {dir}; put data.bin; get data.bin back.bin", dir = home.path().display());
    let out = wharf_in(
        wan.client_namespace(),
        home.path(),
        Some("ann-password"),
        &["--ca", &cert, "-c", &script, &target],
    );
    assert!(out.status.success(), "wharf failed: {}\n{}", text(&out.stderr), server.log());

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
