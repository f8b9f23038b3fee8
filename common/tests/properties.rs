//! Property tests: framing round-trips whatever it is given and refuses what it must, and path
//! normalisation matches a simple model and never leaves the root.

use proptest::prelude::*;
use wharf_common::frame::{FrameError, check_len, decode_body, encode_frame, read_frame};
use wharf_common::limits::{MAX_FRAME_LEN, MAX_NAME_LEN, MAX_PATH_LEN};
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, Entry, EntryKind, Reply, Request, Response};
use wharf_common::transfer::{LaneFrame, Ranges};

fn command() -> impl Strategy<Value = Command> {
    let ranges = proptest::collection::vec((any::<u64>(), 1..1000u64), 0..8).prop_map(|pairs| {
        let mut have = Ranges::new();
        for (start, len) in pairs {
            have.insert(start / 2, start / 2 + len);
        }
        have
    });
    prop_oneof![
        (".*", ".*").prop_map(|(user, password)| Command::Login { user, password }),
        ".*".prop_map(|path| Command::Stat { path }),
        (".*", any::<bool>()).prop_map(|(path, parents)| Command::Mkdir { path, parents }),
        (".*", ".*").prop_map(|(from, to)| Command::Rename { from, to }),
        (".*", ".*").prop_map(|(from, to)| Command::Copy { from, to }),
        (
            (".*", any::<u64>(), ".*", any::<bool>()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<u64>()),
            any::<bool>()
        )
            .prop_map(|((path, size, source, resume), mtime, eager, parents)| {
                Command::Put { path, size, source, resume, mtime, eager, parents }
            }),
        (".*", any::<u32>()).prop_map(|(path, mode)| Command::Chmod { path, mode }),
        proptest::option::of(".*").prop_map(|path| Command::DropPartials { path }),
        Just(Command::Partials),
        ".*".prop_map(|path| Command::Tree { path }),
        ".*".prop_map(|path| Command::Digest { path }),
        (".*", ".*", ".*").prop_map(|(user, key, signature)| Command::LoginKey {
            user,
            key,
            signature
        }),
        (".*", ranges, proptest::option::of(".*")).prop_map(|(path, have, version)| Command::Get {
            path,
            have,
            version
        }),
        any::<u32>().prop_map(|request| Command::Cancel { request }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (".*", any::<u64>(), any::<u32>(), any::<i64>()).prop_map(|(name, size, mode, mtime)| Entry {
        name,
        kind: EntryKind::File,
        size,
        mode,
        mtime,
    })
}

/// Decodes one frame the way the server does: through the async reader, length first.
fn read_one<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, FrameError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = bytes;
        match read_frame(&mut reader).await? {
            Some(body) => decode_body(&body).map(Some),
            None => Ok(None),
        }
    })
}

proptest! {
    #[test]
    fn requests_round_trip(id in 1u32.., cmd in command()) {
        let request = Request { id, cmd };
        let frame = encode_frame(&request).expect("encode");
        prop_assert_eq!(read_one::<Request>(&frame).expect("decode"), Some(request));
    }

    #[test]
    fn replies_round_trip(id in any::<u32>(), entries in proptest::collection::vec(entry(), 0..20)) {
        let response = Response { id, reply: Reply::Entries { entries, done: true } };
        let frame = encode_frame(&response).expect("encode");
        prop_assert_eq!(read_one::<Response>(&frame).expect("decode"), Some(response));
    }

    #[test]
    fn lane_frames_round_trip(offset in any::<u64>(), len in any::<u64>(), sha in "[0-9a-f]{64}") {
        for frame in [LaneFrame::Segment { offset, len }, LaneFrame::End { sha256: sha.clone() }] {
            let bytes = encode_frame(&frame).expect("encode");
            prop_assert_eq!(read_one::<LaneFrame>(&bytes).expect("decode"), Some(frame));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_lengths_are_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = read_one::<Request>(&bytes);
        let _ = read_one::<Response>(&bytes);
        if bytes.len() >= 4 {
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            prop_assert_eq!(check_len(len).is_ok(), (1..=MAX_FRAME_LEN).contains(&len));
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_any_body(len in (MAX_FRAME_LEN + 1)..) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x90; 16]);
        prop_assert!(read_one::<Request>(&bytes).is_err());
    }

    #[test]
    fn paths_normalise_like_a_stack_and_stay_under_the_root(
        parts in proptest::collection::vec(
            prop_oneof!["\\.\\.", "\\.", "", "[a-z]{1,3}", "[^/\\\\\u{0}]{1,8}"],
            0..12,
        ),
        absolute in any::<bool>(),
        cwd in proptest::collection::vec("[a-z]{1,3}", 0..4),
    ) {
        let raw = format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"));
        let base = RemotePath::parse(&format!("/{}", cwd.join("/"))).expect("cwd");
        // A leading empty part makes the path absolute too, as in a shell.
        let mut model: Vec<String> = if raw.starts_with('/') { Vec::new() } else { cwd.clone() };
        for part in &parts {
            match part.as_str() {
                "" | "." => {}
                ".." => {
                    model.pop();
                }
                name => model.push(name.to_owned()),
            }
        }
        let expected = format!("/{}", model.join("/"));
        match base.join(&raw) {
            Ok(path) => {
                prop_assert_eq!(path.as_str(), expected.as_str());
                prop_assert!(path.starts_with(&RemotePath::root()));
                prop_assert!(path.components().all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert_eq!(RemotePath::parse(path.as_str()).expect("idempotent"), path);
            }
            Err(_) => prop_assert!(
                raw.len() > MAX_PATH_LEN
                    || parts.iter().any(|p| p.len() > MAX_NAME_LEN)
                    || expected.len() > MAX_PATH_LEN
            ),
        }
    }
}
