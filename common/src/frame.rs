//! Length-prefixed MessagePack frames, read from and written to async streams. The frame format
//! and its checks are the wire crate's ([`wharf_wire::frame`]).
//!
//! Reading happens in two phases, as in mini-redis: first the length is read and checked against
//! the limit, and only then is the body read and decoded. A clean end of stream *between* frames is not an
//! error ([`read_frame`] returns `None`); an end of stream inside a frame is [`FrameError::Truncated`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use wharf_wire::frame::*;

/// Reads one frame body. `Ok(None)` means the stream ended cleanly before a new frame began.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = check_len(u32::from_be_bytes(prefix))?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(|err| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(err),
    })?;
    Ok(Some(body))
}

/// Reads and decodes one message. `Ok(None)` means a clean end of stream.
pub async fn read_message<T, R>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    match read_frame(reader).await? {
        Some(body) => decode_body(&body).map(Some),
        None => Ok(None),
    }
}

/// Encodes and writes one message as a single frame.
pub async fn write_message<T, W>(writer: &mut W, msg: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = encode_frame(msg)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_FRAME_LEN;
    use crate::proto::{Command, Request};

    fn request() -> Request {
        Request { id: 7, cmd: Command::Stat { path: "/a b".into() } }
    }

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let mut wire = Vec::new();
        write_message(&mut wire, &request()).await.expect("encode");
        write_message(&mut wire, &request()).await.expect("encode");
        let mut reader = &wire[..];
        for _ in 0..2 {
            let got: Option<Request> = read_message(&mut reader).await.expect("decode");
            assert_eq!(got, Some(request()));
        }
        let end: Option<Request> = read_message(&mut reader).await.expect("clean eof");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn eof_inside_prefix_or_body_is_truncated() {
        let frame = encode_frame(&request()).expect("encode");
        for cut in [2, 4, frame.len() - 1] {
            let mut reader = &frame[..cut];
            let err = read_frame(&mut reader).await.expect_err("truncated");
            assert!(matches!(err, FrameError::Truncated), "cut at {cut}: {err}");
        }
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading_the_body() {
        let mut wire = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
        wire.extend_from_slice(b"never read");
        let mut reader = &wire[..];
        let err = read_frame(&mut reader).await.expect_err("too large");
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert_eq!(reader, b"never read", "body must not be consumed");
        assert!(matches!(check_len(u32::MAX), Err(FrameError::TooLarge { .. })));
        assert!(matches!(check_len(0), Err(FrameError::Empty)));
    }

    #[test]
    fn garbage_and_deep_nesting_are_decode_errors() {
        assert!(decode_body::<Request>(&[0xc1, 0xc1, 0xc1]).is_err());
        let deep = vec![0x91u8; 100_000];
        assert!(matches!(decode_body::<Request>(&deep), Err(FrameError::Decode(_))));
    }

    #[test]
    fn wire_shape_is_a_named_map() {
        // The documented shape: {"id": 7, "cmd": {"op": "stat", "path": "/a b"}}.
        let frame = encode_frame(&request()).expect("encode");
        let body = &frame[4..];
        assert_eq!(body[0], 0x82, "map of two entries");
        assert_eq!(&body[1..4], b"\xa2id");
        assert!(body.windows(4).any(|w| w == b"\xa2op\xa4"), "tag field `op`");
    }
}
