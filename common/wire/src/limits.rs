//! Protocol-level limits. Both ends enforce them; `PROTOCOL.md` quotes each one.
//!
//! Limits that an operator may want to tune (connections, timeouts, windows) live in the server's
//! configuration instead; these are the ones a peer must know to speak the protocol at all.

/// ALPN protocol identifier negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"wharf/1";

/// UDP port the server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4433;

/// Largest control frame body, in bytes, either direction. Checked before any byte is decoded.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

/// Deepest MessagePack nesting a decoder accepts. Real messages nest at most four levels.
pub const MAX_DECODE_DEPTH: usize = 16;

/// Longest remote path, in bytes of UTF-8, as sent on the wire.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest single path component, in bytes (the Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Longest user name, in bytes.
pub const MAX_USER_LEN: usize = 32;

/// Longest password, in bytes. Bounds the work a login can ask of Argon2.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Most directory entries in one `entries` page of a listing.
pub const LIST_PAGE_ENTRIES: usize = 512;

/// Request id reserved for messages the server sends unprompted (notices).
pub const NOTICE_ID: u32 = 0;

/// Transfer streams (unidirectional) each end lets its peer have open at once, unless configured
/// otherwise: one per small file or lane in flight. Lanes that arrive ahead of the reply naming them
/// are held up to this many, since no more can be open at once. 512, so that a client can keep
/// 480 small files in flight across a long path (`wharf`'s `SMALL_FILES_IN_FLIGHT`).
pub const DEFAULT_MAX_UNI_STREAMS: u32 = 512;

/// Requests in flight every server allows a connection: a client may keep this many in flight
/// before the `logged_in` answer tells it the server's own limit (which may not be lower), and
/// should assume it from servers whose answer does not say.
pub const MIN_REQUESTS_IN_FLIGHT: usize = 32;

/// Largest file a `put` may send eagerly, on one lane opened at once without waiting for the
/// `transfer` reply: for small files, that reply's round trip is most of their cost.
pub const MAX_EAGER_SIZE: u64 = 256 * 1024;
