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

/// A wildcard's matches are what their listing says: `stat`, `ls -l` and `get` take them from it,
/// without a `stat` each (a round trip), except a symlink's, whose listing shows the link itself.
/// Asked, this server calls every path a directory, so a match shown as a file came from the
/// listing, and one shown as a directory from a `stat`.
#[test]
fn a_wildcards_matches_are_taken_from_their_listing_not_stated_again() {
    let work = tempfile::tempdir().expect("work");
    let entry =
        |name: &str, kind| Entry { name: name.into(), kind, size: 5, mode: 0o644, mtime: 0 };
    let entries = vec![entry("a.txt", EntryKind::File), entry("link.txt", EntryKind::Symlink)];
    let server = LyingServer::start(Lies { entries, ..Lies::default() });

    let out = run(&server, work.path(), "stat 'a*.txt' 'l*.txt'");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let shown: Vec<&str> = stdout.lines().filter(|line| line.contains("Type:")).collect();
    assert_eq!(shown, ["    Type: file", "    Type: directory"], "{stdout}");

    let out = run(&server, work.path(), "ls -l '*.txt'");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let kinds: Vec<char> = stdout.lines().filter_map(|line| line.chars().next()).collect();
    assert_eq!(kinds, ['-', 'd'], "a.txt from its listing, link.txt stat'ed: {stdout}");

    // The download itself goes out at once, and this server refuses it; after a stat it would
    // have been refused as a folder, before any download.
    let out = run(&server, work.path(), "get 'a*.txt' .");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("only lies in listings") && !stderr.contains("get -r"), "{stderr}");
}

#[test]
fn a_download_whose_bytes_do_not_match_its_digest_is_neither_shown_nor_installed() {
    let work = tempfile::tempdir().expect("work");
    let forged = b"forged contents\n".to_vec();
    let server = LyingServer::start(Lies { corrupt_download: Some(forged), ..Lies::default() });
    for script in ["cat notes.txt", "get notes.txt"] {
        let out = run(&server, work.path(), script);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{script}: {stderr}");
        assert!(stderr.contains("checksum mismatch"), "{script}: {stderr}");
        let stdout = text(&out.stdout);
        assert!(!stdout.contains("forged") && !stdout.contains("sha256 ok"), "{script}: {stdout}");
        // Nothing was resumed, so there is no partial to blame and no second try.
        assert!(!stdout.contains("partial file was corrupt"), "{script}: {stdout}");
    }
    assert!(run(&server, work.path(), "cat notes.txt").stdout.is_empty(), "cat shows nothing");
    let left: Vec<_> = std::fs::read_dir(work.path()).expect("work").collect();
    assert!(left.is_empty(), "nothing installed, no partial kept: {left:?}");
}
