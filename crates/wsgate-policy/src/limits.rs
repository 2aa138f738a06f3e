//! The limits that need no shared state: the message and byte rates of one
//! connection, and the address a client is counted under.
//!
//! Counts shared between connections (per address, per user, handshakes per
//! minute) live in the gateway's store; this module only says which key a
//! client is counted under, so every store groups clients the same way.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use wsgate_config::Limits;

/// The address a client is counted under: an IPv4 address, or an IPv6
/// prefix (one host usually holds a whole /64, so single IPv6 addresses
/// would let it take as many slots as it likes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    addr: IpAddr,
    prefix: u8,
}

impl ClientKey {
    /// The key of `ip`; IPv6 addresses are cut to `ipv6_prefix` bits, and
    /// IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) count as IPv4.
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey {
                addr: IpAddr::V4(v4),
                prefix: 32,
            },
            IpAddr::V6(v6) => {
                let prefix = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                ClientKey {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/{}", self.prefix),
        }
    }
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One connection's message and byte rates (`messages_per_sec` with
/// `burst`, `bytes_per_sec`), as token buckets (GCRA) on a clock passed in.
pub struct Meter<C: Clock = DefaultClock> {
    messages: Option<(Limiter<C>, u32, u32)>,
    bytes: Option<(Limiter<C>, u32)>,
}

impl<C: Clock> fmt::Debug for Meter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("messages", &self.messages.as_ref().map(|m| (m.1, m.2)))
            .field("bytes", &self.bytes.as_ref().map(|b| b.1))
            .finish()
    }
}

/// The rate a client went over, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded(pub String);

impl Meter<DefaultClock> {
    /// The meter for a route's limits, on the system's monotonic clock;
    /// `None` when the route sets no rate.
    pub fn for_limits(limits: &Limits) -> Option<Self> {
        Self::with_clock(limits, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> Meter<C> {
    /// The meter for a route's limits on `clock`; `None` when the route sets no rate.
    pub fn with_clock(limits: &Limits, clock: &C) -> Option<Self> {
        let messages = limits
            .messages_per_sec
            .and_then(NonZeroU32::new)
            .map(|rate| {
                let burst = limits.burst.and_then(NonZeroU32::new).unwrap_or(rate);
                let quota = Quota::per_second(rate).allow_burst(burst);
                (
                    RateLimiter::direct_with_clock(quota, clock.clone()),
                    rate.get(),
                    burst.get(),
                )
            });
        let bytes = limits.bytes_per_sec.map(|b| {
            // Rates above 4 GiB/s are no limit on one connection.
            let rate =
                NonZeroU32::new(u32::try_from(b).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::per_second(rate);
            (
                RateLimiter::direct_with_clock(quota, clock.clone()),
                rate.get(),
            )
        });
        if messages.is_none() && bytes.is_none() {
            return None;
        }
        Some(Meter { messages, bytes })
    }

    /// Counts the start of one message.
    pub fn message(&self) -> Result<(), Exceeded> {
        let Some((limiter, rate, burst)) = &self.messages else {
            return Ok(());
        };
        limiter.check().map_err(|_| {
            Exceeded(format!(
                "more than {rate} messages per second (burst {burst})"
            ))
        })
    }

    /// Counts `n` frame bytes; more than one second's worth at once is over the rate.
    pub fn bytes(&self, n: usize) -> Result<(), Exceeded> {
        let Some((limiter, rate)) = &self.bytes else {
            return Ok(());
        };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 {
                Ok(())
            } else {
                Err(Exceeded(format!("more than {rate} bytes per second")))
            };
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Exceeded(format!("more than {rate} bytes per second"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(per_sec: Option<u32>, burst: Option<u32>, bytes: Option<u64>) -> Limits {
        Limits {
            messages_per_sec: per_sec,
            burst,
            bytes_per_sec: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn no_rate_configured_means_no_meter() {
        assert!(
            Meter::with_clock(&limits(None, None, None), &FakeRelativeClock::default()).is_none()
        );
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_one_message_per_period() {
        let clock = FakeRelativeClock::default();
        let meter = Meter::with_clock(&limits(Some(10), Some(3), None), &clock).unwrap();
        for _ in 0..3 {
            assert_eq!(meter.message(), Ok(()));
        }
        let over = meter.message().unwrap_err();
        assert!(
            over.0.contains("10 messages per second (burst 3)"),
            "{over:?}"
        );
        // 10 per second: one message is earned every 100 ms, not before.
        clock.advance(Duration::from_millis(99));
        assert!(meter.message().is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(meter.message(), Ok(()));
        assert!(meter.message().is_err());
        // A quiet second refills the whole burst, and no more.
        clock.advance(Duration::from_secs(1));
        for _ in 0..3 {
            assert_eq!(meter.message(), Ok(()));
        }
        assert!(meter.message().is_err());
    }

    #[test]
    fn without_a_burst_the_rate_is_the_burst() {
        let clock = FakeRelativeClock::default();
        let meter = Meter::with_clock(&limits(Some(5), None, None), &clock).unwrap();
        for _ in 0..5 {
            assert_eq!(meter.message(), Ok(()));
        }
        assert!(meter.message().is_err());
    }

    #[test]
    fn bytes_are_metered_per_second_and_a_chunk_over_a_second_is_over() {
        let clock = FakeRelativeClock::default();
        let meter = Meter::with_clock(&limits(None, None, Some(1000)), &clock).unwrap();
        assert_eq!(meter.bytes(600), Ok(()));
        assert_eq!(meter.bytes(400), Ok(()));
        assert!(meter.bytes(1).is_err());
        clock.advance(Duration::from_millis(500));
        assert_eq!(meter.bytes(500), Ok(()));
        assert!(meter.bytes(10).is_err());
        clock.advance(Duration::from_secs(5));
        let err = meter.bytes(1001).unwrap_err();
        assert!(err.0.contains("1000 bytes per second"), "{err:?}");
        assert_eq!(meter.bytes(0), Ok(()));
        // Messages are not limited by a byte rate.
        assert_eq!(meter.message(), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::new(a, 64), ClientKey::new(b, 64));
        assert_ne!(ClientKey::new(a, 64), ClientKey::new(c, 64));
        assert_eq!(ClientKey::new(a, 56), ClientKey::new(c, 56));
        assert_ne!(ClientKey::new(a, 128), ClientKey::new(b, 128));
        assert_eq!(ClientKey::new(a, 64).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::new(mapped, 64), ClientKey::new(v4, 64));
        assert_eq!(ClientKey::new(v4, 64).to_string(), "192.0.2.7");
        assert_ne!(
            ClientKey::new(v4, 64),
            ClientKey::new("192.0.2.8".parse().unwrap(), 64)
        );
    }
}
