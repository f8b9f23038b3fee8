//! A TCP proxy in front of an object store that leaves chosen requests unanswered: the first
//! `stall` requests for pieces (paths beneath `/blobs/`) made with one of the chosen methods are
//! read and never forwarded nor answered, as a store that stalls does, until the client gives up
//! on them. Everything else passes through.
//!
//! It looks only at the first request on each connection, which is every request where wharfd
//! takes a fresh connection per request (its default for an `http://` store).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The longest request head the proxy reads before deciding; an S3 request line is far shorter.
const HEAD_MAX: usize = 64 * 1024;

pub struct StallingStore {
    addr: SocketAddr,
    stalled: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

impl StallingStore {
    /// Listens on loopback and forwards to the store at `endpoint` (`http://HOST:PORT`), stalling
    /// the first `stall` requests for pieces (`usize::MAX`: all of them) whose method is one of
    /// `methods` (`"PUT"`, `"GET"`).
    pub fn start(endpoint: &str, methods: &'static [&'static str], stall: usize) -> StallingStore {
        let upstream: SocketAddr = endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("the store's endpoint is http://ADDRESS:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stalled = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (counted, stop) = (stalled.clone(), stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let counted = counted.clone();
                std::thread::spawn(move || serve(client, upstream, &counted, (methods, stall)));
            }
        });
        StallingStore { addr, stalled, stopped }
    }

    /// The endpoint to give wharfd instead of the store's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it has stalled so far.
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for StallingStore {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: stalled if its request is for a piece with a chosen method and stalls remain,
/// else relayed.
fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    stalled: &AtomicUsize,
    (methods, stall): (&[&str], usize),
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < HEAD_MAX {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut request_line = head.split(|&b| b == b' ');
    let method = request_line.next().unwrap_or_default();
    let for_piece = request_line
        .next()
        .is_some_and(|path| path.windows(b"/blobs/".len()).any(|w| w == b"/blobs/"));
    let chosen = for_piece && methods.iter().any(|m| m.as_bytes() == method);
    let stalls = chosen
        && stalled
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < stall).then_some(n + 1))
            .is_ok();
    if stalls {
        // Take the body and say nothing, until the client hangs up.
        while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else { return };
    if server.write_all(&head).is_err() {
        return;
    }
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = upward.join();
}
