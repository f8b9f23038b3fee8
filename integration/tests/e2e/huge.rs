//! A file over 4 GiB, both ways: offsets, sizes and piece arithmetic past 32 bits. The source is
//! sparse (a hole with data at both ends and across the 4 GiB line) so the test costs time, not disk.

use std::io::{Seek as _, SeekFrom, Write as _};

use wharf_common::hash::Sha256Digest;
use wharf_common::transfer::hash_range;
use wharf_integration::client::login;
use wharf_integration::server::TestServer;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};
const SIZE: u64 = (4 << 30) + 12_345;

/// A sparse file of `SIZE` bytes with distinct data at its start, across the 4 GiB line and at its end.
fn sparse_source(path: &std::path::Path) -> Sha256Digest {
    let mut file = std::fs::File::create(path).expect("create");
    file.set_len(SIZE).expect("set_len");
    for (offset, seed) in [(0, 1), ((4 << 30) - 1000, 2), (SIZE - 5000, 3)] {
        file.seek(SeekFrom::Start(offset)).expect("seek");
        file.write_all(&content(3000, seed)).expect("write");
    }
    digest_of(path)
}

fn digest_of(path: &std::path::Path) -> Sha256Digest {
    let file = std::fs::File::open(path).expect("open");
    assert_eq!(file.metadata().expect("metadata").len(), SIZE);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    hash_range(&file, 0, SIZE, &mut hasher).expect("hash");
    Sha256Digest::from_hasher(hasher)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_four_gib_round_trips_verified() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "unlimited");
    server.start();
    let local = tempfile::tempdir().expect("local");
    let source = local.path().join("huge.bin");
    let digest = sparse_source(&source);
    let session = login(&server, "ann", "pw").await;

    let put = session.put(&source, &p("/huge.bin"), true, NO_PROGRESS).await.expect("put");
    assert_eq!((put.size, put.sha256), (SIZE, digest));
    assert_eq!(digest_of(&server.home("ann").join("huge.bin")), digest);
    std::fs::remove_file(&source).expect("make room");

    let dest = local.path().join("back.bin");
    let got = session.get(&p("/huge.bin"), &dest, true, NO_PROGRESS).await.expect("get");
    assert_eq!((got.size, got.sha256), (SIZE, digest));
    assert_eq!(digest_of(&dest), digest);
    session.close().await;
}
