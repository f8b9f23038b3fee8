//! Login throttling by source address and by user name, in bounded tables.
//!
//! Each failure doubles the wait imposed on the next attempt from the same address and for the same
//! user name (`base * 2^(failures-1)`, capped). An address that keeps failing is refused outright for
//! the rest of the window, without spending Argon2 work on it; a user name is only ever delayed, so an
//! attacker cannot lock a real user out. IPv6 addresses are tracked per /64, since one host
//! commonly owns a whole /64.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::AuthSettings;

/// What the throttle says about a login attempt before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check it after waiting this long (zero when there were no recent failures).
    Delay(Duration),
    /// Refuse it without checking: this address failed too often.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// A map of failure counts that never holds more than `capacity` keys.
#[derive(Debug)]
struct BoundedTable<K> {
    entries: HashMap<K, Failures>,
    capacity: usize,
    window: Duration,
}

impl<K: Hash + Eq + Clone> BoundedTable<K> {
    fn new(capacity: usize, window: Duration) -> Self {
        BoundedTable { entries: HashMap::new(), capacity, window }
    }

    fn count(&self, key: &K, now: Instant) -> u32 {
        self.entries
            .get(key)
            .filter(|f| now.duration_since(f.last) < self.window)
            .map_or(0, |f| f.count)
    }

    fn record_failure(&mut self, key: K, now: Instant) {
        let count = self.count(&key, now);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict(now);
        }
        self.entries.insert(key, Failures { count: count.saturating_add(1), last: now });
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Makes room: first drop everything outside the window, then, if still full, the stalest entry.
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, f| now.duration_since(f.last) < window);
        if self.entries.len() >= self.capacity
            && let Some(stalest) =
                self.entries.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone())
        {
            self.entries.remove(&stalest);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Failure tracking for logins.
#[derive(Debug)]
pub struct Throttle {
    by_ip: BoundedTable<IpAddr>,
    by_user: BoundedTable<String>,
    base: Duration,
    max: Duration,
    max_ip_failures: u32,
}

impl Throttle {
    pub fn new(settings: &AuthSettings) -> Throttle {
        let window = Duration::from_secs(settings.throttle_window_secs);
        Throttle {
            by_ip: BoundedTable::new(settings.throttle_table_size, window),
            by_user: BoundedTable::new(settings.throttle_table_size, window),
            base: Duration::from_millis(settings.throttle_base_delay_ms),
            max: Duration::from_millis(settings.throttle_max_delay_ms),
            max_ip_failures: settings.max_failures_per_ip,
        }
    }

    /// The verdict for an attempt from `ip` for `user`, at time `now`.
    pub fn verdict(&self, ip: IpAddr, user: &str, now: Instant) -> Verdict {
        self.verdict_with(ip, user, now, (0, 0))
    }

    /// Like [`Throttle::verdict`], counting also `shared` failures (from the address, for the user
    /// name) that other nodes saw.
    pub fn verdict_with(
        &self,
        ip: IpAddr,
        user: &str,
        now: Instant,
        shared: (u32, u32),
    ) -> Verdict {
        let ip_failures = self.by_ip.count(&source_key(ip), now).max(shared.0);
        if ip_failures >= self.max_ip_failures {
            return Verdict::Refuse;
        }
        let failures = ip_failures.max(self.by_user.count(&user.to_owned(), now)).max(shared.1);
        Verdict::Delay(self.delay(failures))
    }

    fn delay(&self, failures: u32) -> Duration {
        match failures {
            0 => Duration::ZERO,
            n => self.base.saturating_mul(1u32 << (n - 1).min(20)).min(self.max),
        }
    }

    pub fn record_failure(&mut self, ip: IpAddr, user: &str, now: Instant) {
        self.by_ip.record_failure(source_key(ip), now);
        self.by_user.record_failure(user.to_owned(), now);
    }

    /// A successful login clears the user name's record, and the address's.
    pub fn record_success(&mut self, ip: IpAddr, user: &str) {
        self.by_ip.clear(&source_key(ip));
        self.by_user.clear(&user.to_owned());
    }

    /// Entries held, for tests of the bound.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_ip.len(), self.by_user.len())
    }
}

/// The key an address is tracked under: IPv4 as is, IPv6 by its /64 (IPv4-mapped as IPv4).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            throttle_base_delay_ms: 100,
            throttle_max_delay_ms: 1000,
            throttle_window_secs: 60,
            max_failures_per_ip: 5,
            throttle_table_size: 3,
            ..AuthSettings::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn delay_grows_then_caps_and_ip_gets_refused() {
        let mut throttle = Throttle::new(&settings());
        let now = Instant::now();
        assert_eq!(throttle.verdict(ip(1), "ann", now), Verdict::Delay(Duration::ZERO));
        let mut seen = Vec::new();
        for _ in 0..4 {
            throttle.record_failure(ip(1), "ann", now);
            seen.push(throttle.verdict(ip(1), "ann", now));
        }
        let ms = |m| Verdict::Delay(Duration::from_millis(m));
        assert_eq!(seen, [ms(100), ms(200), ms(400), ms(800)]);
        throttle.record_failure(ip(1), "ann", now);
        assert_eq!(throttle.verdict(ip(1), "ann", now), Verdict::Refuse);
        // The user name is delayed from anywhere, but never refused.
        assert_eq!(throttle.verdict(ip(2), "ann", now), ms(1000));
        // Everything is forgotten after the window.
        let later = now + Duration::from_secs(61);
        assert_eq!(throttle.verdict(ip(1), "ann", later), Verdict::Delay(Duration::ZERO));
    }

    #[test]
    fn success_clears_and_tables_stay_bounded() {
        let mut throttle = Throttle::new(&settings());
        let now = Instant::now();
        for n in 0..50u8 {
            throttle.record_failure(
                ip(n),
                &format!("user{n}"),
                now + Duration::from_millis(n.into()),
            );
        }
        assert_eq!(throttle.tracked(), (3, 3));
        throttle.record_success(ip(49), "user49");
        assert_eq!(throttle.verdict(ip(49), "user49", now), Verdict::Delay(Duration::ZERO));
    }

    #[test]
    fn ipv6_is_tracked_per_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert_eq!(source_key(mapped), IpAddr::from([127, 0, 0, 1]));
    }
}
