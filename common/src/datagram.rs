//! How large a QUIC datagram may grow towards a peer, and the socket that sends such datagrams.
//!
//! quinn starts every path at 1,200 bytes and, by default, searches no higher than 1,452: right for
//! Ethernet, but on loopback (MTU 65,536) or a jumbo-frame LAN it makes forty times the packets the
//! path could carry, and each costs its own encryption, header protection, acknowledgement and
//! copies. Measured on loopback here, 1 GiB gets took 2.6–2.9 s with 2.7–2.9 s of client CPU at
//! 1,452 bytes, and 2.1–2.4 s with 1.8–2.1 s at 65,507. So each end lets quinn's path-MTU search go
//! up to what the first hop towards the peer carries, as the kernel's route says
//! ([`largest_datagram_towards`]); the search (binary, probing with padded packets) still settles
//! lower where a later hop is narrower.
//!
//! Larger datagrams need two more things: each endpoint must say it accepts them
//! ([`quic_endpoint`]), and a batch of them must fit one `sendmsg`. quinn hands the socket up to ten
//! datagrams of one size for segmentation offload (GSO), which the kernel refuses past 64 KiB, and
//! quinn-udp drops a refused batch silently; [`BatchLimit`] sends such a batch in pieces instead.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The smallest UDP payload QUIC allows a path to have (RFC 9000 §14).
pub const MIN_DATAGRAM: u16 = 1200;
/// The largest UDP payload there is (65,535 bytes of IPv6 payload less the UDP header).
pub const MAX_DATAGRAM: u16 = 65_527;
/// Where the path-MTU search stops when the route towards the peer cannot be read: quinn's own
/// bound, which fits Ethernet over IPv4 and IPv6.
pub const DEFAULT_DATAGRAM: u16 = 1452;
/// The most one segmentation-offload `sendmsg` may carry: one IPv4 packet's payload less the UDP
/// header (65,535 − 20 − 8), which also fits IPv6.
pub const MAX_BATCH_BYTES: usize = 65_507;
/// How soon the path-MTU search runs again after quinn took losses for a black hole and fell back to
/// 1,200 bytes. quinn's own minute is long: a burst of congestion losses of large packets (a
/// receiver's socket buffer overflowing on loopback) looks like a black hole too, and a whole
/// transfer would then run at the smallest size.
pub const MTU_SEARCH_AFTER_BLACK_HOLE: Duration = Duration::from_millis(250);

/// The largest UDP payload worth searching for towards `peer`: the MTU of the route the kernel would
/// send on, less the IP and UDP headers, within QUIC's bounds; [`DEFAULT_DATAGRAM`] if the route
/// cannot be read.
pub fn largest_datagram_towards(peer: SocketAddr) -> u16 {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let headers = if peer.is_ipv4() { 20 + 8 } else { 40 + 8 };
    match route_mtu(peer) {
        Ok(mtu) => mtu
            .saturating_sub(headers)
            .clamp(u32::from(MIN_DATAGRAM), u32::from(MAX_DATAGRAM))
            .try_into()
            .unwrap_or(MAX_DATAGRAM),
        // No route now (a network going down) or no such option: the size that fits Ethernet.
        Err(_) => DEFAULT_DATAGRAM,
    }
}

/// The MTU of the route towards `peer`, read from a UDP socket connected to it (connecting a UDP
/// socket only picks the route: nothing is sent).
fn route_mtu(peer: SocketAddr) -> io::Result<u32> {
    let any = match peer {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(peer)?;
    let mtu = match peer {
        SocketAddr::V4(_) => rustix::net::sockopt::ip_mtu(&socket)?,
        SocketAddr::V6(_) => rustix::net::sockopt::ipv6_mtu(&socket)?,
    };
    Ok(mtu)
}

/// quinn's path-MTU search, bounded by `largest` bytes of UDP payload.
pub fn mtu_discovery(largest: u16) -> quinn::MtuDiscoveryConfig {
    let mut config = quinn::MtuDiscoveryConfig::default();
    config.upper_bound(largest).black_hole_cooldown(MTU_SEARCH_AFTER_BLACK_HOLE);
    config
}

/// A QUIC endpoint on `socket` that accepts datagrams of up to `largest` bytes and sends its
/// batches through [`BatchLimit`].
pub fn quic_endpoint(
    mut config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
    socket: UdpSocket,
    largest: u16,
) -> io::Result<quinn::Endpoint> {
    config
        .max_udp_payload_size(largest.clamp(MIN_DATAGRAM, MAX_DATAGRAM))
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    quinn::Endpoint::new_with_abstract_socket(
        config,
        server,
        limited_socket(socket)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// `socket` as quinn's endpoints take it, behind a [`BatchLimit`]: for a new endpoint, and for
/// moving one to another socket (`Endpoint::rebind_abstract`).
pub fn limited_socket(socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    let inner = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)?;
    Ok(Arc::new(BatchLimit { inner }))
}

/// A UDP socket that sends a segmentation-offload batch larger than [`MAX_BATCH_BYTES`] as several
/// batches that each fit, instead of letting the kernel refuse it whole.
#[derive(Debug)]
pub struct BatchLimit {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl AsyncUdpSocket for BatchLimit {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(segment) =
            transmit.segment_size.filter(|_| transmit.contents.len() > MAX_BATCH_BYTES)
        else {
            return self.inner.try_send(transmit);
        };
        let per_send = (MAX_BATCH_BYTES / segment).max(1) * segment;
        for (index, part) in transmit.contents.chunks(per_send).enumerate() {
            let piece = Transmit {
                contents: part,
                segment_size: (part.len() > segment).then_some(segment),
                ..*transmit
            };
            match self.inner.try_send(&piece) {
                // quinn would send the whole batch again; the datagrams already gone would go
                // twice. Those not sent count as lost instead, and go again as lost packets do.
                Err(err) if index > 0 && err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                outcome => outcome?,
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_mtu() -> u32 {
        let text = std::fs::read_to_string("/sys/class/net/lo/mtu").expect("lo's MTU");
        text.trim().parse().expect("a number")
    }

    #[test]
    fn the_largest_datagram_follows_the_route() {
        // The kernel caps a route's MTU at an IP packet's largest size.
        let expected = loopback_mtu().min(65_535) - 28;
        let towards = largest_datagram_towards("127.0.0.1:4433".parse().expect("addr"));
        assert_eq!(u32::from(towards), expected);
        // An IPv4 peer seen through a dual-stack socket is the same route.
        let mapped = largest_datagram_towards("[::ffff:127.0.0.1]:4433".parse().expect("addr"));
        assert_eq!(mapped, towards);
    }

    #[tokio::test]
    async fn a_batch_past_the_kernels_bound_arrives_whole() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let limited = limited_socket(UdpSocket::bind("127.0.0.1:0").expect("bind")).expect("wrap");
        if limited.max_transmit_segments() < 10 {
            eprintln!("skipped: no UDP segmentation offload here");
            return;
        }
        let mut poller = limited.clone().create_io_poller();
        std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await.expect("writable");
        // Ten datagrams of 9,000 bytes: 90,000 in one batch, which the kernel refuses whole.
        let segment = 9000;
        let contents: Vec<u8> = (0..10 * segment).map(|i| (i / segment) as u8).collect();
        let transmit = Transmit {
            destination: receiver.local_addr().expect("addr"),
            ecn: None,
            contents: &contents,
            segment_size: Some(segment),
            src_ip: None,
        };
        limited.try_send(&transmit).expect("send");
        let mut buffer = vec![0u8; 65_536];
        for expected in 0..10u8 {
            let len = receiver.recv(&mut buffer).expect("every datagram arrives");
            assert_eq!(len, segment);
            assert!(buffer[..len].iter().all(|&byte| byte == expected), "datagram {expected}");
        }
    }
}
