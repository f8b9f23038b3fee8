//! Background jobs: transfers ending in `&`, `jobs`, `wait` and `kill`, in the shell (through a
//! pseudo-terminal) and in a batch (through its exit code).

use std::time::{Duration, Instant};

use wharf_integration::client::{target, text, wharf};
use wharf_integration::server::TestServer;

use crate::shell::{at_prompt, has_line, shell};
use crate::util::content;

#[test]
fn a_background_transfer_leaves_the_prompt_free_and_reports_when_waited_for() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let data = content(24 << 20, 71);
    server.place("ann", "data.bin", &data);
    server.place("ann", "sub/keep", b"");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    let upload = content(3 << 20, 72);
    std::fs::write(work.path().join("up.bin"), &upload).expect("local file");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd {}\r", work.path().display()));
    at_prompt(&mut sh, "/");

    sh.send("get data.bin &\r");
    sh.expect("[1] get data.bin");
    // The shell answers while the job runs, on the same connection.
    sh.send("ls sub\r");
    sh.expect_where("the listing", |s| has_line(s, "keep"));
    // A job started in / puts its file in /, whatever the shell's folder is by the time it runs.
    sh.send("put up.bin &\r");
    sh.expect("[2] put up.bin");
    sh.send("cd sub\r");
    at_prompt(&mut sh, "/sub");
    sh.send("wait\r");
    sh.expect_where("both reports", |s| {
        has_line(s, "[1] get data.bin: done") && has_line(s, "[2] put up.bin: done")
    });
    let screen = sh.screen();
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("get data.bin: 24.0 MiB in") && l.contains("sha256 ok")),
        "the file's own line is in the report: {screen}"
    );
    at_prompt(&mut sh, "/sub");
    assert_eq!(std::fs::read(work.path().join("data.bin")).expect("downloaded"), data);
    assert_eq!(server.stored("ann", "up.bin").expect("uploaded into /"), upload);
    assert!(!server.exists("ann", "sub/up.bin"));
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
}

#[test]
fn kill_stops_a_background_upload_keeping_its_partial_and_exit_asks_first() {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "4GiB");
    server.start();
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    // A sparse gigabyte: enough to still be moving when the shell asks about it.
    std::fs::File::create(work.path().join("big"))
        .expect("file")
        .set_len(1 << 30)
        .expect("sparse 1 GiB");
    let mut sh = shell(&server, home.path(), true, Some("pw"));
    at_prompt(&mut sh, "/");
    sh.send(&format!("lcd {}\r", work.path().display()));
    at_prompt(&mut sh, "/");

    sh.send("put big &\r");
    sh.expect("[1] put big");
    let started = Instant::now();
    while server.partial_uploads("ann") == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    sh.send("jobs\r");
    sh.expect_where("a running job", |s| s.lines().any(|l| l.starts_with("[1] put big: running")));
    sh.send("kill 1\r");
    sh.expect("[1] put big: killed (partial files are kept: run the same command again to resume)");
    at_prompt(&mut sh, "/");
    sh.send("partials\r");
    sh.expect_where("the partial", |s| s.lines().any(|l| l.trim_end().ends_with("/big")));
    assert!(!server.exists("ann", "big"), "nothing installed");

    // Leaving with a job running asks first; the second exit stops it.
    sh.send("put big copy &\r");
    sh.expect("[2] put big copy");
    sh.send("exit\r");
    sh.expect("1 job is running (see `jobs`): `wait`, `kill`, or exit again to stop them");
    at_prompt(&mut sh, "/");
    sh.send("exit\r");
    assert_eq!(sh.wait(), 0);
    assert!(!server.exists("ann", "copy"), "the stopped job installed nothing");
}

#[test]
fn a_batch_waits_for_its_jobs_and_its_exit_code_says_how_they_did() {
    let server = TestServer::with_users(&[("ann", "pw")]);
    let to = target(&server, "ann");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    for (name, seed) in [("a.bin", 1), ("b.bin", 2), ("c.bin", 3)] {
        std::fs::write(work.path().join(name), content(2 << 20, seed)).expect("local file");
    }
    let cert = server.cert().display().to_string();
    let run =
        |script: String| wharf(home.path(), Some("pw"), &["--ca", &cert, "-c", &script, &to], None);
    let lcd = format!("lcd {}", work.path().display());

    let out = run(format!("{lcd}; put a.bin &; put b.bin &; mkdir d; wait; put c.bin &"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for report in ["[1] put a.bin: done", "[2] put b.bin: done", "[3] put c.bin: done"] {
        assert!(stdout.lines().any(|l| l == report), "{report} in {stdout}");
    }
    // The last job had no `wait`: the batch waited for it before it ended.
    for (name, seed) in [("a.bin", 1), ("b.bin", 2), ("c.bin", 3)] {
        assert_eq!(server.stored("ann", name), Some(content(2 << 20, seed)), "{name}");
    }
    assert!(server.exists("ann", "d"));

    let out = run(format!("{lcd}; get missing &"));
    assert_eq!(out.status.code(), Some(1), "a failed job fails the batch");
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[1] get missing: failed: ") && l.contains("no such file")),
        "{stdout}"
    );

    let out = run("ls &".into());
    assert_eq!(out.status.code(), Some(2), "only transfers go to the background");
    assert!(text(&out.stderr).contains("only put, get, mirror and cp run in the background"));
}
