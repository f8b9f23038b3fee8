//! `mirror`: both directions, only what differs by content, `--delete`, `--dry-run`, awkward names,
//! a change that keeps size and time, an interrupted mirror resumed, and a tree of 1,000 files
//! (also compared by content alone, without the mirror's state).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use wharf_integration::client::{spawn_wharf, target, text, wharf};
use wharf_integration::server::TestServer;

use crate::util::content;

fn run(server: &TestServer, work: &Path, script: &str) -> Output {
    let cert = server.cert().display().to_string();
    let script = format!("lcd '{}'; {script}", work.display());
    wharf(work, Some("pw"), &["--ca", &cert, "-c", &script, &target(server, "ann")], None)
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The summary line's counts: (sent, unchanged, deleted).
fn summary(stdout: &str) -> (usize, usize, usize) {
    let line =
        stdout.lines().find(|l| l.starts_with("mirror: ")).unwrap_or_else(|| panic!("{stdout}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|word| word.parse().ok())
        .collect();
    let sent = numbers[0];
    let unchanged =
        line.split(", ").nth(1).and_then(|p| p.split(' ').next()).and_then(|n| n.parse().ok());
    let deleted =
        line.split(", ").nth(2).and_then(|p| p.split(' ').next()).and_then(|n| n.parse().ok());
    (sent, unchanged.expect("unchanged"), deleted.expect("deleted"))
}

/// Every file beneath `local` is on the server beneath `remote` (in ann's home), with the same
/// content, and the server has as many files there.
fn same_as_server(server: &TestServer, remote: &str, local: &Path) {
    let mut pending = vec![(local.to_owned(), remote.to_owned())];
    let mut files = 0;
    while let Some((here, there)) = pending.pop() {
        for entry in std::fs::read_dir(&here).expect("read") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".wharf-mirror") {
                continue;
            }
            let other = format!("{there}/{name}");
            if entry.file_type().expect("type").is_dir() {
                pending.push((entry.path(), other));
            } else {
                let content = std::fs::read(entry.path()).expect("file");
                assert!(server.stored("ann", &other) == Some(content), "{other} differs");
                files += 1;
            }
        }
    }
    assert_eq!(server.files_beneath("ann", remote), files, "files on the server beneath {remote}");
}

#[test]
fn both_directions_send_only_what_differs_and_delete_on_request() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "docs/a file.txt", b"alpha");
    server.place("ann", "docs/deep dir/ünï/b.bin", &content(300_000, 1));
    server.place("ann", "docs/gone.txt", b"soon deleted");
    let work = tempfile::tempdir().expect("work");

    let first = ok(&run(&server, work.path(), "mirror docs copy"));
    assert_eq!(summary(&first), (3, 0, 0), "{first}");
    same_as_server(&server, "docs", &work.path().join("copy"));

    let again = ok(&run(&server, work.path(), "mirror docs copy"));
    assert_eq!(summary(&again), (0, 3, 0), "nothing changed, nothing sent: {again}");

    // Changed in place: same size, and (on the local backend, where the test can reach behind
    // the server's back) the modification time put back.
    if server.is_local() {
        let changed = server.home("ann").join("docs/a file.txt");
        let before = std::fs::metadata(&changed).expect("meta").modified().expect("mtime");
        std::fs::write(&changed, b"ALPHA").expect("rewrite");
        let file = std::fs::File::options().write(true).open(&changed).expect("open");
        file.set_modified(before).expect("time");
    } else {
        server.place("ann", "docs/a file.txt", b"ALPHA");
    }
    server.remove_file("ann", "docs/gone.txt");

    let dry = ok(&run(&server, work.path(), "mirror --delete --dry-run docs copy"));
    assert!(dry.contains("changed  a file.txt") && dry.contains("delete   gone.txt"), "{dry}");
    assert!(work.path().join("copy/gone.txt").exists(), "a dry run changes nothing");

    let kept = ok(&run(&server, work.path(), "mirror docs copy"));
    assert_eq!(summary(&kept), (1, 1, 0), "{kept}");
    assert!(work.path().join("copy/gone.txt").exists(), "no --delete, nothing deleted");
    let deleted = ok(&run(&server, work.path(), "mirror --delete docs copy"));
    assert_eq!(summary(&deleted), (0, 2, 1), "{deleted}");
    assert!(!work.path().join("copy/gone.txt").exists());
    same_as_server(&server, "docs", &work.path().join("copy"));

    // The other way: a local change goes up, and a file only the server has goes away.
    std::fs::write(work.path().join("copy/new here.txt"), b"from the laptop").expect("file");
    server.place("ann", "docs/server only.txt", b"x");
    let up = ok(&run(&server, work.path(), "mirror -R --delete docs copy"));
    assert_eq!(summary(&up), (1, 2, 1), "{up}");
    assert_eq!(server.stored("ann", "docs/new here.txt").expect("uploaded"), b"from the laptop");
    assert!(!server.exists("ann", "docs/server only.txt"));

    // Without the state, the large file too is compared by content (`-j` at a time): one byte
    // changed in place locally is found, and the server's copy comes back.
    std::fs::remove_file(work.path().join("copy/.wharf-mirror")).expect("state file");
    let large = work.path().join("copy/deep dir/ünï/b.bin");
    let mut bytes = std::fs::read(&large).expect("large");
    bytes[150_000] ^= 1;
    std::fs::write(&large, &bytes).expect("change in place");
    let restored = ok(&run(&server, work.path(), "mirror -j 2 docs copy"));
    assert_eq!(summary(&restored), (1, 2, 0), "{restored}");
    same_as_server(&server, "docs", &work.path().join("copy"));
}

#[test]
fn a_tree_of_a_thousand_files_then_ten_changes() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    let local = work.path().join("tree");
    for i in 0..1000 {
        let dir = local.join(format!("d{}/e{}", i % 10, i % 7));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(format!("f{i}.txt")), format!("file {i}")).expect("file");
    }
    // A dry run into a folder the server does not have yet plans every file, and makes nothing.
    let dry = ok(&run(&server, work.path(), "mirror -R --dry-run up tree"));
    assert!(dry.contains("1000 new, 0 changed, 0 unchanged"), "{dry}");
    assert!(!server.exists("ann", "up"), "a dry run made the folder");
    let first = ok(&run(&server, work.path(), "mirror -R -j 16 up tree"));
    assert_eq!(summary(&first), (1000, 0, 0));
    same_as_server(&server, "up", &local);
    for i in (0..1000).step_by(100) {
        let path = local.join(format!("d{}/e{}/f{i}.txt", i % 10, i % 7));
        std::fs::write(path, format!("changed {i}")).expect("change");
    }
    let second = ok(&run(&server, work.path(), "mirror -R -j 16 up tree"));
    assert_eq!(summary(&second), (10, 990, 0), "{second}");
    same_as_server(&server, "up", &local);

    // Without its state, every pair of equal size is compared by content (all at once): three
    // changed in place, keeping their sizes, are found among the thousand, and listed in the
    // tree's order with one whose size changed (which sorts among them).
    std::fs::remove_file(local.join(".wharf-mirror")).expect("state file");
    let [resized, changed @ ..] =
        [989, 999, 5, 500].map(|i| format!("d{}/e{}/f{i}.txt", i % 10, i % 7));
    std::fs::write(local.join(&resized), "a longer file than before").expect("resize");
    for path in &changed {
        let before = std::fs::read(local.join(path)).expect("file");
        let flipped: Vec<u8> = before.iter().map(u8::to_ascii_uppercase).collect();
        assert_eq!(flipped.len(), before.len());
        assert_ne!(flipped, before);
        std::fs::write(local.join(path), flipped).expect("change");
    }
    let dry = ok(&run(&server, work.path(), "mirror -R --dry-run up tree"));
    let listed: Vec<&str> = dry.lines().filter(|l| l.starts_with("changed ")).collect();
    let mut expected = changed.to_vec();
    expected.push(resized);
    expected.sort();
    let expected: Vec<String> = expected
        .iter()
        .map(|p| format!("changed  {p} ({} B)", std::fs::metadata(local.join(p)).expect("f").len()))
        .collect();
    assert_eq!(listed, expected, "{dry}");
    assert!(dry.contains("0 new, 4 changed, 996 unchanged"), "{dry}");
    let third = ok(&run(&server, work.path(), "mirror -R -j 16 up tree"));
    assert_eq!(summary(&third), (4, 996, 0), "{third}");
    same_as_server(&server, "up", &local);

    // A mirror that finds nothing to do, all by content (no state), still remembers every pair,
    // from the trees it read: the next one need compare nothing.
    std::fs::remove_file(local.join(".wharf-mirror")).expect("state file");
    let fourth = ok(&run(&server, work.path(), "mirror -R -j 16 up tree"));
    assert_eq!(summary(&fourth), (0, 1000, 0), "{fourth}");
    assert_eq!(remembered(&local.join(".wharf-mirror")), 1000);
}

/// A small file whose modification time differs from the other side's is sent without comparing
/// contents: sending it costs the round trip that asking for its digest would. With the same time
/// (and another version: rewritten), it is compared, and found the same. A mirror that only
/// downloaded remembers every pair without reading the remote tree again.
#[test]
fn a_small_file_with_another_time_is_sent_and_one_with_the_same_time_compared() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "docs/a.txt", b"same bytes");
    server.place("ann", "docs/b.txt", b"other bytes");
    let work = tempfile::tempdir().expect("work");
    let first = ok(&run(&server, work.path(), "mirror docs copy"));
    assert_eq!(summary(&first), (2, 0, 0), "{first}");
    assert_eq!(remembered(&work.path().join("copy/.wharf-mirror")), 2);

    let local = work.path().join("copy/a.txt");
    let later = std::fs::metadata(&local).expect("meta").modified().expect("mtime")
        + Duration::from_secs(3600);
    let touch = |time| {
        let file = std::fs::File::options().write(true).open(&local).expect("open");
        file.set_modified(time).expect("time");
    };
    touch(later);
    let sent = ok(&run(&server, work.path(), "mirror -R docs copy"));
    assert_eq!(summary(&sent), (1, 1, 0), "same bytes, another time: sent: {sent}");
    assert_eq!(server.stored("ann", "docs/a.txt").expect("stored"), b"same bytes");

    std::fs::write(&local, b"same bytes").expect("rewrite");
    touch(later);
    let compared = ok(&run(&server, work.path(), "mirror -R docs copy"));
    assert_eq!(summary(&compared), (0, 2, 0), "same bytes, same time: compared: {compared}");
}

/// How many pairs of files a mirror's state file remembers: (remote root, path → (local version,
/// remote version)), a MessagePack array as `rmp_serde` writes a struct.
fn remembered(state: &Path) -> usize {
    type State = (String, std::collections::HashMap<String, (String, String)>);
    let bytes = std::fs::read(state).expect("state file");
    rmp_serde::from_slice::<State>(&bytes).expect("state").1.len()
}

#[test]
fn an_interrupted_mirror_resumes() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(96 << 20, 2);
    server.make_dir("ann", "big");
    server.place("ann", "big/movie.bin", &data);
    let work = tempfile::tempdir().expect("work");
    let cert = server.cert().display().to_string();
    let url = format!("wharf://ann@127.0.0.1:{}/big", server.addr().port());
    let dest = work.path().join("big");
    let dest_arg = dest.display().to_string();
    let mut child =
        spawn_wharf(work.path(), Some("pw"), &["--ca", &cert, "mirror", &url, &dest_arg], false);
    // Killed once the client has recorded some progress (ranges in the record beside the partial).
    let meta = dest.join("movie.bin.wharf-part.meta");
    let recorded =
        || std::fs::read_to_string(&meta).is_ok_and(|text| text.contains("present = [["));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !recorded() {
        assert!(child.try_wait().expect("wait").is_none(), "finished before the kill");
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!dest.join("movie.bin").exists(), "interrupted before the end");

    let out = wharf(work.path(), Some("pw"), &["--ca", &cert, "mirror", &url, &dest_arg], None);
    let stdout = ok(&out);
    assert!(stdout.contains("resumed at"), "{stdout}");
    assert_eq!(std::fs::read(dest.join("movie.bin")).expect("mirrored"), data);
}
