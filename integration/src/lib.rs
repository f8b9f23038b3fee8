//! Test support for wharf's end-to-end tests: real `wharfd` processes on `127.0.0.1:0` with
//! temporary roots ([`server`]), clients built on the `wharf` library or the `wharf` binary
//! ([`client`]), and a pseudo-terminal with a small terminal emulator for the shell ([`pty`]).
//!
//! The binaries are the ones cargo builds for `cargo test --workspace`, found next to the test
//! executable in `target/<profile>/`.

pub mod bench;
pub mod client;
pub mod engines;
pub mod fuzzing;
pub mod garage;
pub mod lying;
pub mod postgres;
pub mod pty;
pub mod raw;
pub mod relay;
pub mod server;
pub mod soak;
pub mod stalling_store;
pub mod stored;
pub mod wan;

use std::path::PathBuf;

/// Path of a workspace binary (`wharfd` or `wharf`) built by cargo for this test run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // Tests run from target/<profile>/deps/, the benchmark from target/<profile>/.
    let dir = exe.parent().expect("executable directory");
    let profile_dir =
        if dir.ends_with("deps") { dir.parent().expect("profile directory") } else { dir };
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// Builds the `wharfd` and `wharf` binaries that the benchmark and soak commands run, in this
/// build's profile. `cargo run` sets `CARGO` and has released its lock by the time this runs.
pub fn build_binaries() -> std::io::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else { return Ok(()) };
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-q", "-p", "wharfd", "-p", "wharf", "--bins"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("cargo build: {status}")))
    }
}

/// Where [`free_tcp_port`] looks: below Linux's default ephemeral range (32768–60999), from which
/// the kernel picks the local ports of outgoing connections and of `bind` to port 0.
const LISTEN_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A loopback TCP port free right now, for a server a test starts (PostgreSQL, Garage).
///
/// A port the kernel handed out as ephemeral could be taken, before the server binds it, as the
/// local port of one of the many connections the tests open (a CI run once lost a PostgreSQL
/// start that way), so the port comes from outside that range. A counter keeps one test process
/// from handing out the same port twice, and the process id spreads processes apart.
pub fn free_tcp_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(LISTEN_PORTS.end - LISTEN_PORTS.start);
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let offset = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = LISTEN_PORTS.start + u16::try_from(offset).expect("offset below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port below 32768"))
}

/// One scrape of a node's metrics endpoint: the body of the reply to `GET /metrics`.
pub fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: wharf\r\n\r\n").expect("request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample `name` (with its labels, as printed) in a scrape, if present.
pub fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
