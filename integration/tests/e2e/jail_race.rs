//! The jail under a race: a thread keeps swapping a directory in the home for a symlink to a
//! directory outside it, while a client lists, stats, reads, writes, renames and deletes through
//! that path. Nothing outside the home may ever be read, written or revealed.
//!
//! The symlink points at a directory the test owns rather than at `/`, so that a broken jail would
//! show up as a changed test directory instead of damaging the machine; the path resolution is the
//! same either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wharf_integration::client::login;
use wharf_integration::server::TestServer;

use crate::jail::{has_symlinks, snapshot};
use crate::util::p;

const SECRET: &[u8] = b"outside the jail";

/// Rounds of operations the race runs at the least, so that some get through between swaps.
const MIN_ROUNDS: u64 = 20;

/// Swaps `home/d` between the real directory and a symlink to `outside` until `stop` is set;
/// returns how many swaps it made.
fn swapper(home: std::path::PathBuf, outside: std::path::PathBuf, stop: Arc<AtomicBool>) -> u64 {
    let (d, real) = (home.join("d"), home.join("d.real"));
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        std::fs::rename(&d, &real).expect("hide the directory");
        std::os::unix::fs::symlink(&outside, &d).expect("plant the symlink");
        std::thread::yield_now();
        std::fs::remove_file(&d).expect("remove the symlink");
        std::fs::rename(&real, &d).expect("restore the directory");
        // Give the real directory its turn too: without this it existed only between two system
        // calls, and on a loaded machine (four copies of this test at once) no operation ever
        // found it, so none succeeded and the test failed.
        std::thread::yield_now();
        swaps += 1;
    }
    swaps
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_a_directory_for_a_symlink_never_breaks_the_jail() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    if !has_symlinks(&server, "the jail race test") {
        return;
    }
    let home = server.home("ann");
    std::fs::create_dir(home.join("d")).expect("d");
    std::fs::write(home.join("d/inner"), b"inside").expect("inner");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), SECRET).expect("secret");
    std::fs::create_dir(outside.path().join("etc")).expect("etc");
    let before = snapshot(outside.path());
    let local = tempfile::tempdir().expect("local");
    std::fs::write(local.path().join("up"), b"uploaded").expect("local file");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = std::thread::spawn({
        let (home, outside, stop) = (home.clone(), outside.path().to_owned(), stop.clone());
        move || swapper(home, outside, stop)
    });
    let session = login(&server, "ann", "pw").await;
    let succeeded = AtomicU64::new(0);
    let ok = |done: bool| {
        if done {
            succeeded.fetch_add(1, Ordering::Relaxed);
        }
    };
    // At least 3 s of racing, and at least MIN_ROUNDS rounds however slow the machine is (an fsync
    // can take seconds while other tests write): a slow run is not a failed one.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    let mut first_error = None;
    while Instant::now() < deadline || round < MIN_ROUNDS {
        round += 1;
        if let Ok(entries) = session.list(&p("/d")).await {
            let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
            assert!(!names.contains(&"secret") && !names.contains(&"etc"), "revealed: {names:?}");
            ok(true);
        }
        assert!(session.stat(&p("/d/secret")).await.is_err(), "stat reached outside");
        assert!(session.stat(&p("/d/etc")).await.is_err(), "stat reached outside");
        let dest = local.path().join(format!("got-{round}"));
        if session.get(&p("/d/secret"), &dest, false, &|_| {}).await.is_ok() {
            panic!("read outside: {:?}", std::fs::read(&dest));
        }
        if session.get(&p("/d/inner"), &dest, false, &|_| {}).await.is_ok() {
            assert_eq!(std::fs::read(&dest).expect("read"), b"inside");
            ok(true);
        }
        let uploaded = format!("/d/up-{round}");
        let put = session.put(&local.path().join("up"), &p(&uploaded), false, &|_| {}).await;
        if let Err(err) = &put
            && first_error.is_none()
        {
            first_error = Some(err.to_string());
        }
        ok(put.is_ok());
        ok(session.mkdir(&p(&format!("/d/dir-{round}")), false).await.is_ok());
        ok(session.rename(&p(&uploaded), &p(&format!("/d/moved-{round}"))).await.is_ok());
        ok(session.rename(&p("/d/inner"), &p("/d/inner2")).await.is_ok());
        ok(session.rename(&p("/d/inner2"), &p("/d/inner")).await.is_ok());
        ok(session.remove(&p(&format!("/d/moved-{round}")), false).await.is_ok());
        ok(session.remove(&p(&format!("/d/dir-{round}")), true).await.is_ok());
        assert_eq!(snapshot(outside.path()), before, "the outside changed in round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().expect("swapper");
    assert_eq!(snapshot(outside.path()), before, "nothing outside was written");
    // The race was real: the directory was swapped many times, and operations got through while it was.
    let succeeded = succeeded.load(Ordering::Relaxed);
    println!("{round} rounds, {swaps} swaps, {succeeded} operations succeeded");
    assert!(
        swaps > 100 && succeeded > 0,
        "{swaps} swaps, {succeeded} successes; first failed put: {first_error:?}\n{}",
        server.log()
    );
    session.close().await;
}
