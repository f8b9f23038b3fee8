//! UDP sockets and QUIC transport settings shared by the server, the client and the benchmark.
//!
//! Every transport limit is explicit here rather than left to quinn's defaults: quinn's connection
//! receive window is unbounded by default, and the kernel's default 208 KiB socket buffers made quinn
//! drop packets on loopback on our 2-core machine (262 MiB/s against 389 MiB/s with 4 MiB).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

/// A close code as QUIC carries it.
pub trait CloseCodeExt {
    fn varint(self) -> quinn::VarInt;
}

impl CloseCodeExt for crate::proto::CloseCode {
    fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }
}

/// The control stream's priority on both ends, above every lane's (`transfer::order`): quinn sends
/// buffered data of higher priority first, so a reply or request never waits behind lane data
/// buffered with it. (A download's lanes must not use up the client's receive window ahead of the
/// reply that tells it to read them; an eager upload's lane must not hold up the request that says
/// what it is.)
pub const CONTROL_PRIORITY: i32 = i32::MAX;

/// QUIC transport limits. The server reads them from `[transport]` in `wharfd.toml`; the client uses
/// the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// Bytes asked of the kernel for each UDP socket buffer (receive and send).
    pub socket_buffer: usize,
    /// Bidirectional streams the peer may have open at once (the control stream is one).
    pub max_bidi_streams: u32,
    /// Unidirectional streams the peer may have open at once (one per file or range in flight).
    pub max_uni_streams: u32,
    /// Bytes the peer may have in flight on the whole connection before it must wait for us to read.
    pub receive_window: u64,
    /// Bytes the peer may have in flight on one stream.
    pub stream_receive_window: u64,
    /// Bytes we may have in flight towards the peer.
    pub send_window: u64,
    /// Seconds of silence after which a connection is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds between keep-alive packets sent by the client, well under the idle timeout.
    pub keep_alive_secs: u64,
    /// How the sender paces itself: each end chooses for what it sends.
    pub congestion: Congestion,
}

/// A congestion controller: quinn's three, or ours.
///
/// `tolerant` is the default, from what was measured across the emulated WAN (the README's
/// benchmark): quinn's Cubic fell to 1.2 MiB/s at 0.1 % random loss over 50 ms and 200 Mbit/s;
/// quinn's BBR kept its rate under loss but overflowed the bottleneck's queue (more packets dropped
/// than delivered) and starved an sftp download sharing it; `tolerant` (Cubic that ignores losses
/// that do not look like congestion, [`crate::congestion`]) moved 87–90 % of the link on the `wan`,
/// `lossy` and `far` profiles with few drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// Cubic that takes a loss for congestion only when the queue builds or many packets are
    /// lost at once ([`crate::congestion`]).
    #[default]
    Tolerant,
    Bbr,
    Cubic,
    NewReno,
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "bbr" => Ok(Congestion::Bbr),
            "cubic" => Ok(Congestion::Cubic),
            "newreno" => Ok(Congestion::NewReno),
            "tolerant" => Ok(Congestion::Tolerant),
            _ => Err(format!(
                "unknown congestion controller {name:?}: tolerant, bbr, cubic or newreno"
            )),
        }
    }
}

impl Congestion {
    fn factory(self) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
        match self {
            Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
            Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
            Congestion::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
            Congestion::Tolerant => Arc::new(crate::congestion::TolerantConfig::default()),
        }
    }
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            socket_buffer: 4 * 1024 * 1024,
            max_bidi_streams: 4,
            max_uni_streams: crate::limits::DEFAULT_MAX_UNI_STREAMS,
            receive_window: 32 * 1024 * 1024,
            stream_receive_window: 8 * 1024 * 1024,
            send_window: 32 * 1024 * 1024,
            idle_timeout_secs: 30,
            keep_alive_secs: 10,
            congestion: Congestion::default(),
        }
    }
}

impl TransportSettings {
    /// The quinn transport configuration for these limits. `keep_alive` is for the client side;
    /// `largest_datagram` bounds the path-MTU search ([`crate::datagram::largest_datagram_towards`]).
    pub fn transport_config(
        &self,
        keep_alive: bool,
        largest_datagram: u16,
    ) -> quinn::TransportConfig {
        let mut config = quinn::TransportConfig::default();
        config
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_bidi_streams))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(self.max_uni_streams))
            .receive_window(varint(self.receive_window))
            .stream_receive_window(varint(self.stream_receive_window))
            .send_window(self.send_window)
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(self.idle_timeout_secs))
                    .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::MAX)),
            ))
            .congestion_controller_factory(self.congestion.factory())
            .mtu_discovery_config(Some(crate::datagram::mtu_discovery(largest_datagram)));
        if keep_alive {
            config.keep_alive_interval(Some(Duration::from_secs(self.keep_alive_secs)));
        }
        config
    }
}

fn varint(value: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(value).unwrap_or(quinn::VarInt::MAX)
}

/// A bound UDP socket and the buffer sizes the kernel actually granted.
#[derive(Debug)]
pub struct BoundSocket {
    pub socket: UdpSocket,
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

/// Binds a UDP socket on `addr` with both buffers asked to be `buffer` bytes. The kernel may grant
/// less (Linux caps at `net.core.rmem_max` / `wmem_max`); the granted sizes are returned for logging.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<BoundSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped traffic too when bound to [::].
        let _ = socket.set_only_v6(false);
    }
    // A refused size is not fatal: the granted size is logged and the socket still works.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    let recv_buffer = socket.recv_buffer_size()?;
    let send_buffer = socket.send_buffer_size()?;
    Ok(BoundSocket { socket: socket.into(), recv_buffer, send_buffer })
}
