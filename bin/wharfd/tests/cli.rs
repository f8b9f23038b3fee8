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
