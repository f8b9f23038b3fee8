//! The `wharfd` binary's argument handling. (Having an integration test here also makes
//! `cargo test --workspace` build the binary that the end-to-end tests in `integration/` drive.)

use std::process::Command;

fn wharfd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharfd")).args(args).output().expect("run wharfd")
}

#[test]
fn help_lists_the_commands() {
    let out = wharfd(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["setup", "user", "serve", "--root"] {
        assert!(text.contains(command), "help lacks {command}:\n{text}");
    }
}

#[test]
fn bad_arguments_exit_with_2() {
    assert_eq!(wharfd(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(wharfd(&["user", "quota", "ann", "10XB"]).status.code(), Some(2));
}

#[test]
fn wharfd_alone_in_a_folder_that_is_not_a_root_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_str().expect("utf-8 path");
    let out = wharfd(&["--root", root, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a wharfd root") && stderr.contains("wharfd setup"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "nothing was created");
}

#[test]
fn listen_is_accepted_before_or_after_serve_and_nowhere_else() {
    let out = wharfd(&["--listen", "127.0.0.1:0", "setup"]);
    assert_eq!(out.status.code(), Some(1), "--listen means nothing to setup");
    let help = wharfd(&["serve", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--listen"));
}
