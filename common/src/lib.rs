//! What the server and the client share on top of the wire ([`wharf_wire`], re-exported here
//! module by module): the transfer engine and the QUIC plumbing.
//!
//! - [`transfer`]: moving one file's bytes over lanes, verified by SHA-256, and routing lanes.
//! - [`frame`]: reading and writing frames on async streams.
//! - [`blocking`]: the one way blocking work (file I/O, Argon2) leaves the async runtime, bounded.
//! - [`claims`]: exclusive claims on a partial file, so two transfers never write the same one.
//! - [`congestion`]: the loss-tolerant congestion controller.
//! - [`release`]: freeing a replaced or removed file's blocks after the reply.
//! - [`tls`]: certificate fingerprints, rustls and quinn configuration.
//! - [`net`]: UDP sockets with explicitly sized buffers, and the QUIC transport limits.
//!
//! `PROTOCOL.md` beside this crate describes the wire in prose, for implementers in other languages.

pub mod blocking;
pub mod claims;
pub mod congestion;
pub mod datagram;
pub mod frame;
pub mod net;
pub mod release;
pub mod tls;
pub mod transfer;

pub use wharf_wire::{hash, keys, limits, path, proto, units};
