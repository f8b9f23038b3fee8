//! The interactive shell, driven through a pseudo-terminal as a person would use it.

use std::path::Path;

use wharf_integration::binary;
use wharf_integration::pty::PtyShell;
use wharf_integration::server::TestServer;

pub(crate) fn shell(
    server: &TestServer,
    home: &std::path::Path,
    with_ca: bool,
    password: Option<&str>,
) -> PtyShell {
    let cert = server.cert().display().to_string();
    let to = format!("ann@127.0.0.1:{}", server.addr().port());
    let mut args = Vec::new();
    if with_ca {
        args.extend(["--ca", cert.as_str()]);
    }
    args.push(to.as_str());
    let home = home.display().to_string();
    let mut env = vec![("HOME", home.as_str())];
    if let Some(password) = password {
        env.push(("WHARF_PASSWORD", password));
    }
    PtyShell::spawn(&binary("wharf"), &args, &env)
}

pub(crate) fn has_line(screen: &str, wanted: &str) -> bool {
    screen.lines().any(|line| line.trim_end() == wanted)
}

/// Waits for a fresh, empty prompt in `cwd` on the last line, as a person would before typing.
pub(crate) fn at_prompt(sh: &mut PtyShell, cwd: &str) {
    let prompt = format!("ann@127.0.0.1:{cwd}>");
    sh.expect_where(&prompt.clone(), |screen| {
        screen.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_end() == prompt)
    });
}

#[test]
fn prompt_commands_completion_errors_ctrl_c_and_history() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");

    sh.send("mkdir 'my docs'\r");
    at_prompt(&mut sh, "/");
    // Remote path completion, escaping the space.
    sh.send("cd my\t");
    sh.expect("cd my\\ docs/");
    sh.send("\r");
    at_prompt(&mut sh, "/my docs");
    sh.send("pwd\r");
    sh.expect_where("pwd output", |s| has_line(s, "/my docs"));
    at_prompt(&mut sh, "/my docs");

    // Command-name completion, then Ctrl-C clears the line and keeps the shell.
    sh.send("lp\t");
    sh.expect("lpwd");
    sh.send("\x03");
    at_prompt(&mut sh, "/my docs");

    // An error is one line, and the shell goes on.
    sh.send("cd nowhere\r");
    sh.expect("error: /my docs/nowhere: no such file or directory");
    at_prompt(&mut sh, "/my docs");
    sh.send("ls --bogus\r");
    sh.expect("error: ls: unknown option --bogus (try: help ls)");
    at_prompt(&mut sh, "/my docs");
    sh.send("cd ..\r");
    at_prompt(&mut sh, "/");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);

    // History survives into the next session: Up recalls the last commands.
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send("\x1b[A");
    sh.expect("ann@127.0.0.1:/> exit");
    sh.send("\x1b[A");
    sh.expect("ann@127.0.0.1:/> cd ..");
    sh.send("\x03");
    at_prompt(&mut sh, "/");
    sh.send("\x04"); // Ctrl-D on an empty line leaves.
    assert_eq!(sh.wait(), 0);
    let history =
        std::fs::read_to_string(home.path().join(".config/wharf/history")).expect("history file");
    assert!(history.contains("mkdir 'my docs'"), "{history}");
}

#[test]
fn transfers_show_progress_and_a_verified_line_per_file() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    for name in ["one.bin", "two.bin"] {
        std::fs::write(work.path().join(name), vec![7u8; 3 << 20]).expect("file");
    }
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd {}\r", work.path().display()));
    at_prompt(&mut sh, "/");
    sh.send("put *.bin\r");
    sh.expect_where("both files verified", |s| {
        s.contains("put one.bin: 3.0 MiB in")
            && s.contains("put two.bin: 3.0 MiB in")
            && s.matches("sha256 ok").count() == 2
    });
    at_prompt(&mut sh, "/");
    sh.send("ls -l\r");
    sh.expect_where("listing", |s| {
        s.lines().any(|l| l.starts_with("-rw") && l.ends_with(" two.bin"))
    });
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn ctrl_c_cancels_a_transfer_keeps_the_partial_and_the_rerun_resumes() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "2GiB");
    server.start();
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    // Large enough that the transfer is still running when the bar has appeared and Ctrl-C arrives.
    let big = work.path().join("big.bin");
    std::fs::File::create(&big).expect("file").set_len(1 << 30).expect("sparse 1 GiB");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd {}\r", work.path().display()));
    at_prompt(&mut sh, "/");
    sh.send("put big.bin\r");
    // Interrupt once 64 MiB have moved, so that the server has certainly written (and recorded)
    // some of them: it writes in 1 MiB chunks per lane, and what was still in flight is sent again.
    sh.expect_where("64 MiB moved", |screen| moved_mib(screen) >= 64.0);
    sh.send("\x03");
    sh.expect("error: interrupted; partial files are kept: run the same command again to resume");
    at_prompt(&mut sh, "/");
    let screen = sh.screen();
    assert!(moved_mib(&screen) == 0.0, "no bar is left on the screen:\n{screen}");
    assert!(!screen.contains("^C"), "the interrupt is not echoed among the bars:\n{screen}");
    assert!(!server.exists("ann", "big.bin"), "nothing installed");

    // The rerun resumes from what the server kept (and waits for it to let go of the partial).
    sh.send("put big.bin\r");
    sh.expect_where("resumed and verified", |s| {
        s.contains("put big.bin: 1.0 GiB in") && s.contains("resumed at")
    });
    at_prompt(&mut sh, "/");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
    assert_eq!(
        std::fs::metadata(server.home("ann").join("big.bin")).expect("stored").len(),
        1 << 30
    );
}

#[test]
fn ctrl_c_cancels_a_copy_on_the_server_and_it_keeps_nothing() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "4GiB");
    server.start();
    if !server.is_local() {
        return; // A sparse gigabyte, copied slowly enough to interrupt, is a local file.
    }
    std::fs::File::create(server.home("ann").join("big"))
        .expect("file")
        .set_len(1 << 30)
        .expect("sparse 1 GiB");
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send("cp big copy\r");
    // Interrupt once the server has started writing the copy.
    let started = std::time::Instant::now();
    while server.partial_uploads("ann") == 0 {
        assert!(started.elapsed().as_secs() < 30, "the copy never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    sh.send("\x03");
    sh.expect("error: interrupted; the copies under way were dropped; those done are kept");
    at_prompt(&mut sh, "/");
    let dropped = std::time::Instant::now();
    while server.partial_uploads("ann") > 0 && dropped.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.partial_uploads("ann"), 0, "the server dropped the copy's partial");
    assert!(!server.exists("ann", "copy"), "nothing installed");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn cat_on_a_terminal_shows_control_characters_escaped() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "notes.txt", b"line one\n\x1b]0;retitled\x07 and \x1b[2J cleared\n");
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send("cat notes.txt\r");
    sh.expect_where("the file, escaped", |s| {
        has_line(s, "line one") && has_line(s, r"\x1b]0;retitled\x07 and \x1b[2J cleared")
    });
    at_prompt(&mut sh, "/");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

/// The MiB a `... MiB/1.00 GiB` progress bar on the screen shows as moved.
fn moved_mib(screen: &str) -> f64 {
    screen
        .lines()
        .filter_map(|line| line.split_once(" MiB/1.00 GiB").map(|(before, _)| before))
        .filter_map(|before| before.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn first_connection_asks_about_the_host_and_the_password() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), false, None);
    sh.expect("Are you sure you want to continue connecting (yes/no)?");
    let screen = sh.screen();
    assert!(screen.contains("Its certificate fingerprint is SHA256:"), "{screen}");
    sh.send("yes\r");
    sh.expect("ann@127.0.0.1's password:");
    sh.send("pw\r");
    at_prompt(&mut sh, "/");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
    let pinned =
        std::fs::read_to_string(home.path().join(".config/wharf/known_hosts")).expect("pinned");
    assert!(pinned.starts_with(&format!("127.0.0.1:{} SHA256:", server.addr().port())), "{pinned}");
}

#[test]
fn a_wharf_url_starts_the_shell_in_its_folder() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.make_dir("ann", "my docs/sub");
    let home = tempfile::tempdir().expect("home");
    let (cert, home_env) = (server.cert().display().to_string(), home.path().display().to_string());
    let url = format!("wharf://ann@127.0.0.1:{}/my%20docs", server.addr().port());
    let env = [("HOME", home_env.as_str()), ("WHARF_PASSWORD", "pw")];
    let mut sh = PtyShell::spawn(&binary("wharf"), &["--ca", &cert, &url], &env);
    at_prompt(&mut sh, "/my docs");
    sh.send("ls\r");
    sh.expect_where("ls output", |s| has_line(s, "sub/"));
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn a_person_slower_than_the_login_timeout_still_logs_in() {
    // One second to log in: the host-key question and the password prompt together take longer.
    let server = TestServer::configured("[auth]\nlogin_timeout_secs = 1\n", &[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), false, None);
    sh.expect("Are you sure you want to continue connecting (yes/no)?");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh.send("yes\r");
    sh.expect("ann@127.0.0.1's password:");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh.send("pw\r");
    at_prompt(&mut sh, "/");
    sh.send("pwd\r");
    sh.expect_where("pwd output", |s| has_line(s, "/"));
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn without_a_terminal_on_stdin_wharf_never_prompts_even_with_a_controlling_terminal() {
    // As `cargo test` typed in a terminal runs it: the terminal is there, standard input is not it.
    let server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let command = format!(
        "exec '{}' --ca '{}' -c pwd ann@127.0.0.1:{} </dev/null",
        binary("wharf").display(),
        server.cert().display(),
        server.addr().port()
    );
    let home_env = home.path().display().to_string();
    let mut sh = PtyShell::spawn(Path::new("/bin/sh"), &["-c", &command], &[("HOME", &home_env)]);
    let code = sh.wait();
    let screen = sh.screen();
    assert_eq!(code, 4, "no password available is an authentication failure:\n{screen}");
    assert!(screen.contains("WHARF_PASSWORD"), "says how to give one:\n{screen}");
    assert!(!screen.contains("'s password:"), "never asks:\n{screen}");
}

#[test]
fn the_shell_reconnects_after_the_server_restarts() {
    let mut server = TestServer::with_users(&[("ann", "pw")]);
    let home = tempfile::tempdir().expect("home");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send("mkdir kept\r");
    at_prompt(&mut sh, "/");
    sh.send("cd kept\r");
    at_prompt(&mut sh, "/kept");
    let addr = server.addr();
    server.stop();
    server.start_on(addr);
    sh.send("ls -1 /\r");
    sh.expect("wharf: reconnected");
    sh.expect_where("the listing after reconnecting", |s| has_line(s, "kept/"));
    at_prompt(&mut sh, "/kept");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn tab_completes_the_local_destination_of_get_and_paths_in_the_home() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "remote.txt", b"r");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    std::fs::create_dir(work.path().join("downloads-here")).expect("local dir");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd '{}'\r", work.path().display()));
    at_prompt(&mut sh, "/");
    sh.send("get remote.txt down\t");
    sh.expect("get remote.txt downloads-here/");
    sh.send("\r");
    at_prompt(&mut sh, "/");
    assert!(work.path().join("downloads-here/remote.txt").exists());

    // `~` is the home on this side, for completion as for the command.
    std::fs::create_dir(home.path().join("in-the-home")).expect("home folder");
    sh.send("lcd ~/in-\t");
    sh.expect("lcd ~/in-the-home/");
    sh.send("\r");
    at_prompt(&mut sh, "/");
    sh.send("lpwd\r");
    let wanted = home.path().join("in-the-home").display().to_string();
    sh.expect_where("lpwd output", |s| has_line(s, &wanted));
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn lines_typed_during_a_transfer_all_run_after_it() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "4GiB");
    server.start();
    if !server.is_local() {
        return; // A sparse file, to be moving when the lines are typed, is a local file.
    }
    std::fs::File::create(server.home("ann").join("big"))
        .expect("file")
        .set_len(64 << 20)
        .expect("sparse 64 MiB");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd {}\r", work.path().display()));
    at_prompt(&mut sh, "/");
    sh.send("get big\r");
    let started = std::time::Instant::now();
    while !work.path().join("big.wharf-part").exists() {
        assert!(started.elapsed().as_secs() < 30, "the download never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Typed ahead while the bars are up: each line runs in turn once the transfer is done.
    // (What they print is left to the terminal: the line editor may redraw over it.)
    sh.send("mkdir d\rcd d\rmkdir e\r");
    let typed = std::time::Instant::now();
    while !server.exists("ann", "d/e") {
        assert!(typed.elapsed().as_secs() < 30, "all three ran, the last in d: {}", sh.screen());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    at_prompt(&mut sh, "/d");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}
