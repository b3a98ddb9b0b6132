//! Slowing down guessers: each client address that presents wrong credentials waits
//! longer before its next attempt is looked at (exponential, capped), in bounded memory.
//! Pure bookkeeping: the caller passes the time and does the waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How hard failures are punished.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures a client may make before any delay (typos happen).
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A client quiet for this long starts over.
    pub forget_after: Duration,
    /// Clients remembered at once; beyond it the one quiet longest is forgotten.
    pub max_clients: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            forget_after: Duration::from_secs(15 * 60),
            max_clients: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Failures per client address (IPv6 by its /64: one host often has a whole prefix).
#[derive(Debug, Default)]
pub struct Throttle {
    config: ThrottleConfig,
    clients: Mutex<HashMap<IpAddr, Record>>,
}

/// The key a client is remembered by.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` waits before its attempt at `now` is looked at.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = clients.get(&key(ip)) else {
            return Duration::ZERO;
        };
        if now.saturating_duration_since(r.last) >= self.config.forget_after {
            return Duration::ZERO;
        }
        let over = r.failures.saturating_sub(self.config.free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
        self.config
            .base
            .checked_mul(factor)
            .unwrap_or(self.config.max)
            .min(self.config.max)
    }

    /// Notes a failed attempt of `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let forget = self.config.forget_after;
        let r = clients.entry(key(ip)).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(r.last) >= forget {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        if clients.len() > self.config.max_clients {
            clients.retain(|_, r| now.saturating_duration_since(r.last) < forget);
        }
        while clients.len() > self.config.max_clients {
            let Some(oldest) = clients.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k) else {
                break;
            };
            clients.remove(&oldest);
        }
    }

    /// A successful attempt: `ip` starts over.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.remove(&key(ip));
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            free_failures: 2,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            forget_after: Duration::from_secs(60),
            max_clients: 3,
        }
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let t = Throttle::new(config());
        let now = Instant::now();
        let a = ip("10.0.0.1");
        let mut delays = Vec::new();
        for _ in 0..7 {
            t.failed(a, now);
            delays.push(t.delay(a, now).as_millis());
        }
        assert_eq!(delays, [0, 0, 100, 200, 400, 800, 1000]);
        // Others are not slowed down by it.
        assert_eq!(t.delay(ip("10.0.0.2"), now), Duration::ZERO);
        // A success starts over; so does a long quiet.
        t.succeeded(a);
        assert_eq!(t.delay(a, now), Duration::ZERO);
        for _ in 0..5 {
            t.failed(a, now);
        }
        assert!(t.delay(a, now) > Duration::ZERO);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.delay(a, later), Duration::ZERO);
        t.failed(a, later);
        assert_eq!(t.delay(a, later), Duration::ZERO, "counted from one again");
    }

    #[test]
    fn memory_is_bounded_and_the_quietest_client_goes_first() {
        let t = Throttle::new(config());
        let now = Instant::now();
        for (i, c) in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]
            .iter()
            .enumerate()
        {
            for _ in 0..4 {
                t.failed(ip(c), now + Duration::from_secs(i as u64));
            }
        }
        assert_eq!(t.len(), 3);
        let at = now + Duration::from_secs(4);
        assert_eq!(t.delay(ip("1.1.1.1"), at), Duration::ZERO, "forgotten");
        assert!(t.delay(ip("4.4.4.4"), at) > Duration::ZERO);
    }

    #[test]
    fn an_ipv6_client_is_known_by_its_prefix() {
        let t = Throttle::new(config());
        let now = Instant::now();
        for i in 0..4 {
            t.failed(ip(&format!("2001:db8:1:2::{i}")), now);
        }
        assert!(t.delay(ip("2001:db8:1:2::99"), now) > Duration::ZERO);
        assert_eq!(t.delay(ip("2001:db8:1:3::1"), now), Duration::ZERO);
        for _ in 0..4 {
            t.failed(ip("::ffff:10.1.1.1"), now);
        }
        assert!(t.delay(ip("10.1.1.1"), now) > Duration::ZERO);
    }
}
