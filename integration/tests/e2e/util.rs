//! Helpers shared by the transfer tests: reproducible file contents and interrupted transfers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use wharf::session::Session;
use wharf_common::path::RemotePath;
use wharf_integration::server::TestServer;

/// `len` bytes of seeded pseudo-random data (xorshift), so that every file is distinct.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn p(path: &str) -> RemotePath {
    RemotePath::parse(path).expect("valid path")
}

/// Which way an interrupted transfer goes.
pub enum Direction<'a> {
    /// An upload by `user`.
    Put {
        local: &'a Path,
        remote: &'a RemotePath,
        user: &'a str,
    },
    Get {
        remote: &'a RemotePath,
        local: &'a Path,
    },
}

/// Starts a resumable transfer and abandons it once `after` bytes have moved, as Ctrl-C or a killed
/// client would. Fails the test if the transfer finishes first.
///
/// An upload is abandoned only once the server has written some of it, whenever that was: a
/// cancelled upload keeps what the server wrote, but what was still in flight may be dropped, and on
/// a loaded machine all that moved can still be in flight.
pub async fn interrupt(
    session: &Session,
    server: &TestServer,
    direction: Direction<'_>,
    after: u64,
) {
    let moved = AtomicU64::new(0);
    let reached = Notify::new();
    let on_bytes = |n: u64| {
        if moved.fetch_add(n, Ordering::Relaxed) + n >= after {
            reached.notify_one();
        }
    };
    let written = || match direction {
        Direction::Put { user, .. } => server.partial_bytes(user) > 0,
        Direction::Get { .. } => true,
    };
    let transfer = async {
        match direction {
            Direction::Put { local, remote, .. } => {
                session.put(local, remote, true, &on_bytes).await
            }
            Direction::Get { remote, local } => session.get(remote, local, true, &on_bytes).await,
        }
    };
    let cut = async {
        reached.notified().await;
        while !written() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        biased;
        () = cut => {}
        finished = transfer => panic!("the transfer ended before the interruption: {finished:?}"),
    }
}
