//! A server that lies in its listings: names that climb out (`..`), absolute paths, and names with
//! a `/` in them. The client refuses such a listing whole, before it makes a local folder or file
//! from any of it (the mistake of scp's CVE-2019-6111), and says why.

use std::path::Path;
use std::process::Output;

use wharf_common::proto::{Entry, EntryKind, TreeEntry};
use wharf_integration::client::{text, wharf};
use wharf_integration::lying::{Lies, LyingServer};

fn run(server: &LyingServer, work: &Path, script: &str) -> Output {
    let cert = server.cert().display().to_string();
    let script = format!("lcd '{}'; {script}", work.display());
    let to = format!("ann@127.0.0.1:{}", server.addr().port());
    wharf(work, Some("pw"), &["--ca", &cert, "-c", &script, &to], None)
}

fn tree_entry(path: &str, kind: EntryKind) -> TreeEntry {
    TreeEntry { path: path.into(), kind, size: 4, mtime: 0, version: "v".into() }
}

/// The run failed as a protocol error, naming the entry it refused.
fn refused(out: &Output, name: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}\n{stderr}", text(&out.stdout));
    assert!(stderr.contains("refused") && stderr.contains(name), "{stderr}");
}

#[test]
fn a_tree_that_climbs_out_or_names_an_absolute_path_is_refused_before_anything_is_made() {
    let work = tempfile::tempdir().expect("work");
    let outside = work.path().join("made outside");
    for bad in [outside.display().to_string(), "../made outside".into(), "a/../../x".into()] {
        let lies = Lies {
            tree: vec![
                tree_entry("fine", EntryKind::Dir),
                tree_entry(&bad, EntryKind::Dir),
                tree_entry(&format!("{bad}/f"), EntryKind::File),
            ],
            ..Lies::default()
        };
        let server = LyingServer::start(lies);
        std::fs::create_dir_all(work.path().join("back")).expect("back");
        for script in ["get -r evil back", "mirror evil copy"] {
            refused(&run(&server, work.path(), script), &bad);
        }
        assert!(!outside.exists(), "{bad}: a folder was made outside the download");
        assert!(!work.path().join("back/evil").exists(), "{bad}: nothing is made at all");
        assert!(!work.path().join("copy/fine").exists(), "{bad}: the mirror made nothing");
        assert!(!server.root().join("x").exists() && !work.path().join("x").exists());
    }
}

#[test]
fn a_listing_whose_names_are_not_names_is_refused() {
    let work = tempfile::tempdir().expect("work");
    for bad in ["..", "../escaped", "a/b", ""] {
        let entry =
            Entry { name: bad.into(), kind: EntryKind::File, size: 4, mode: 0o644, mtime: 0 };
        let server = LyingServer::start(Lies { entries: vec![entry], ..Lies::default() });
        for script in ["ls", "get 'evil/*' ."] {
            refused(&run(&server, work.path(), script), &format!("{bad:?}"));
        }
    }
}
