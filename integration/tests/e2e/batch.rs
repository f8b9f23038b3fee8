//! Batch mode (`-c`, `-b`, piped standard input) and the documented exit codes.

use std::time::Duration;

use wharf_integration::client::{target, text, wharf};
use wharf_integration::server::TestServer;

fn ca_args(server: &TestServer) -> Vec<String> {
    vec!["--ca".into(), server.cert().display().to_string()]
}

fn run(
    server: &TestServer,
    password: Option<&str>,
    extra: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let home = tempfile::tempdir().expect("home");
    let mut args = ca_args(server);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wharf(home.path(), password, &args, stdin)
}

#[test]
fn commands_run_in_order_and_the_first_failure_stops_the_batch() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let to = target(&server, "ann");
    let out =
        run(&server, Some("pw"), &["-c", "mkdir -p 'a b/c'; cd 'a b'; pwd; ls -l", &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("/a b"));
    let long = lines.next().expect("ls -l line");
    assert!(long.starts_with("drwx") && long.ends_with(" c/"), "{long}");
    assert!(
        long.split_whitespace().nth(2).is_some_and(|d| d.len() == 10 && d.starts_with("20")),
        "{long}"
    );

    let out = run(&server, Some("pw"), &["-c", "mkdir x; cd nowhere; mkdir y", &to], None);
    assert_eq!(out.status.code(), Some(1), "a failed command exits 1");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cd nowhere") && stderr.contains("no such file"), "{stderr}");
    assert!(server.exists("ann", "x"));
    assert!(!server.exists("ann", "y"), "nothing runs after the failure");

    let out = run(&server, Some("pw"), &["-c", "mkdir z; frobnicate", &to], None);
    assert_eq!(out.status.code(), Some(2), "a command that does not parse is a usage error");
}

#[test]
fn batch_files_and_piped_input() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let to = target(&server, "ann");
    let dir = tempfile::tempdir().expect("dir");
    let script = dir.path().join("script.wharf");
    std::fs::write(&script, "# set up\nmkdir -p docs/old\n\nmv docs/old docs/archive\nls docs\n")
        .expect("script");
    let out = run(&server, Some("pw"), &["-b", &script.display().to_string(), &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "archive/");

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 4 << 20]).expect("big file");
    let out = run(&server, Some("pw"), &["-c", &format!("put {} docs", big.display()), &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("big.bin: 25%\nbig.bin: 50%\nbig.bin: 75%\n"),
        "plain progress lines: {stdout}"
    );
    assert!(stdout.contains("put big.bin: 4.0 MiB in") && stdout.contains("sha256 ok"), "{stdout}");

    let out = run(&server, Some("pw"), &[&to], Some("cd docs\npwd\nquota\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("/docs\n"), "{stdout}");
    assert!(stdout.contains("limit:    100.0 MiB"), "{stdout}");
}

#[test]
fn exit_codes_tell_authentication_and_connection_failures_apart() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let to = target(&server, "ann");
    let out = run(&server, Some("wrong"), &["-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = run(&server, None, &["-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(4), "no password and no terminal: {}", text(&out.stderr));

    // A UDP port that receives but never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let out = run(
        &server,
        Some("pw"),
        &["--connect-timeout", "1", "-c", "pwd", &format!("ann@127.0.0.1:{port}")],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot connect"), "{}", text(&out.stderr));

    // A port nothing listens on is refused at once, as ssh says, not after the connect timeout.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let started = std::time::Instant::now();
    let to = format!("ann@127.0.0.1:{port}");
    let out = run(&server, Some("pw"), &["--connect-timeout", "60", "-c", "pwd", &to], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("connection refused"), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(30), "waited for the timeout");
}

#[test]
fn a_wharf_url_names_the_server_and_the_folder_to_start_in() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.make_dir("ann", "my docs/inbox");
    let url = |path: &str| format!("wharf://ann@127.0.0.1:{}{path}", server.addr().port());
    let out = run(&server, Some("pw"), &["-c", "pwd; cd ..; pwd", &url("/my%20docs/inbox")], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/my docs/inbox\n/my docs\n");
    let out = run(&server, Some("pw"), &["-c", "pwd", &url("/")], None);
    assert_eq!(text(&out.stdout), "/\n", "{}", text(&out.stderr));

    let out = run(&server, Some("pw"), &["-c", "mkdir made", &url("/nowhere")], None);
    assert_eq!(out.status.code(), Some(1), "a folder that is not there fails the login's command");
    assert!(text(&out.stderr).contains("/nowhere: no such file"), "{}", text(&out.stderr));
    assert!(!server.exists("ann", "made") && !server.exists("ann", "nowhere/made"));

    // A URL of another scheme, or one mistyped, is a usage error, never a user name.
    let port = server.addr().port();
    for bad in [format!("sftp://ann@127.0.0.1:{port}"), format!("wharf:/ann@127.0.0.1:{port}")] {
        let out = run(&server, Some("pw"), &["-c", "pwd", &bad], None);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
}

#[test]
fn help_lists_every_command() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let out = run(&server, Some("pw"), &["-c", "help; help mv", &target(&server, "ann")], None);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for command in [
        "pwd", "cd", "ls", "stat", "mkdir", "rmdir", "rm", "mv", "quota", "lcd", "lpwd", "lls",
        "exit",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(command)),
            "help lacks {command}:\n{stdout}"
        );
    }
    assert!(stdout.contains("Usage: mv FROM... TO"), "{stdout}");
}

#[test]
fn one_shot_get_and_put_with_urls() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let work = tempfile::tempdir().expect("work");
    std::fs::write(work.path().join("a.txt"), b"alpha").expect("file");
    std::fs::write(work.path().join("b.txt"), b"beta").expect("file");
    server.make_dir("ann", "inbox");
    let url = |path: &str| format!("wharf://ann@127.0.0.1:{}{path}", server.addr().port());
    let a = work.path().join("a.txt").display().to_string();
    let b = work.path().join("b.txt").display().to_string();
    let out = run(&server, Some("pw"), &["put", &a, &b, &url("/inbox")], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(server.stored("ann", "inbox/b.txt").expect("uploaded"), b"beta");

    let down = work.path().join("down");
    std::fs::create_dir(&down).expect("down");
    let down_s = down.display().to_string();
    let out = run(
        &server,
        Some("pw"),
        &["get", "-j", "2", &url("/inbox/a.txt"), &url("/inbox/b.txt"), &down_s],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(down.join("a.txt")).expect("downloaded"), b"alpha");

    // Without a local destination, the files come here (the client's working directory).
    let here = tempfile::tempdir().expect("here");
    let out = std::process::Command::new(wharf_integration::binary("wharf"))
        .args(["--ca", &server.cert().display().to_string()])
        .args(["get", &url("/inbox/a.txt"), &url("/inbox/b.txt")])
        .current_dir(here.path())
        .env("HOME", here.path())
        .env("WHARF_PASSWORD", "pw")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wharf");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(here.path().join("b.txt")).expect("here"), b"beta");

    let missing = run(&server, Some("pw"), &["get", &url("/inbox/nope"), &down_s], None);
    assert_eq!(missing.status.code(), Some(1), "a failed transfer exits 1");
    let wrong = run(&server, Some("wrong"), &["get", &url("/inbox/a.txt"), &down_s], None);
    assert_eq!(wrong.status.code(), Some(4), "authentication failure exits 4");
    let bad_url = run(&server, Some("pw"), &["get", "ftp://x/y", &down_s], None);
    assert_eq!(bad_url.status.code(), Some(2), "a malformed URL is a usage error");
}

#[test]
fn plain_progress_passes_every_quarter_even_for_a_file_sent_in_one_piece() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let dir = tempfile::tempdir().expect("dir");
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![3u8; 100 << 10]).expect("small file");
    let out = run(
        &server,
        Some("pw"),
        &["-c", &format!("put {}", small.display()), &target(&server, "ann")],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("small.bin: 25%\nsmall.bin: 50%\nsmall.bin: 75%\n"), "{stdout}");
}

#[test]
fn cat_writes_remote_files_into_a_pipe_as_they_are() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let to = target(&server, "ann");
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    server.place("ann", "bin", &binary);
    server.place("ann", "a.txt", b"alpha\n");
    let out = run(&server, Some("pw"), &["-c", "cat a.txt 'b*'", &to], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == [b"alpha\n".as_slice(), &binary].concat(), "the bytes, unchanged");

    let out = run(&server, Some("pw"), &["-c", "cat a.txt nope", &to], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nope: no such file"), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"alpha\n", "the files before the failure are shown");
}

#[test]
fn a_download_never_replaces_a_device_or_fifo_with_a_file() {
    use std::os::unix::fs::FileTypeExt as _;
    let server = TestServer::with_users(&[("ann", "pw")]);
    server.place("ann", "data.bin", &crate::util::content(3 << 20, 5));
    let to = target(&server, "ann");
    let dir = tempfile::tempdir().expect("dir");
    // A FIFO stands for /dev/null, which the test must not risk: `get big /dev/null` (sftp's
    // speed test) once renamed a plain file over root's /dev/null.
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let get = format!("get data.bin {}", fifo.display());
    let out = run(&server, Some("pw"), &["-c", &get, &to], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pipe: not a regular file"), "{stderr}");
    let kind = std::fs::symlink_metadata(&fifo).expect("still there").file_type();
    assert!(kind.is_fifo(), "the FIFO is still a FIFO");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["pipe"], "no partial left beside it");
}
