//! Admission control: at most N connections in total and M from one address. An IPv6 /64 counts as
//! one address, as it does for login throttling: one host commonly owns a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Counts open connections by address.
#[derive(Debug)]
pub struct ConnectionLimiter {
    open: Mutex<Counts>,
    max_total: usize,
    max_per_ip: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

impl Refusal {
    pub fn reason(self) -> &'static [u8] {
        match self {
            Refusal::Total => b"server connection limit reached",
            Refusal::PerIp => b"too many connections from your address",
        }
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter { open: Mutex::default(), max_total, max_per_ip })
    }

    fn counts(&self) -> parking_lot::MutexGuard<'_, Counts> {
        self.open.lock()
    }

    /// Admits a connection from `ip`, or says which limit stops it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let ip = crate::throttle::source_key(ip);
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let from_ip = counts.by_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(Admission { limiter: self.clone(), ip })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total -= 1;
        if let Some(from_ip) = counts.by_ip.get_mut(&self.ip) {
            *from_ip -= 1;
            if *from_ip == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts handshakes in progress from addresses not yet validated, up to a limit.
#[derive(Debug)]
pub struct HandshakeCount {
    limit: usize,
    current: std::sync::atomic::AtomicUsize,
}

/// One handshake counted by a [`HandshakeCount`]; dropping it ends the count.
#[derive(Debug)]
pub struct Handshake(Arc<HandshakeCount>);

impl HandshakeCount {
    pub fn new(limit: usize) -> HandshakeCount {
        HandshakeCount { limit, current: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// Counts one more handshake, unless `limit` are in progress already.
    pub fn try_enter(self: &Arc<Self>) -> Option<Handshake> {
        use std::sync::atomic::Ordering;
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Handshake(self.clone()))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_counted_up_to_the_limit_and_freed_on_drop() {
        let count = Arc::new(HandshakeCount::new(2));
        let first = count.try_enter().expect("first");
        let _second = count.try_enter().expect("second");
        assert!(count.try_enter().is_none(), "a third handshake is over the limit");
        drop(first);
        assert!(count.try_enter().is_some(), "a finished handshake frees its place");
        assert!(Arc::new(HandshakeCount::new(0)).try_enter().is_none(), "0 admits none");
    }

    #[test]
    fn caps_per_ip_and_total_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limiter.admit(a).expect("first");
        let _second = limiter.admit(a).expect("second");
        assert_eq!(limiter.admit(a).err(), Some(Refusal::PerIp));
        let _third = limiter.admit(b).expect("other address");
        assert_eq!(limiter.admit(b).err(), Some(Refusal::Total));
        drop(first);
        assert!(limiter.admit(a).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let limiter = ConnectionLimiter::new(10, 2);
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, last]);
        let _one = limiter.admit(host(1)).expect("first");
        let _two = limiter.admit(host(2)).expect("second, same /64");
        assert_eq!(limiter.admit(host(3)).err(), Some(Refusal::PerIp), "a third in the /64");
        let elsewhere = IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]);
        assert!(limiter.admit(elsewhere).is_ok(), "another /64 is another address");
    }
}
