//! The checks behind the frame fuzz target (`fuzz/`, cargo-fuzz on a nightly toolchain), which its
//! corpus test also runs with every `cargo test`. They need nothing but this crate.

use crate::frame::{check_len, decode_body, encode_frame};
use crate::lane::LaneFrame;
use crate::proto::{Request, Response};

/// Frame decoding: any input gives a value or an error, never a panic, and an over-long length is
/// refused before the body is looked at. A request that decodes encodes back to the same request.
pub fn frame_decode(data: &[u8]) {
    let Some((prefix, body)) = data.split_first_chunk::<4>() else { return };
    let len = u32::from_be_bytes(*prefix);
    let refused = check_len(len).is_err();
    assert_eq!(
        refused,
        len == 0 || len > crate::limits::MAX_FRAME_LEN,
        "length {len}: refused exactly when empty or over the bound"
    );
    if refused {
        return;
    }
    if let Ok(request) = decode_body::<Request>(body) {
        let again = encode_frame(&request).expect("a decoded request encodes");
        let decoded: Request = decode_body(&again[4..]).expect("and decodes again");
        assert_eq!(decoded, request);
    }
    let _ = decode_body::<Response>(body);
    let _ = decode_body::<LaneFrame>(body);
}
