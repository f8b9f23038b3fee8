//! The parts of wharf that the server and the client must agree on byte for byte.
//!
//! - [`limits`]: every protocol-level bound (frame size, path length, page size) as a named constant.
//! - [`frame`]: length-prefixed MessagePack framing, with the length checked before anything is decoded.
//! - [`proto`]: the messages of the control stream and the typed error codes.
//! - [`path`]: the normalisation of remote paths, so that both ends agree on what `/a/../b` means.
//! - [`tls`]: certificate fingerprints, rustls and quinn configuration.
//! - [`keys`]: Ed25519 key logins bound to the TLS session.
//! - [`net`]: UDP sockets with explicitly sized buffers, and the QUIC transport limits.
//! - [`units`]: byte counts for people.
//!
//! `PROTOCOL.md` beside this crate describes the same wire in prose, for implementers in other languages.

pub mod claims;
pub mod congestion;
pub mod frame;
pub mod hash;
pub mod keys;
pub mod limits;
pub mod net;
pub mod path;
pub mod proto;
#[cfg(test)]
mod proto_doc;
pub mod tls;
pub mod transfer;
pub mod units;
