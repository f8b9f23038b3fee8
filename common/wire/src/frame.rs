//! Length-prefixed MessagePack frames.
//!
//! A frame is a big-endian `u32` body length followed by that many bytes of MessagePack. Reading
//! happens in two phases, as in mini-redis: first the length is read and checked against the limit
//! ([`check_len`]), and only then is the body read and decoded ([`decode_body`]). Reading from a
//! stream is the runtime's business (`wharf_common::frame::read_frame`); this is what it checks.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::{MAX_DECODE_DEPTH, MAX_FRAME_LEN};

/// Why a frame could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announced more than the limit; nothing of the body was read.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    /// The length prefix was zero; an empty body is never a valid message.
    #[error("empty frame")]
    Empty,
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The body is not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The message could not be encoded (a bug, or a message over the limit).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The underlying stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one complete frame: length prefix and body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write_named(&mut buf, msg)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge { len: len as u64, max: MAX_FRAME_LEN });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Decodes one frame body, with MessagePack nesting bounded by [`MAX_DECODE_DEPTH`].
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let mut de = rmp_serde::Deserializer::new(body);
    de.set_max_depth(MAX_DECODE_DEPTH);
    let msg = T::deserialize(&mut de)?;
    Ok(msg)
}

/// Checks a length prefix against the limit.
pub fn check_len(len: u32) -> Result<usize, FrameError> {
    match len {
        0 => Err(FrameError::Empty),
        len if len > MAX_FRAME_LEN => {
            Err(FrameError::TooLarge { len: len.into(), max: MAX_FRAME_LEN })
        }
        len => Ok(len as usize),
    }
}
