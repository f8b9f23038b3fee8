//! Walking and rearranging a tree, as sftp and lftp users do, through the `wharf` binary in batch
//! mode: `ls -R` and `lls -R`, `du`, `find`, `mv` of several files, and `lmkdir` on this side.

use crate::habits::{batch, ok};
use wharf_integration::client::text;
use wharf_integration::server::TestServer;

/// A local tree `t` uploaded as `t`, with 3,023 bytes in files. `a-c` sorts before `a/b` as a
/// string but after it depth first, and `.h` is hidden.
fn server_with_tree(work: &std::path::Path) -> TestServer {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let tree = work.join("t");
    for dir in ["a/b/c", "a-c", ".h"] {
        std::fs::create_dir_all(tree.join(dir)).expect("folder");
    }
    for (file, size) in [("a/b/f", 3000), ("a/g", 10), ("a-c/z", 5), (".h/y", 1), ("top", 7)] {
        std::fs::write(tree.join(file), vec![b'x'; size]).expect("file");
    }
    ok(&batch(&server, work, "put -r t"));
    server
}

#[test]
fn ls_r_lists_every_folder_below_depth_first_on_either_side() {
    let work = tempfile::tempdir().expect("work");
    let server = server_with_tree(work.path());
    let expected = "t:\na/\na-c/\ntop\n\nt/a:\nb/\ng\n\nt/a/b:\nc/\nf\n\nt/a/b/c:\n\nt/a-c:\nz\n";
    assert_eq!(ok(&batch(&server, work.path(), "ls -1R t")), expected);
    assert_eq!(ok(&batch(&server, work.path(), "lls -1R t")), expected, "the local tree alike");
    assert_eq!(ok(&batch(&server, work.path(), "ls -1R t/")), expected.replace("t:", "t/:"));

    let all = ok(&batch(&server, work.path(), "ls -1Ra t"));
    assert!(all.starts_with("t:\n.h/\na/\n") && all.contains("\n\nt/.h:\ny\n\nt/a:\n"), "{all}");
    let long = ok(&batch(&server, work.path(), "ls -lR t/a"));
    assert!(long.contains("t/a/b:\ndrwx") && long.contains(" 3000 "), "{long}");
    assert_eq!(ok(&batch(&server, work.path(), "ls -R t/top")), "t/top\n", "a file is itself");
}

#[test]
fn du_sums_each_folder_after_what_it_holds() {
    let work = tempfile::tempdir().expect("work");
    let server = server_with_tree(work.path());
    let du = |args: &str| ok(&batch(&server, work.path(), &format!("du {args}")));
    assert_eq!(du("-b t"), "1\tt/.h\n0\tt/a/b/c\n3000\tt/a/b\n3010\tt/a\n5\tt/a-c\n3023\tt\n");
    assert_eq!(du("-s t"), "3\tt\n", "1024-byte blocks, rounded up");
    assert_eq!(du("-sh t/"), "3.0 KiB\tt/\n");
    assert_eq!(du("-ab -d 1 t"), "1\tt/.h\n3010\tt/a\n5\tt/a-c\n7\tt/top\n3023\tt\n");
    assert_eq!(du("-sb t/top 't/a*'"), "7\tt/top\n3010\tt/a\n5\tt/a-c\n", "files and wildcards");
    assert_eq!(
        ok(&batch(&server, work.path(), "cd t/a; du -b")),
        "0\t./b/c\n3000\t./b\n3010\t.\n",
        "the working folder without a path"
    );

    let out = batch(&server, work.path(), "du t/nowhere");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no such file"), "{}", text(&out.stderr));
    let out = batch(&server, work.path(), "du -s -a t");
    assert_eq!(out.status.code(), Some(2), "-s and -a together: a usage error");
}

#[test]
fn find_picks_paths_by_name_kind_and_depth() {
    let work = tempfile::tempdir().expect("work");
    let server = server_with_tree(work.path());
    let find = |args: &str| ok(&batch(&server, work.path(), &format!("find {args}")));
    assert_eq!(find("t -type f"), "t/.h/y\nt/a/b/f\nt/a/g\nt/a-c/z\nt/top\n");
    assert_eq!(find("t --type d --maxdepth 1"), "t\nt/.h\nt/a\nt/a-c\n", "two dashes too");
    assert_eq!(find("-name '[fg]'"), "./t/a/b/f\n./t/a/g\n", "the working folder by default");
    assert_eq!(find("'t/a*' -name z"), "t/a-c/z\n");
    assert_eq!(find("t/top"), "t/top\n");
    let out = batch(&server, work.path(), "find t -type x");
    assert_eq!(out.status.code(), Some(2), "an unknown kind: a usage error");
}

#[test]
fn lmkdir_makes_local_folders_and_get_takes_sftps_resume_flag() {
    let work = tempfile::tempdir().expect("work");
    let server = server_with_tree(work.path());
    ok(&batch(
        &server,
        work.path(),
        "lmkdir one one/two; lmkdir -p deep/er deep; get -a t/top one/two",
    ));
    assert_eq!(std::fs::read(work.path().join("one/two/top")).expect("got"), b"xxxxxxx");
    assert!(work.path().join("deep/er").is_dir());

    let out = batch(&server, work.path(), "lmkdir one three; lpwd");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lmkdir one: file exists"), "{}", text(&out.stderr));
    assert!(work.path().join("three").is_dir(), "every path is tried, as mkdir(1) does");
    assert!(!text(&out.stdout).contains('/'), "nothing runs after the failure");
}

#[test]
fn mv_moves_several_sources_or_a_wildcards_matches_into_a_folder() {
    let work = tempfile::tempdir().expect("work");
    let server = server_with_tree(work.path());
    ok(&batch(&server, work.path(), "mkdir box; mv t/top t/a-c box; rename 't/a/*' box"));
    assert_eq!(ok(&batch(&server, work.path(), "ls -1 box")), "a-c/\nb/\ng\ntop\n");
    assert_eq!(ok(&batch(&server, work.path(), "ls -1 t t/a")), "t:\na/\n\nt/a:\n");

    // Several sources into something that is not a folder: nothing moves.
    for script in ["mv box/g box/top box/new", "mv 'box/[gt]*' box/top"] {
        let out = batch(&server, work.path(), script);
        assert_eq!(out.status.code(), Some(1), "{script}");
        assert!(text(&out.stderr).contains("not a directory"), "{}", text(&out.stderr));
    }
    // One source still renames, and a missing TO is a usage error.
    ok(&batch(&server, work.path(), "mv box/g box/renamed"));
    assert_eq!(ok(&batch(&server, work.path(), "ls -1 box")), "a-c/\nb/\nrenamed\ntop\n");
    let out = batch(&server, work.path(), "mv box/top");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("mv: missing TO after box/top"), "{}", text(&out.stderr));
}
