//! Small files on the s3 backend live in their database rows, not in the bucket: written, read,
//! replaced by a large file and back, moved and removed there, and checked like any other file.
//! Skipped, saying why, where Garage or PostgreSQL is missing (see `scaleout`).

use wharf::error::ClientError;
use wharf_common::hash::Sha256Digest;
use wharf_common::proto::ErrorCode;
use wharf_integration::client::login;
use wharf_integration::engines::Engines;
use wharfd::storage::s3::INLINE_MAX;

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};

#[tokio::test(flavor = "multi_thread")]
async fn a_small_file_lives_in_its_row_and_a_byte_changed_there_fails_the_download() {
    let Some(engines) = Engines::start("inline test") else { return };
    let node = engines.node("", &["ann"]);
    let session = login(&node, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let inline_rows = |path: &str| {
        let sql = format!("entries WHERE path = '{path}' AND blob IS NULL AND content IS NOT NULL");
        engines.postgres.count(&sql)
    };
    let put = async |name: &str, data: &[u8], remote: &str| {
        let source = local.path().join(name);
        std::fs::write(&source, data).expect("source");
        let up = session.put(&source, &p(remote), true, NO_PROGRESS).await.expect("put");
        assert_eq!(up.sha256, Sha256Digest::of(data), "{name}");
    };
    let get = async |remote: &str| {
        let back = local.path().join("back");
        let _ = std::fs::remove_file(&back);
        let got = session.get(&p(remote), &back, false, NO_PROGRESS).await;
        got.map(|_| std::fs::read(&back).expect("downloaded"))
    };

    // The largest file kept inline: in its row, nothing in the bucket, and back whole.
    let small = content(INLINE_MAX as usize, 1);
    put("small", &small, "/f").await;
    assert_eq!(inline_rows("/f"), 1, "the file's bytes are in its row");
    assert_eq!(engines.objects(), 0, "nothing went to the bucket");
    assert_eq!(get("/f").await.expect("get"), small);

    // One byte more goes to the bucket, replacing the row's bytes; the small one replaces it back,
    // and the large one's blob is queued for the sweep.
    let large = content(INLINE_MAX as usize + 1, 2);
    put("large", &large, "/f").await;
    assert_eq!(inline_rows("/f"), 0, "a larger file is not kept inline");
    assert_eq!(engines.postgres.count("entries WHERE path = '/f' AND content IS NOT NULL"), 0);
    assert_eq!(engines.objects(), 1, "the larger file is one piece in the bucket");
    assert_eq!(get("/f").await.expect("get"), large);
    put("small", &small, "/f").await;
    assert_eq!(inline_rows("/f"), 1);
    assert_eq!(get("/f").await.expect("get"), small);

    // An empty file, and a move into a folder: the bytes go with the row.
    put("empty", b"", "/empty").await;
    assert_eq!(get("/empty").await.expect("get"), b"");
    session.mkdir(&p("/d"), false).await.expect("mkdir");
    session.rename(&p("/f"), &p("/d/g")).await.expect("mv");
    assert_eq!(get("/d/g").await.expect("get"), small);
    assert_eq!(session.quota().await.expect("quota").used, INLINE_MAX);

    // A byte changed in the row behind wharfd's back: the download fails its check, and nothing
    // is left under the file's name.
    engines.postgres.query(
        "UPDATE entries SET content = set_byte(content, 7, get_byte(content, 7) # 1) \
         WHERE path = '/d/g' RETURNING 1",
    );
    let got = get("/d/g").await;
    let mismatch =
        matches!(&got, Err(ClientError::Remote { code: ErrorCode::ChecksumMismatch, .. }));
    assert!(mismatch, "{got:?}");
    assert!(!local.path().join("back").exists(), "a corrupt file was installed");

    // Removed, its bytes go with its row and the quota gets them back.
    session.remove(&p("/d"), true).await.expect("rm -r");
    assert_eq!(engines.postgres.count("entries WHERE NOT is_dir AND content IS NOT NULL"), 0);
    assert_eq!(session.quota().await.expect("quota").used, 0);
    session.close().await;
}
