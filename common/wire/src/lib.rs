//! The parts of wharf that the server and the client must agree on byte for byte, and nothing
//! else: no runtime, no network, no files. `wharf-common` builds the transfer engine and the QUIC
//! plumbing on it, as quinn builds on quinn-proto; the fuzz targets and the `PROTOCOL.md` test use
//! this crate alone.
//!
//! - [`limits`]: every protocol-level bound (frame size, path length, page size) as a named constant.
//! - [`frame`]: length-prefixed MessagePack framing, with the length checked before anything is decoded.
//! - [`proto`]: the messages of the control stream and the typed error codes.
//! - [`lane`]: a transfer's plan and the frames its lanes carry.
//! - [`ranges`]: sets of byte ranges (what a resume has, what a sender owes).
//! - [`path`]: the normalisation of remote paths, so that both ends agree on what `/a/../b` means.
//! - [`hash`]: SHA-256 digests as the wire spells them.
//! - [`keys`]: Ed25519 key logins bound to the TLS session.
//! - [`units`]: byte counts for people.
//!
//! `PROTOCOL.md` (in `common/`) describes the same wire in prose, for implementers in other languages.

pub mod frame;
pub mod fuzzing;
pub mod hash;
pub mod keys;
pub mod lane;
pub mod limits;
pub mod path;
pub mod proto;
#[cfg(test)]
mod proto_doc;
pub mod ranges;
pub mod units;
