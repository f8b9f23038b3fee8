//! The router between the two namespaces of an emulated WAN: a TUN device in each, and for each
//! direction a thread that reads IP packets from one device and a thread that writes them into the
//! other once the link would have delivered them.
//!
//! The link is modelled the way netem and a router's interface queue behave together: a packet is
//! lost at random (seeded, so runs repeat) or queued behind the packets already waiting for the
//! bottleneck; the queue holds at most `queue_bytes` (tail drop, as a plain FIFO does); a packet
//! leaves the bottleneck after its own serialisation time at the link's rate, and arrives one
//! one-way delay later. Everything is computed on arrival, so the writer only sleeps until each
//! packet's delivery time; departures are in order, so one FIFO per direction suffices.

use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Name of the TUN device in each namespace (names are per namespace, so both can use it).
pub const DEVICE: &str = "wan0";

/// Largest packet read from a device; the devices' MTU is 1500.
const MAX_PACKET: usize = 65_536;

/// One direction of the link.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub one_way_delay: Duration,
    /// Bits per second at the bottleneck; `None` for no bottleneck at all.
    pub rate_bps: Option<u64>,
    /// Fraction of packets lost at random, 0.0 to 1.0.
    pub loss: f64,
    /// Bytes the bottleneck's queue holds before it drops arrivals.
    pub queue_bytes: u64,
    pub seed: u64,
}

/// What one direction carried and dropped, counted as it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
    pub queue_drops: AtomicU64,
}

impl Counters {
    /// `packets bytes lost queue_drops`, the router's report format.
    pub fn report(&self) -> String {
        format!(
            "{} {} {} {}",
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.queue_drops.load(Ordering::Relaxed)
        )
    }
}

/// Opens the TUN device [`DEVICE`] inside the network namespace `namespace` (a name under
/// `/run/netns`, as `ip netns add` makes). A device belongs to the namespace of the thread that
/// creates it, so a short-lived thread enters the namespace, creates it, and ends.
pub fn open_device(namespace: &str) -> anyhow::Result<Arc<tun::Device>> {
    let path = format!("/run/netns/{namespace}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<Arc<tun::Device>> {
                let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .with_context(|| format!("enter namespace {namespace}"))?;
                let mut config = tun::Configuration::default();
                config.tun_name(DEVICE);
                config.platform_config(|platform| {
                    // Addresses are given with `ip` by whoever made the namespaces.
                    platform.ensure_root_privileges(false);
                });
                let device = tun::create(&config).context("create TUN device")?;
                Ok(Arc::new(device))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("device thread panicked"))?
    })
}

/// A seeded xorshift generator: the loss pattern repeats run to run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The bottleneck: when it is next free, from which the backlog in bytes follows.
struct Bottleneck {
    rate_bytes_per_sec: f64,
    free_at: Instant,
    queue_bytes: f64,
}

impl Bottleneck {
    /// When a packet of `len` bytes arriving `now` has left the bottleneck, or `None` if the
    /// queue is full and it is dropped.
    fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let backlog =
            self.free_at.saturating_duration_since(now).as_secs_f64() * self.rate_bytes_per_sec;
        if backlog + len as f64 > self.queue_bytes {
            return None;
        }
        let start = self.free_at.max(now);
        self.free_at = start + Duration::from_secs_f64(len as f64 / self.rate_bytes_per_sec);
        Some(self.free_at)
    }
}

/// Carries packets from `from` to `to` with `shape`, until the process ends.
pub fn forward(
    from: Arc<tun::Device>,
    to: Arc<tun::Device>,
    shape: Shape,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&shape.loss) {
        bail!("loss must be between 0 and 1, not {}", shape.loss);
    }
    let (queue, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || deliver(&to, &due));
    let mut dice = Dice(shape.seed | 1);
    let mut bottleneck = shape.rate_bps.map(|bps| Bottleneck {
        rate_bytes_per_sec: bps as f64 / 8.0,
        free_at: Instant::now(),
        queue_bytes: shape.queue_bytes as f64,
    });
    let mut buffer = vec![0u8; MAX_PACKET];
    loop {
        let len = from.recv(&mut buffer).context("read from TUN device")?;
        let now = Instant::now();
        if shape.loss > 0.0 && dice.roll() < shape.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let departs = match bottleneck.as_mut() {
            Some(link) => match link.admit(now, len) {
                Some(departs) => departs,
                None => {
                    counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
            None => now,
        };
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
        if queue.send((departs + shape.one_way_delay, buffer[..len].to_vec())).is_err() {
            bail!("delivery thread ended");
        }
    }
}

/// Writes each packet into `to` at its delivery time. Times arrive in order.
fn deliver(to: &tun::Device, due: &mpsc::Receiver<(Instant, Vec<u8>)>) {
    while let Ok((at, packet)) = due.recv() {
        let wait = at.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        // A packet the kernel refuses (its device went down at the end) is simply lost.
        let _ = to.send(&packet);
    }
}
