//! Runs the checked-in fuzz corpus (`fuzz/corpus/`) through the fuzz targets' checks, so that every
//! `cargo test` replays what the fuzzers found interesting. `fuzz/README.md` says how to fuzz longer.

use std::path::PathBuf;

use wharf_integration::fuzzing::{Jail, MARKER, frame_decode};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("input"))
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "the {target} corpus is missing");
    inputs
}

#[test]
fn frame_decode_corpus() {
    for (name, input) in corpus("frame_decode") {
        println!("frame_decode/{name}");
        frame_decode(&input);
    }
}

#[test]
fn path_resolve_corpus() {
    let jail = Jail::new();
    // The traps are live: plain path resolution, which follows symlinks, does reach the marker
    // through each of them, so the checks below can fail.
    for trap in ["out", "up/outside", "sib", "a/b/deep"] {
        let escape = jail.home_path().join(trap).join(MARKER);
        assert!(escape.exists(), "trap {trap} is not live");
    }
    for (name, input) in corpus("path_resolve") {
        println!("path_resolve/{name}");
        jail.check(&input);
    }
}
