//! Copies made by the server (`copy`, the shell's `cp`): the bytes, the quota, what a failed copy
//! leaves, a source whose bytes no longer match their recorded digest, and `cp -r` through the
//! binary.

use std::time::{Duration, Instant};

use wharf::error::ClientError;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_integration::client::{login, text};
use wharf_integration::raw::{RawClient, error_code};
use wharf_integration::server::TestServer;

use crate::habits::{batch, ok};
use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const MIB: usize = 1 << 20;

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_is_the_sources_bytes_counted_against_the_quota() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "10MiB");
    server.start();
    let local = tempfile::tempdir().expect("local");
    let data = content(3 * MIB + 5, 1);
    std::fs::write(local.path().join("src"), &data).expect("file");
    let session = login(&server, "ann", "pw").await;
    session.put(&local.path().join("src"), &p("/a"), false, NO_PROGRESS).await.expect("put");
    let used = || async { session.quota().await.expect("quota").used };
    assert_eq!(used().await, data.len() as u64);

    let (size, sha256) = session.copy(&p("/a"), &p("/b")).await.expect("copy");
    assert_eq!(size, data.len() as u64);
    assert_eq!(sha256, session.digest(&p("/a")).await.expect("digest").0);
    assert_eq!(server.stored("ann", "b").expect("copied"), data);
    assert_eq!(used().await, 2 * data.len() as u64);

    // Over a smaller file: only the difference is charged.
    std::fs::write(local.path().join("small"), b"small").expect("file");
    session.put(&local.path().join("small"), &p("/c"), false, NO_PROGRESS).await.expect("put");
    session.copy(&p("/a"), &p("/c")).await.expect("copy over a file");
    assert_eq!(server.stored("ann", "c").expect("replaced"), data);
    assert_eq!(used().await, 3 * data.len() as u64);

    // A fourth copy does not fit in 10 MiB: refused before a byte moves, nothing left behind.
    assert_eq!(code(session.copy(&p("/a"), &p("/d")).await), ErrorCode::QuotaExceeded);
    assert!(!server.exists("ann", "d"));
    assert_eq!(server.partial_uploads("ann"), 0, "no partial kept for a refused copy");
    assert_eq!(used().await, 3 * data.len() as u64);

    // Folders: neither copied (that is `cp -r`, on the client) nor replaced.
    session.mkdir(&p("/dir"), false).await.expect("mkdir");
    assert_eq!(code(session.copy(&p("/dir"), &p("/e")).await), ErrorCode::IsADirectory);
    assert_eq!(code(session.copy(&p("/a"), &p("/dir")).await), ErrorCode::IsADirectory);
    assert_eq!(code(session.copy(&p("/none"), &p("/e")).await), ErrorCode::NotFound);
    assert_eq!(code(session.copy(&p("/a"), &p("/none/e")).await), ErrorCode::NotFound);
    assert_eq!(server.partial_uploads("ann"), 0);
    assert_eq!(used().await, 3 * data.len() as u64, "failed copies charge nothing");
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_no_longer_matches_its_recorded_digest_is_not_copied() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    if !server.is_local() {
        return; // The digest record forged here is the local backend's.
    }
    let local = tempfile::tempdir().expect("local");
    std::fs::write(local.path().join("src"), content(2 * MIB, 2)).expect("file");
    let session = login(&server, "ann", "pw").await;
    session.put(&local.path().join("src"), &p("/a"), false, NO_PROGRESS).await.expect("put");
    // The bytes rot on the disk without their version changing: as if the record named other
    // bytes. (Rewriting the file itself would change its version and retire the record.)
    let records = server.root().join("var/digests/ann");
    let mut forged = 0;
    for record in std::fs::read_dir(&records).expect("digest records") {
        let record = record.expect("record").path();
        let text = std::fs::read_to_string(&record).expect("record");
        let (version, _) = text.trim_end().rsplit_once(' ').expect("VERSION DIGEST");
        std::fs::write(&record, format!("{version} {}\n", "0".repeat(64))).expect("forge");
        forged += 1;
    }
    assert_eq!(forged, 1, "the upload recorded its digest");
    let refused = session.copy(&p("/a"), &p("/b")).await;
    assert_eq!(code(refused), ErrorCode::ChecksumMismatch);
    assert!(!server.exists("ann", "b"), "nothing copied");
    assert_eq!(server.partial_uploads("ann"), 0, "and no partial kept");
    session.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_copy_leaves_nothing_and_gives_its_space_back() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "4GiB");
    server.start();
    if !server.is_local() {
        return; // A sparse gigabyte, to be read in no time and written slowly, is a local file.
    }
    let big = std::fs::File::create(server.home("ann").join("big")).expect("file");
    big.set_len(1 << 30).expect("a sparse gigabyte");
    let mut raw = RawClient::login(&server, "ann", "pw").await;
    let before = raw.quota(4).await.used;
    raw.send(5, Command::Copy { from: "/big".into(), to: "/copy".into() }).await;
    // A gigabyte's copy takes seconds to write; cancel it well before.
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.send(6, Command::Cancel { request: 5 }).await;
    let cancelled = loop {
        let response = raw.reply().await;
        if response.id == 5 {
            break response.reply;
        }
    };
    assert!(!matches!(cancelled, Reply::Done { .. }), "the copy finished before its cancel");
    assert_eq!(error_code(&cancelled), ErrorCode::Cancelled);
    // The copy stops between chunks and drops its partial after the answer: wait for that.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.partial_uploads("ann") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.partial_uploads("ann"), 0, "the partial is dropped");
    assert!(!server.exists("ann", "copy"), "nothing installed");
    assert_eq!(raw.quota(7).await.used, before, "and its bytes given back");
}

#[test]
fn cp_copies_files_and_with_r_trees_as_cp_does() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    let tree = work.path().join("t");
    std::fs::create_dir_all(tree.join("a/b")).expect("folders");
    std::fs::create_dir_all(tree.join("empty")).expect("folder");
    std::fs::write(tree.join("a/b/f"), content(300_000, 3)).expect("file");
    std::fs::write(tree.join("top"), b"top").expect("file");
    ok(&batch(&server, work.path(), "put -r t; mkdir box"));

    ok(&batch(&server, work.path(), "cp t/top t/top2; cp t/top t/a/b/f box; cp -r t t2"));
    assert_eq!(server.stored("ann", "t/top2").expect("copy"), b"top");
    assert_eq!(server.stored("ann", "box/f").expect("into"), content(300_000, 3));
    assert_eq!(server.stored("ann", "t2/a/b/f").expect("tree"), content(300_000, 3));
    assert_eq!(ok(&batch(&server, work.path(), "ls -1R t2")), {
        "t2:\na/\nempty/\ntop\ntop2\n\nt2/a:\nb/\n\nt2/a/b:\nf\n\nt2/empty:\n"
    });
    ok(&batch(&server, work.path(), "cp -r t box; cp 't/t*' box"));
    assert_eq!(server.stored("ann", "box/t/a/b/f").expect("into a folder"), content(300_000, 3));
    assert_eq!(server.stored("ann", "box/top2").expect("wildcard"), b"top");

    for (script, says, exit) in [
        ("cp t box/new", "is a directory (use cp -r)", 2),
        ("cp -r t t/inside", "cannot copy a directory into itself", 1),
        ("cp t/top t/top2 nowhere", "not a directory", 1),
        ("cp t/top t/", "cannot be copied onto itself", 1),
        ("cp t/top", "cp: missing TO after t/top", 2),
    ] {
        let out = batch(&server, work.path(), script);
        assert_eq!(out.status.code(), Some(exit), "{script}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{script}: {}", text(&out.stderr));
    }
    assert!(!server.exists("ann", "box/new") && !server.exists("ann", "t/inside"));
    assert!(!server.exists("ann", "nowhere"));
}
