//! Checks that `PROTOCOL.md` matches the code: its example frames are what the encoder produces, and
//! every error code is documented.

use crate::frame::encode_frame;
use crate::lane::{MAX_LANES, PIECE_SIZE};
use crate::limits::{
    LIST_PAGE_ENTRIES, MAX_DECODE_DEPTH, MAX_FRAME_LEN, MAX_NAME_LEN, MAX_PASSWORD_LEN,
    MAX_PATH_LEN, MAX_USER_LEN,
};
use crate::proto::{CloseCode, Command, ErrorCode, QuotaInfo, Reply, Request, Response};
use crate::ranges::MAX_RANGES;

const PROTOCOL_MD: &str = include_str!("../../PROTOCOL.md");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn assert_documented(frame: Vec<u8>) {
    let line = hex(&frame);
    assert!(PROTOCOL_MD.contains(&line), "PROTOCOL.md lacks the frame:\n{line}");
}

#[test]
fn example_frames_are_byte_exact() {
    let login = Command::Login { user: "ann".into(), password: "secret".into() };
    assert_documented(encode_frame(&Request { id: 1, cmd: login }).expect("encode"));
    assert_documented(encode_frame(&Request { id: 2, cmd: Command::Quota }).expect("encode"));
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let login_key = Command::LoginKey {
        user: "ann".into(),
        key: base64.encode([1u8; crate::keys::PUBLIC_KEY_LEN]),
        signature: base64.encode([2u8; crate::keys::SIGNATURE_LEN]),
    };
    assert_documented(encode_frame(&Request { id: 1, cmd: login_key }).expect("encode"));
    let chmod = Command::Chmod { path: "/a".into(), mode: 0o600 };
    assert_documented(encode_frame(&Request { id: 3, cmd: chmod }).expect("encode"));
    let copy = Command::Copy { from: "/a".into(), to: "/b".into() };
    assert_documented(encode_frame(&Request { id: 4, cmd: copy }).expect("encode"));
    let error = Reply::error(ErrorCode::NotFound, "/x: no such file or directory");
    assert_documented(encode_frame(&Response { id: 2, reply: error }).expect("encode"));
    let quota = QuotaInfo { used: 0, reserved: 0, limit: None };
    let logged_in =
        Reply::LoggedIn { user: "ann".into(), quota: Some(quota), requests_in_flight: 128 };
    assert_documented(encode_frame(&Response { id: 1, reply: logged_in }).expect("encode"));
    let quota = Reply::Quota { quota: QuotaInfo { used: 5, reserved: 0, limit: None } };
    assert_documented(encode_frame(&Response { id: 2, reply: quota }).expect("encode"));
}

#[test]
fn lane_example_is_byte_exact() {
    use crate::hash::Sha256Digest;
    use crate::lane::{LaneFrame, StreamHeader};
    assert_documented(encode_frame(&StreamHeader::of(1)).expect("encode"));
    assert_documented(encode_frame(&StreamHeader::eager(1)).expect("encode"));
    assert_documented(encode_frame(&LaneFrame::Segment { offset: 0, len: 3 }).expect("encode"));
    assert_documented(b"abc".to_vec());
    let sha256 = Sha256Digest::of(b"abc").to_string();
    assert_documented(encode_frame(&LaneFrame::End { sha256 }).expect("encode"));
}

#[test]
fn only_pages_notices_and_transfer_announcements_are_non_final() {
    let ranges = crate::ranges::Ranges::full(9);
    let transfer = Reply::Transfer { transfer: 1, size: 9, version: "v".into(), ranges, lanes: 1 };
    let page = Reply::Entries { entries: Vec::new(), done: false };
    let notice = Reply::Notice { message: "bye".into() };
    assert!(!transfer.is_final() && !page.is_final() && !notice.is_final());
    let last_page = Reply::Entries { entries: Vec::new(), done: true };
    let done = Reply::Done { size: 9, sha256: "0".repeat(64), version: None };
    assert!(last_page.is_final() && done.is_final() && Reply::Ok.is_final());
}

#[test]
fn every_error_code_is_documented() {
    let codes = [
        ErrorCode::NotFound,
        ErrorCode::PermissionDenied,
        ErrorCode::Exists,
        ErrorCode::NotADirectory,
        ErrorCode::IsADirectory,
        ErrorCode::NotEmpty,
        ErrorCode::InvalidPath,
        ErrorCode::QuotaExceeded,
        ErrorCode::AuthFailed,
        ErrorCode::TooManyAttempts,
        ErrorCode::NotLoggedIn,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::BadRequest,
        ErrorCode::DuplicateId,
        ErrorCode::Busy,
        ErrorCode::ShuttingDown,
        ErrorCode::Io,
        ErrorCode::ChecksumMismatch,
        ErrorCode::TransferFailed,
        ErrorCode::Cancelled,
    ];
    for code in codes {
        assert!(
            PROTOCOL_MD.contains(&format!("| `{code}` |")),
            "PROTOCOL.md lacks error code {code}"
        );
        let encoded = rmp_serde::to_vec(&code).expect("encode");
        let wire_name: String = rmp_serde::from_slice(&encoded).expect("a string on the wire");
        assert_eq!(wire_name, code.as_str(), "as_str and serde agree");
        let decoded: ErrorCode = rmp_serde::from_slice(&encoded).expect("decode");
        assert_eq!(decoded, code);
    }
    let unknown: ErrorCode =
        rmp_serde::from_slice(&rmp_serde::to_vec("new_code").expect("encode")).expect("decode");
    assert_eq!(unknown, ErrorCode::Other);
}

#[test]
fn every_close_code_is_documented() {
    for code in 0..16u64 {
        let Some(close) = CloseCode::from_u64(code) else { continue };
        assert!(
            PROTOCOL_MD.contains(&format!("\n| {} | ", close as u64)),
            "PROTOCOL.md lacks close code {code} ({close:?})"
        );
    }
    assert!(CloseCode::from_u64(7).is_some(), "the table's last code is known");
}

/// `1048576` as `1,048,576`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_limits_table_quotes_the_constants() {
    let rows = [
        format!("| frame body | 1 .. {} bytes | `MAX_FRAME_LEN` |", grouped(MAX_FRAME_LEN.into())),
        format!("| MessagePack nesting | {MAX_DECODE_DEPTH} | `MAX_DECODE_DEPTH` |"),
        format!("| path | {MAX_PATH_LEN} bytes | `MAX_PATH_LEN` |"),
        format!("| path component | {MAX_NAME_LEN} bytes | `MAX_NAME_LEN` |"),
        format!("| password | {MAX_PASSWORD_LEN} bytes | `MAX_PASSWORD_LEN` |"),
        format!("| listing page | {LIST_PAGE_ENTRIES} entries | `LIST_PAGE_ENTRIES` |"),
        format!(
            "| lanes per transfer | 1 to {MAX_LANES} | `MAX_LANES`, `transfer.segment_lanes` |"
        ),
        format!("| piece | {} MiB | `PIECE_SIZE` |", PIECE_SIZE >> 20),
        format!("| ranges in a set | {MAX_RANGES} | `MAX_RANGES` |"),
    ];
    for row in rows {
        assert!(PROTOCOL_MD.contains(&row), "PROTOCOL.md's limits table lacks:\n{row}");
    }
    assert!(
        PROTOCOL_MD.contains(&format!("| user name | {MAX_USER_LEN} bytes of")),
        "user name limit"
    );
}
