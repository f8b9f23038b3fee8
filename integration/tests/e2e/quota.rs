//! Quotas under uploads: exactly at the limit, one byte over, overwrites, partials, and parallel
//! uploads racing for the last bytes.

use std::sync::Arc;

use wharf::error::ClientError;
use wharf_common::proto::ErrorCode;
use wharf_integration::client::login;
use wharf_integration::server::TestServer;

use crate::util::{Direction, content, interrupt, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const MIB: usize = 1 << 20;

fn server_with_quota(quota: &str) -> TestServer {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", quota);
    server.start();
    server
}

fn over_quota<T: std::fmt::Debug>(result: Result<T, ClientError>) -> bool {
    matches!(result, Err(ClientError::Remote { code: ErrorCode::QuotaExceeded, .. }))
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_at_the_limit_fits_and_one_byte_more_does_not() {
    let server = server_with_quota("4MiB");
    let local = tempfile::tempdir().expect("local");
    let session = login(&server, "ann", "pw").await;
    let exact = local.path().join("exact");
    std::fs::write(&exact, content(4 * MIB - 1, 1)).expect("file");
    session
        .put(&exact, &p("/exact"), true, NO_PROGRESS)
        .await
        .expect("fits exactly with 1 byte to spare");
    let one = local.path().join("one");
    std::fs::write(&one, b"1").expect("file");
    session.put(&one, &p("/one"), true, NO_PROGRESS).await.expect("the last byte fits");
    assert_eq!(session.quota().await.expect("quota").used, 4 * MIB as u64);

    let more = session.put(&one, &p("/more"), true, NO_PROGRESS).await;
    assert!(over_quota(more), "one byte over is refused");
    assert!(!server.exists("ann", "more"));
    assert_eq!(server.partial_bytes("ann"), 0, "refused before any byte moved");

    // Replacing a file needs only the difference; deleting gives the space back.
    std::fs::write(&exact, content(4 * MIB - 1, 2)).expect("new version");
    session.put(&exact, &p("/exact"), true, NO_PROGRESS).await.expect("overwrite in place");
    session.remove(&p("/exact"), false).await.expect("rm");
    session.put(&one, &p("/more"), true, NO_PROGRESS).await.expect("fits after rm");
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved, quota.limit), (2, 0, Some(4 * MIB as u64)));
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_uploads_never_exceed_the_quota_together() {
    let server = Arc::new(server_with_quota("10MiB"));
    let local = Arc::new(tempfile::tempdir().expect("local"));
    let mut uploads = Vec::new();
    for n in 0..5 {
        let source = local.path().join(format!("f{n}"));
        std::fs::write(&source, content(3 * MIB, 10 + n)).expect("file");
        let (server, local) = (server.clone(), local.clone());
        uploads.push(tokio::spawn(async move {
            let session = login(&server, "ann", "pw").await;
            let result = session.put(&source, &p(&format!("/f{n}")), true, NO_PROGRESS).await;
            drop(local);
            result
        }));
    }
    let mut stored = 0;
    for upload in uploads {
        match upload.await.expect("task") {
            Ok(_) => stored += 1,
            Err(err) => assert!(over_quota(Err::<(), _>(err)), "only the quota may refuse"),
        }
    }
    assert_eq!(stored, 3, "3 × 3 MiB fit in 10 MiB, a fourth does not");
    let on_disk = server.stored_bytes("ann");
    let session = login(&server, "ann", "pw").await;
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (on_disk, 0));
    assert!(quota.used <= 10 * MIB as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_uploads_count_and_expire_with_the_space_given_back() {
    let mut server = TestServer::new("[server]\npartial_ttl_secs = 1\n");
    server.add_user("ann", "pw", "100MiB");
    server.start();
    let local = tempfile::tempdir().expect("local");
    let source = local.path().join("big");
    std::fs::write(&source, content(24 * MIB, 3)).expect("file");
    let session = login(&server, "ann", "pw").await;
    interrupt(
        &session,
        &server,
        Direction::Put { local: &source, remote: &p("/big"), user: "ann" },
        21 * MIB as u64,
    )
    .await;
    // A second put of another path waits for nothing and shows the partial in the usage.
    let small = local.path().join("small");
    std::fs::write(&small, b"x").expect("file");
    session.put(&small, &p("/small"), true, NO_PROGRESS).await.expect("small put");
    let partial = server.partial_bytes("ann");
    assert!(partial > 0);
    session.close().await;

    // Restarted after the partial is older than its time to live: it is swept and uncounted.
    server.stop();
    server.age_partials("ann", std::time::Duration::from_secs(3600));
    server.start();
    let session = login(&server, "ann", "pw").await;
    assert_eq!(server.partial_bytes("ann"), 0, "expired partials are removed");
    assert_eq!(session.quota().await.expect("quota").used, 1, "and no longer counted");
    session.close().await;
}

/// The first login after a start does not wait for the walk of a home of many files, and what
/// changes the space used right behind it (a removal, an upload) waits for the walk instead, so
/// that a file the walk counts is never removed unreleased: the figures come out exact.
#[tokio::test(flavor = "multi_thread")]
async fn changes_right_after_the_first_login_wait_for_the_home_to_be_measured() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "1GiB");
    if !server.is_local() {
        eprintln!("skipping the home-walk test: the s3 backend sums usage in one query");
        return;
    }
    // 12,000 files: a walk of tens of milliseconds at least, where a login takes a few.
    let (home, mut total, mut first_folder) = (server.home("ann"), 0, 0);
    for folder in 0..48 {
        let dir = home.join(format!("d{folder:02}"));
        std::fs::create_dir(&dir).expect("folder");
        for file in 0..250 {
            let len = (folder * 250 + file) % 7 + 1;
            std::fs::write(dir.join(format!("f{file}")), vec![b'x'; len]).expect("file");
            total += len as u64;
            first_folder += if folder == 0 { len as u64 } else { 0 };
        }
    }
    let local = tempfile::tempdir().expect("local");
    let new_file = local.path().join("new");
    std::fs::write(&new_file, b"abc").expect("file");
    server.start();
    let session = wharf::session::Session::connect(&wharf_integration::client::options(&server))
        .await
        .expect("connect");
    let at_login = session.login("ann", "pw").await.expect("login");
    // Absent while the walk runs; if the walk was quicker than the login, it must be right.
    if let Some(quota) = at_login {
        assert_eq!(quota.used, total, "the login's figure");
    }
    let (folder, uploaded_to) = (p("/d00"), p("/d47/new"));
    let (removed, uploaded) = tokio::join!(
        session.remove(&folder, true),
        session.put(&new_file, &uploaded_to, true, NO_PROGRESS),
    );
    removed.expect("rm -r");
    uploaded.expect("put");
    let quota = session.quota().await.expect("quota");
    assert_eq!((quota.used, quota.reserved), (total - first_folder + 3, 0));
    session.close().await;
}
