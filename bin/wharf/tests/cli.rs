//! The `wharf` binary's argument handling. (Having an integration test here also makes
//! `cargo test --workspace` build the binary that the end-to-end tests in `integration/` drive.)

use std::process::Command;

fn wharf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharf")).args(args).output().expect("run wharf")
}

#[test]
fn help_documents_exit_codes() {
    let out = wharf(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes"), "{text}");
    assert!(text.contains("--accept-new-host"), "{text}");
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(wharf(&[]).status.code(), Some(2), "missing target");
    assert_eq!(wharf(&["ann@host:notaport"]).status.code(), Some(2), "bad target");
    assert_eq!(
        wharf(&["--ca", "x", "--known-hosts", "y", "host"]).status.code(),
        Some(2),
        "conflict"
    );
}
