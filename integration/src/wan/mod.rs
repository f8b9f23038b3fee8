//! An emulated wide-area network on this one machine: two network namespaces, one for servers and
//! one for clients, joined only by a router process ([`router`], run as the `wanlink` binary) that
//! delays, rate-limits, queues and loses packets like a long path with a bottleneck. Everything
//! that crosses — QUIC for wharf, TCP for sftp and rsync — crosses the same path.
//!
//! The namespaces and their addresses exist only while a [`Wan`] lives; dropping it stops the
//! router and deletes both namespaces.

pub mod router;

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::binary;

/// The server side's address, inside the server namespace only.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The client side's address, inside the client namespace only.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

/// A path's character: the same both ways.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub round_trip: Duration,
    /// Bits per second at the bottleneck; `None` for no bottleneck (the router's own ceiling).
    pub rate_bps: Option<u64>,
    /// Fraction of packets lost at random in each direction.
    pub loss: f64,
}

const MBIT: u64 = 1_000_000;
/// Where a network namespace's TCP congestion controller is set.
pub const TCP_CONGESTION: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
/// The controllers a namespace other than the host's may make its default: the host's list, which
/// some hosts keep short (one here held `reno bbr`, and Cubic could not be set).
pub const TCP_ALLOWED_CONGESTION: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";

impl Profile {
    /// A continental path: 50 ms, 200 Mbit/s, no loss.
    pub const WAN: Profile =
        Profile { name: "wan", round_trip: ms(50), rate_bps: Some(200 * MBIT), loss: 0.0 };
    /// The same path losing one packet in 200.
    pub const LOSSY: Profile =
        Profile { name: "lossy", round_trip: ms(50), rate_bps: Some(200 * MBIT), loss: 0.005 };
    /// An intercontinental path: 150 ms, 100 Mbit/s, 1 % loss.
    pub const FAR: Profile =
        Profile { name: "far", round_trip: ms(150), rate_bps: Some(100 * MBIT), loss: 0.01 };
    /// No delay, no bottleneck, no loss: what the router itself can carry.
    pub const UNSHAPED: Profile =
        Profile { name: "unshaped", round_trip: ms(0), rate_bps: None, loss: 0.0 };

    /// The bottleneck queue: one bandwidth-delay product, as the measurements used (and
    /// at least 64 packets, so that a path without delay still queues a burst).
    pub fn queue_bytes(&self) -> u64 {
        let bdp = self.rate_bps.unwrap_or(0) / 8 * self.round_trip.as_millis() as u64 / 1000;
        bdp.max(64 * 1500)
    }

    /// The link's rate in bytes per second, for rates quoted as a share of it.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        self.rate_bps.map(|bps| bps as f64 / 8.0)
    }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Why a WAN cannot be made here, if it cannot (not root, no `ip`, no TUN device): tests skip with
/// this message rather than fail.
pub fn unavailable() -> Option<String> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

/// Two namespaces joined by a running router.
pub struct Wan {
    server_ns: String,
    client_ns: String,
    router: Child,
    control: Option<(ChildStdin, BufReader<ChildStdout>)>,
    pub profile: Profile,
}

/// What the router has carried so far, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Carried {
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub queue_drops: u64,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Wan {
    /// Makes the namespaces, starts the router with `profile` and `seed`, and gives each side its
    /// address.
    pub fn new(profile: Profile, seed: u64) -> anyhow::Result<Wan> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!("wharf{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (server_ns, client_ns) = (format!("{tag}s"), format!("{tag}c"));
        ip(&["netns", "add", &server_ns])?;
        if let Err(err) = ip(&["netns", "add", &client_ns]) {
            let _ = ip(&["netns", "del", &server_ns]);
            return Err(err);
        }
        let half = profile.round_trip / 2;
        let mut command = Command::new(binary("wanlink"));
        command
            .args(["--server-ns", &server_ns, "--client-ns", &client_ns])
            .args(["--delay-us", &half.as_micros().to_string()])
            .args(["--loss", &profile.loss.to_string(), "--seed", &seed.to_string()])
            .args(["--queue-bytes", &profile.queue_bytes().to_string()]);
        if let Some(bps) = profile.rate_bps {
            command.args(["--rate-bps", &bps.to_string()]);
        }
        let spawned = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut router = match spawned.context("start wanlink") {
            Ok(router) => router,
            Err(err) => {
                let _ = ip(&["netns", "del", &server_ns]);
                let _ = ip(&["netns", "del", &client_ns]);
                return Err(err);
            }
        };
        let stdin = router.stdin.take().context("router stdin")?;
        let stdout = BufReader::new(router.stdout.take().context("router stdout")?);
        let mut wan = Wan { server_ns, client_ns, router, control: Some((stdin, stdout)), profile };
        wan.expect_line("ready")?;
        for (ns, addr) in [(&wan.server_ns, SERVER_IP), (&wan.client_ns, CLIENT_IP)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", router::DEVICE])?;
            ip(&["-n", ns, "link", "set", router::DEVICE, "up"])?;
        }
        Ok(wan)
    }

    fn expect_line(&mut self, expected: &str) -> anyhow::Result<String> {
        let (_, stdout) = self.control.as_mut().context("router gone")?;
        let mut line = String::new();
        stdout.read_line(&mut line).context("read from router")?;
        let line = line.trim_end().to_owned();
        if !line.starts_with(expected) {
            bail!("router said {line:?}, expected {expected:?}");
        }
        Ok(line)
    }

    /// The server's address, reachable from the client namespace.
    pub fn server_ip(&self) -> IpAddr {
        IpAddr::V4(SERVER_IP)
    }

    /// `program` to be run inside the server namespace.
    pub fn in_server(&self, program: impl AsRef<OsStr>) -> Command {
        in_namespace(&self.server_ns, program)
    }

    /// `program` to be run inside the client namespace.
    pub fn in_client(&self, program: impl AsRef<OsStr>) -> Command {
        in_namespace(&self.client_ns, program)
    }

    /// Sets the TCP congestion controller of both namespaces (each network namespace has its
    /// own; a new one starts with the host's), so that the TCP baselines use `name` whatever the
    /// host's default is. `name` must be one the kernel has
    /// (`/proc/sys/net/ipv4/tcp_available_congestion_control`) and the host allows
    /// ([`TCP_ALLOWED_CONGESTION`]).
    pub fn set_tcp_congestion(&self, name: &str) -> anyhow::Result<()> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("not a TCP congestion controller's name: {name:?}");
        }
        for ns in [&self.server_ns, &self.client_ns] {
            // `sysctl -w` refuses here where a plain write succeeds.
            let out = in_namespace(ns, "sh")
                .args(["-c", &format!("echo {name} > {TCP_CONGESTION}")])
                .output()
                .context("run sh")?;
            let now = in_namespace(ns, "cat").arg(TCP_CONGESTION).output().context("run cat")?;
            if String::from_utf8_lossy(&now.stdout).trim() != name {
                // The host's own list, which every namespace shares.
                let allowed = std::fs::read_to_string(TCP_ALLOWED_CONGESTION).unwrap_or_default();
                bail!(
                    "TCP congestion controller {name} not set in {ns} ({}): outside the host's \
                     namespace the kernel lets only a controller in {TCP_ALLOWED_CONGESTION} \
                     ({}) be the default; a root user can add it there",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    allowed.trim()
                );
            }
        }
        Ok(())
    }

    pub fn server_namespace(&self) -> &str {
        &self.server_ns
    }

    pub fn client_namespace(&self) -> &str {
        &self.client_ns
    }

    /// What the router carried so far: (client to server, server to client).
    pub fn carried(&mut self) -> anyhow::Result<(Carried, Carried)> {
        let (stdin, _) = self.control.as_mut().context("router gone")?;
        writeln!(stdin, "stats").context("ask router")?;
        let line = self.expect_line("stats")?;
        let numbers: Vec<u64> =
            line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
        let [a, b, c, d, e, f, g, h] = numbers[..] else { bail!("router stats: {line}") };
        let up = Carried { packets: a, bytes: b, lost: c, queue_drops: d };
        let down = Carried { packets: e, bytes: f, lost: g, queue_drops: h };
        Ok((up, down))
    }
}

/// `ip netns exec NS program`: the program runs in the namespace (ip execs it, so its process id
/// is the program's own and signals reach it).
pub fn in_namespace(namespace: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace]).arg(program);
    command
}

impl Drop for Wan {
    fn drop(&mut self) {
        // Closing its stdin ends the router; the devices go with it, then the namespaces.
        self.control = None;
        let _ = self.router.kill();
        let _ = self.router.wait();
        let _ = ip(&["netns", "del", &self.server_ns]);
        let _ = ip(&["netns", "del", &self.client_ns]);
    }
}
