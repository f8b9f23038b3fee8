//! A lossy UDP relay between a client and a server: it drops, duplicates and reorders datagrams,
//! deterministically (seeded), so that transfers are tested over a bad network on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

/// How bad the network is, in percent of datagrams.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub drop_percent: u32,
    pub duplicate_percent: u32,
    pub reorder_percent: u32,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying from a fresh local port to `server`.
    pub async fn start(server: SocketAddr, impairment: Impairment, seed: u64) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        let addr = front.local_addr().expect("addr");
        let task = tokio::spawn(relay(front, back, server, impairment, seed));
        Relay { addr, task }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn percent(&mut self, chance: u32) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100) < u64::from(chance)
    }
}

async fn relay(
    front: Arc<UdpSocket>,
    back: Arc<UdpSocket>,
    server: SocketAddr,
    bad: Impairment,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let mut client: Option<SocketAddr> = None;
    // One datagram held back per direction, released after the next one (a reordering).
    let mut held_up: Option<Vec<u8>> = None;
    let mut held_down: Option<Vec<u8>> = None;
    let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    loop {
        tokio::select! {
            Ok((n, from)) = front.recv_from(&mut up) => {
                client = Some(from);
                forward(&back, server, &up[..n], &mut held_up, &mut rng, bad).await;
            }
            Ok((n, _)) = back.recv_from(&mut down) => {
                if let Some(client) = client {
                    forward(&front, client, &down[..n], &mut held_down, &mut rng, bad).await;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(5)), if held_up.is_some() || held_down.is_some() => {
                if let Some(datagram) = held_up.take() {
                    let _ = back.send_to(&datagram, server).await;
                }
                if let (Some(datagram), Some(client)) = (held_down.take(), client) {
                    let _ = front.send_to(&datagram, client).await;
                }
            }
        }
    }
}

async fn forward(
    out: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    held: &mut Option<Vec<u8>>,
    rng: &mut Rng,
    bad: Impairment,
) {
    if rng.percent(bad.drop_percent) {
        return;
    }
    if held.is_none() && rng.percent(bad.reorder_percent) {
        *held = Some(datagram.to_vec());
        return;
    }
    let _ = out.send_to(datagram, to).await;
    if rng.percent(bad.duplicate_percent) {
        let _ = out.send_to(datagram, to).await;
    }
    if let Some(earlier) = held.take() {
        let _ = out.send_to(&earlier, to).await;
    }
}
