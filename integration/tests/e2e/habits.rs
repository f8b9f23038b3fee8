//! What sftp and lftp users type without thinking, through the `wharf` binary in batch mode: names
//! that look like patterns, ls flags, renaming on transfer, remote wildcards, partial uploads,
//! df, chmod, kept times, a local shell, messages written for people, and names that would rewrite
//! the terminal.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;

use wharf_integration::client::{target, text, wharf};
use wharf_integration::server::TestServer;

/// Runs `wharf --ca CERT -c SCRIPT ann@server` with its working directory in `work`.
pub(crate) fn batch(server: &TestServer, work: &std::path::Path, script: &str) -> Output {
    let cert = server.cert().display().to_string();
    let to = target(server, "ann");
    let script = format!("lcd '{}'; {script}", work.display());
    wharf(work, Some("pw"), &["--ca", &cert, "-c", &script, &to], None)
}

/// The standard output of a run that must have succeeded.
pub(crate) fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn names_that_look_like_patterns_are_taken_literally_when_they_exist() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    std::fs::write(work.path().join("report[1].txt"), b"literal").expect("file");
    std::fs::write(work.path().join("report1.txt"), b"pattern match").expect("file");

    ok(&batch(&server, work.path(), "put 'report[1].txt'"));
    let home = server.home("ann");
    assert_eq!(std::fs::read(home.join("report[1].txt")).expect("uploaded"), b"literal");
    assert!(!home.join("report1.txt").exists(), "the literal name wins over the pattern");

    // An escaped bracket is literal even when the file does not exist under that name locally.
    std::fs::remove_file(work.path().join("report[1].txt")).expect("rm");
    ok(&batch(&server, work.path(), "get 'report\\[1].txt'"));
    assert_eq!(std::fs::read(work.path().join("report[1].txt")).expect("got"), b"literal");

    // The one-shot form takes what the user's shell passed, without globbing it again.
    std::fs::write(work.path().join("b[2].txt"), b"two").expect("file");
    std::fs::write(work.path().join("b2.txt"), b"not me").expect("file");
    let cert = server.cert().display().to_string();
    let local = work.path().join("b[2].txt").display().to_string();
    let url = format!("wharf://ann@127.0.0.1:{}/", server.addr().port());
    let out = wharf(work.path(), Some("pw"), &["--ca", &cert, "put", &local, &url], None);
    ok(&out);
    assert_eq!(std::fs::read(home.join("b[2].txt")).expect("one-shot"), b"two");
    assert!(!home.join("b2.txt").exists());
}

/// Names are the server's to choose (or whoever made the files): their control characters would reach
/// the terminal and retitle it, clear it or rewrite what it shows. Every listing, message and
/// progress line shows them escaped, as sftp does.
#[test]
fn names_with_control_characters_are_shown_escaped_everywhere() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let title = "\u{1b}]0;owned\u{7}";
    let (file, dir) = (format!("a{title}\nb.txt"), "d\u{9b}2J\rx".to_owned());
    server.place("ann", &file, b"payload");
    server.place("ann", &format!("{dir}/in.txt"), b"inside");
    let work = tempfile::tempdir().expect("work");
    let script = "ls; ls -l; stat 'a*'; get 'a*'; get -r 'd*'; ls 'a*' 'd*'; rm 'd*'";
    let out = batch(&server, work.path(), script);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "rm of a folder fails: {stdout}\n{stderr}");
    for (what, shown) in [("stdout", &stdout), ("stderr", &stderr)] {
        let raw = shown.chars().find(|&c| c.is_control() && c != '\n');
        assert_eq!(raw, None, "a control character reached the {what}:\n{shown:?}");
    }
    let (file_shown, dir_shown) = ("a\\x1b]0;owned\\x07\\nb.txt", "d\\x9b2J\\rx");
    let lines_with = |name: &str| stdout.lines().filter(|line| line.contains(name)).count();
    // ls, ls -l, stat and the download's line; ls, ls -l and the heading of a listing of two.
    assert!(lines_with(file_shown) >= 4, "{stdout}");
    assert!(lines_with(dir_shown) >= 3, "{stdout}");
    assert!(stderr.contains(dir_shown) && stderr.contains("is a directory"), "{stderr}");
    // Only the showing is escaped: the files themselves came down under their own names.
    assert_eq!(std::fs::read(work.path().join(&file)).expect("downloaded"), b"payload");
    assert_eq!(std::fs::read(work.path().join(&dir).join("in.txt")).expect("tree"), b"inside");
}

#[test]
fn cd_and_lcd_go_back_with_a_dash_as_a_shell_does() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.make_dir("ann", "a/b");
    server.make_dir("ann", "-");
    let work = tempfile::tempdir().expect("work");
    std::fs::create_dir(work.path().join("sub")).expect("sub");
    let script = "cd a/b; cd /; cd -; pwd; cd -; lcd sub; lcd -; lpwd; cd ./-; pwd";
    let local = std::fs::canonicalize(work.path()).expect("work").display().to_string();
    let expected = ["/a/b", "/a/b", "/", &local, &local, "/-"].map(|line| format!("{line}\n"));
    assert_eq!(ok(&batch(&server, work.path(), script)), expected.concat());

    let out = batch(&server, work.path(), "cd -");
    assert_eq!(out.status.code(), Some(2), "nowhere to go back to: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no previous directory"), "{}", text(&out.stderr));
}

/// A download whose local name is a folder fails before a byte is written: it used to fail at the
/// rename, once the whole file had come, and leave its partial behind.
#[test]
fn a_download_onto_a_local_folder_fails_at_once_and_leaves_nothing() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "small", b"small");
    server.place("ann", "large", &vec![5u8; 20 << 20]);
    let work = tempfile::tempdir().expect("work");
    for name in ["small", "large"] {
        std::fs::create_dir(work.path().join(name)).expect("a folder in the way");
        let out = batch(&server, work.path(), &format!("get /{name} .; pwd"));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is a directory"), "{}", text(&out.stderr));
        let left: Vec<_> = std::fs::read_dir(work.path())
            .expect("work")
            .map(|entry| entry.expect("entry").file_name())
            .filter(|found| found.to_string_lossy().contains("wharf-part"))
            .collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
        assert_eq!(std::fs::read_dir(work.path().join(name)).expect("folder").count(), 0);
    }
    // The folder aside, the same download goes through on the same server.
    std::fs::remove_dir(work.path().join("large")).expect("rmdir");
    ok(&batch(&server, work.path(), "get /large ."));
    assert_eq!(std::fs::metadata(work.path().join("large")).expect("got").len(), 20 << 20);
}

/// `put -r` copies files and folders. Links inside the tree are left out (one pointing back up
/// made it recurse until the kernel refused, a dangling one failed the whole upload), and so are
/// FIFOs (read forever); a link named outright is followed, as sftp does.
#[test]
fn put_r_leaves_links_and_special_files_out_and_says_so() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("real")).expect("tree");
    std::fs::write(tree.join("real/f"), b"file").expect("file");
    for (link, to) in
        [("to-file", "real/f"), ("to-dir", "real"), ("dangling", "nowhere"), ("up", "..")]
    {
        std::os::unix::fs::symlink(to, tree.join(link)).expect("symlink");
    }
    let fifo = tree.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());

    let out = batch(&server, work.path(), "put -r tree");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("skipped tree/dangling, tree/fifo, tree/to-dir and 2 more"),
        "{stderr}"
    );
    assert_eq!(server.stored("ann", "tree/real/f").expect("the file"), b"file");
    for left_out in ["tree/to-file", "tree/to-dir", "tree/dangling", "tree/up", "tree/fifo"] {
        assert!(!server.exists("ann", left_out), "{left_out} was copied");
    }

    let out = batch(&server, work.path(), "put tree/fifo");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a regular file"), "{}", text(&out.stderr));
    ok(&batch(&server, work.path(), "put tree/to-file; put -r tree/to-dir"));
    assert_eq!(server.stored("ann", "to-file").expect("a named link"), b"file");
    assert_eq!(server.stored("ann", "to-dir/f").expect("a named folder link"), b"file");
}

/// `~` is the home on each side, as a shell reads it: the local one in local paths, `/` in remote
/// ones; `./~` is a file of that name.
#[test]
fn a_tilde_is_the_home_on_either_side() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    // `batch` runs wharf with HOME at `work`.
    std::fs::create_dir(work.path().join("sub")).expect("sub");
    std::fs::write(work.path().join("a.txt"), b"alpha").expect("file");
    server.make_dir("ann", "d");
    let script =
        "cd d; put ~/a.txt ~/b.txt .; cd ~/d; pwd; get b.txt ~/sub/; lcd ~/sub; lpwd; cd ~; pwd";
    std::fs::write(work.path().join("b.txt"), b"beta").expect("file");
    let local = std::fs::canonicalize(work.path().join("sub")).expect("sub");
    let stdout = ok(&batch(&server, work.path(), script));
    // What pwd and lpwd printed, among the transfers' lines.
    let places: Vec<&str> = stdout.lines().filter(|line| line.starts_with('/')).collect();
    assert_eq!(places, ["/d", &local.display().to_string(), "/"], "{stdout}");
    assert_eq!(server.stored("ann", "d/a.txt").expect("up"), b"alpha");
    assert_eq!(std::fs::read(work.path().join("sub/b.txt")).expect("down"), b"beta");
    ok(&batch(&server, work.path(), "put a.txt ./~"));
    assert_eq!(server.stored("ann", "~").expect("a file named ~"), b"alpha");
}

#[test]
fn ls_takes_the_usual_flags_and_help_is_not_success_in_a_batch() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = server.home("ann");
    std::fs::write(home.join("small"), vec![0u8; 10]).expect("file");
    std::fs::write(home.join("big"), vec![0u8; 3 << 20]).expect("file");
    let work = tempfile::tempdir().expect("work");

    let long = ok(&batch(&server, work.path(), "ls -lh"));
    assert!(long.contains("3.0 MiB") && long.contains("big"), "{long}");
    let by_size = ok(&batch(&server, work.path(), "ls -S1"));
    assert_eq!(by_size, "big\nsmall\n");
    let reversed = ok(&batch(&server, work.path(), "ls -1Sr"));
    assert_eq!(reversed, "small\nbig\n");

    // -d shows a folder itself, not what it holds, on either side.
    std::fs::create_dir(home.join("box")).expect("folder");
    std::fs::write(home.join("box/inside"), b"x").expect("file");
    std::fs::create_dir(work.path().join("here")).expect("local folder");
    std::fs::write(work.path().join("here/inside"), b"x").expect("local file");
    assert_eq!(
        ok(&batch(&server, work.path(), "ls -d1 box small; lls -d here")),
        "box/\nsmall\nhere/\n"
    );
    let long = ok(&batch(&server, work.path(), "ls -ld box"));
    assert!(long.starts_with("drwx") && long.ends_with(" box/\n"), "{long}");

    let help = batch(&server, work.path(), "ls --help; pwd");
    assert_eq!(help.status.code(), Some(2), "help in a batch is a usage error");
    assert!(text(&help.stdout).contains("-h"), "the help is still shown");
    assert!(!text(&help.stdout).contains("\n/\n"), "and nothing after it runs");
}

#[test]
fn one_source_may_name_the_destination_and_several_need_a_directory() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    std::fs::write(work.path().join("a.txt"), b"alpha").expect("file");
    std::fs::write(work.path().join("b.txt"), b"beta").expect("file");

    ok(&batch(&server, work.path(), "put a.txt renamed.txt; get renamed.txt back.txt"));
    assert_eq!(server.stored("ann", "renamed.txt").expect("put as"), b"alpha");
    assert_eq!(std::fs::read(work.path().join("back.txt")).expect("get as"), b"alpha");

    let out = batch(&server, work.path(), "put a.txt b.txt nowhere");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nowhere: no such directory"), "{}", text(&out.stderr));
    let out = batch(&server, work.path(), "get renamed.txt a.txt missing/");
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("missing/: no such directory"), "{}", text(&out.stderr));

    // One file into `DIR/` (sent without a stat of DIR first): into it if it is a folder, and
    // otherwise nowhere.
    ok(&batch(&server, work.path(), "mkdir box; put a.txt box/"));
    assert_eq!(server.stored("ann", "box/a.txt").expect("put into"), b"alpha");
    let out = batch(&server, work.path(), "put a.txt nobox/");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such file"), "{}", text(&out.stderr));
    let out = batch(&server, work.path(), "put a.txt renamed.txt/");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a directory"), "{}", text(&out.stderr));
    assert_eq!(server.stored("ann", "renamed.txt").expect("left alone"), b"alpha");
    assert!(!server.home("ann").join("nobox").exists(), "no folder was made");

    // One file to a name is sent there without a stat first; a folder by that name (or a link
    // to one) takes it in, small or large, and is never replaced.
    let large = crate::util::content(3 << 20, 8);
    std::fs::write(work.path().join("large.bin"), &large).expect("large file");
    std::os::unix::fs::symlink("box", server.home("ann").join("to-box")).expect("link to box");
    ok(&batch(&server, work.path(), "put b.txt box; put large.bin box; put a.txt box3"));
    assert_eq!(server.stored("ann", "box/b.txt").expect("small into box"), b"beta");
    assert_eq!(server.stored("ann", "box/large.bin").expect("large into box"), large);
    assert_eq!(server.stored("ann", "box3").expect("put as a new name"), b"alpha");
    std::fs::remove_file(server.home("ann").join("box/a.txt")).expect("clear box");
    std::fs::remove_file(server.home("ann").join("box/large.bin")).expect("clear box");
    ok(&batch(&server, work.path(), "put a.txt to-box; put large.bin to-box"));
    assert_eq!(server.stored("ann", "box/a.txt").expect("small through the link"), b"alpha");
    assert_eq!(server.stored("ann", "box/large.bin").expect("large through the link"), large);
    assert!(server.home("ann").join("to-box").is_symlink(), "the link is still a link");
}

#[test]
fn rm_ls_and_stat_expand_remote_wildcards() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = server.home("ann");
    for name in ["a.tmp", "b.tmp", "keep.txt"] {
        std::fs::write(home.join(name), name).expect("file");
    }
    let work = tempfile::tempdir().expect("work");
    assert_eq!(ok(&batch(&server, work.path(), "ls -1 '*.tmp'")), "a.tmp\nb.tmp\n");
    let stat = ok(&batch(&server, work.path(), "stat '*.tmp'"));
    assert_eq!(stat.matches("Type: file").count(), 2, "{stat}");
    ok(&batch(&server, work.path(), "rm '*.tmp'"));
    assert!(!home.join("a.tmp").exists() && !home.join("b.tmp").exists());
    assert!(home.join("keep.txt").exists());
    let none = batch(&server, work.path(), "rm '*.tmp'");
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("no match"), "{}", text(&none.stderr));

    // Many paths at once: every one is tried, as coreutils' rm does, and the first failure is
    // reported; stat prints what comes before its first failure, in order.
    for n in 0..40 {
        std::fs::write(home.join(format!("many{n:02}")), "x").expect("file");
    }
    let stats = batch(&server, work.path(), "stat many03 many01 nothing many02");
    assert_eq!(stats.status.code(), Some(1));
    let stdout = text(&stats.stdout);
    let shown: Vec<&str> = stdout.lines().filter(|l| l.contains("many")).collect();
    assert!(
        shown.len() == 2 && shown[0].contains("many03") && shown[1].contains("many01"),
        "{shown:?}"
    );
    assert!(text(&stats.stderr).contains("nothing"), "{}", text(&stats.stderr));
    let some = batch(&server, work.path(), "rm keep.txt/not 'many*'");
    assert_eq!(some.status.code(), Some(1), "{}", text(&some.stderr));
    assert!(text(&some.stderr).contains("keep.txt/not"), "{}", text(&some.stderr));
    let left: Vec<_> = (0..40).filter(|n| home.join(format!("many{n:02}")).exists()).collect();
    assert_eq!(left, Vec::<i32>::new(), "every file that could go went");
}

#[test]
fn mkdir_and_rmdir_try_every_path_unless_one_lies_in_another() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    server.make_dir("ann", "there");
    // Independent paths go out together: the one that fails does not stop the others.
    let made = batch(&server, work.path(), "mkdir there one two");
    assert_eq!(made.status.code(), Some(1), "{}", text(&made.stderr));
    assert!(text(&made.stderr).contains("there"), "{}", text(&made.stderr));
    assert!(server.exists("ann", "one") && server.exists("ann", "two"));
    // Nested paths keep their order: each needs the one before.
    ok(&batch(&server, work.path(), "mkdir n n/m n/m/o"));
    assert!(server.exists("ann", "n/m/o"));
    ok(&batch(&server, work.path(), "rmdir n/m/o n/m n"));
    assert!(!server.exists("ann", "n"));
    let removed = batch(&server, work.path(), "rmdir missing one two");
    assert_eq!(removed.status.code(), Some(1), "{}", text(&removed.stderr));
    assert!(text(&removed.stderr).contains("missing"), "{}", text(&removed.stderr));
    assert!(!server.exists("ann", "one") && !server.exists("ann", "two"));
}

#[test]
fn quota_errors_speak_in_sizes_and_partial_uploads_can_be_seen_and_dropped() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "2MiB");
    server.start();
    let work = tempfile::tempdir().expect("work");
    std::fs::write(work.path().join("huge.bin"), vec![7u8; 3 << 20]).expect("file");
    let out = batch(&server, work.path(), "put huge.bin");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("over quota: needs 3.0 MiB, 2.0 MiB of 2.0 MiB left"),
        "quota errors say what is needed and what is left: {stderr}"
    );

    // A partial left by an interrupted upload, as the server keeps it.
    let partials = server.root().join("var/partials/ann");
    std::fs::create_dir_all(&partials).expect("partials dir");
    std::fs::write(partials.join("k.part"), vec![0u8; 1 << 20]).expect("partial");
    std::fs::write(
        partials.join("k.meta"),
        "path = \"/movie.mkv\"\nsize = 4000000\nsource = \"v\"\n",
    )
    .expect("meta");
    server.stop();
    server.start();
    let quota = ok(&batch(&server, work.path(), "quota"));
    assert!(quota.contains("partial:  1.0 MiB in 1 interrupted upload"), "{quota}");
    let listed = ok(&batch(&server, work.path(), "partials"));
    assert!(listed.contains("/movie.mkv") && listed.contains("1.0 MiB"), "{listed}");
    let dropped = ok(&batch(&server, work.path(), "partials drop --all; quota"));
    assert!(dropped.contains("dropped 1 partial upload, 1.0 MiB given back"), "{dropped}");
    assert!(dropped.contains("used:     0 B"), "{dropped}");
    assert!(!partials.join("k.part").exists());
}

#[test]
fn df_chmod_kept_times_and_a_local_shell() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    let local = work.path().join("old.txt");
    std::fs::write(&local, b"from 2001").expect("file");
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&local)
        .expect("open")
        .set_modified(then)
        .expect("time");

    let df = ok(&batch(&server, work.path(), "df -h"));
    assert!(df.contains("Size") && df.contains("100.0 MiB"), "{df}");

    ok(&batch(&server, work.path(), "put -p old.txt; chmod 600 old.txt; get -p old.txt copy.txt"));
    let stored = std::fs::metadata(server.home("ann").join("old.txt")).expect("stored");
    assert_eq!(stored.modified().expect("mtime"), then, "put -p keeps the time");
    assert_eq!(stored.permissions().mode() & 0o777, 0o600, "chmod");
    let copy = std::fs::metadata(work.path().join("copy.txt")).expect("copy");
    assert_eq!(copy.modified().expect("mtime"), then, "get -p keeps the time");

    let bad = batch(&server, work.path(), "chmod 4755 old.txt");
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));

    let shell = ok(&batch(&server, work.path(), "!echo local-$((6*7))"));
    assert!(shell.contains("local-42"), "{shell}");
    let failed = batch(&server, work.path(), "!false; pwd");
    assert_eq!(failed.status.code(), Some(1), "a failing local command fails the batch");

    let help = ok(&batch(&server, work.path(), "help"));
    for word in ["chmod", "df", "partials", "reget", "mput", "!CMD"] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}

#[test]
fn messages_are_written_for_people() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    let out = batch(&server, work.path(), "lls /no/such/dir");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no such file or directory") && !stderr.contains("os error"),
        "{stderr}"
    );
    let out = batch(&server, work.path(), "frobnicate");
    assert!(
        text(&out.stderr).contains("unknown command: frobnicate (try: help)"),
        "{}",
        text(&out.stderr)
    );
    let out = batch(&server, work.path(), "mv onlyone");
    assert!(text(&out.stderr).contains("mv: missing"), "{}", text(&out.stderr));
}

#[test]
fn a_closed_pipe_ends_the_client_quietly() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    for i in 0..3000 {
        server.place("ann", &format!("file-with-a-long-name-{i:05}"), b"");
    }
    let home = tempfile::tempdir().expect("home");
    let cert = server.cert().display().to_string();
    let to = target(&server, "ann");
    let mut child = wharf_integration::client::spawn_wharf(
        home.path(),
        Some("pw"),
        &["--ca", &cert, "-c", "ls -1; ls -1; ls -1", &to],
        false,
    );
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("some output");
    drop(stdout); // like `| head -c 16`
    let out = child.wait_with_output().expect("wait");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about a reader that left: {stderr}");
    assert_eq!(out.status.code(), Some(141));
}

#[test]
fn get_of_a_folder_needs_r_and_get_r_of_files_and_folders_takes_both() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = server.home("ann");
    std::fs::create_dir_all(home.join("folder/inner")).expect("folder");
    std::fs::write(home.join("folder/inner/deep"), b"deep").expect("file");
    std::fs::write(home.join("alone"), b"alone").expect("file");
    let work = tempfile::tempdir().expect("work");

    let out = batch(&server, work.path(), "get folder");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("use get -r"), "{}", text(&out.stderr));
    assert!(!work.path().join("folder").exists(), "nothing made for a refused get");

    // With -r, a file among the sources is fetched as a file (its tree request fails, unneeded),
    // and a missing one fails the command with its own error.
    ok(&batch(&server, work.path(), "get -r alone folder ."));
    assert_eq!(std::fs::read(work.path().join("alone")).expect("file"), b"alone");
    assert_eq!(std::fs::read(work.path().join("folder/inner/deep")).expect("tree"), b"deep");
    let out = batch(&server, work.path(), "get -r missing .");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no such file"), "{}", text(&out.stderr));

    // A few files named outright are each fetched beside their stat: one missing, or a folder
    // without -r, fails the command but not the others.
    let down = work.path().join("down");
    std::fs::create_dir(&down).expect("down");
    let out = batch(&server, work.path(), "get alone missing folder down");
    // Each failure has a line of its own (on standard output, with the other files' lines,
    // without a terminal), and the last line says how many failed.
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("2 of 3 files failed"), "{said}");
    assert!(said.contains("/missing: no such file") && said.contains("use get -r"), "{said}");
    assert_eq!(std::fs::read(down.join("alone")).expect("fetched all the same"), b"alone");
    assert!(!down.join("missing").exists() && !down.join("folder").exists());
}
