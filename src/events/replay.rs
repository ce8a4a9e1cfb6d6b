//! Signatures of commands accepted lately, so that a captured message cannot be sent again.
//!
//! A message is only accepted while its timestamp is within `max_age_s` of the daemon's
//! clock; its signature needs remembering until then and no longer. The cache is bounded:
//! when it is full of signatures that are all still needed, new commands are refused
//! ("busy") rather than forgetting one, which would let its message be replayed.

use std::collections::HashMap;

use super::signing::SIGNATURE_BYTES;

/// The cache is full of signatures that are all still needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Replayed,
    Full,
}

pub(crate) struct ReplayCache {
    /// Signature → Unix second after which its message is refused as stale anyway.
    seen: HashMap<[u8; SIGNATURE_BYTES], i64>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether a message with this signature may be accepted now (`now`: Unix seconds).
    /// Makes room by forgetting expired signatures when the cache is full.
    pub fn check(&mut self, signature: &[u8; SIGNATURE_BYTES], now: i64) -> Result<(), Refusal> {
        if let Some(&expires) = self.seen.get(signature) {
            if expires >= now {
                return Err(Refusal::Replayed);
            }
            self.seen.remove(signature);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, expires| *expires >= now);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Remembers an accepted message's signature until `expires` (Unix seconds). Call only
    /// after [`ReplayCache::check`] said yes, so that the bound holds.
    pub fn remember(&mut self, signature: [u8; SIGNATURE_BYTES], expires: i64) {
        if self.seen.len() < self.capacity {
            self.seen.insert(signature, expires);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u32) -> [u8; SIGNATURE_BYTES] {
        let mut s = [0u8; SIGNATURE_BYTES];
        s[..4].copy_from_slice(&n.to_be_bytes());
        s
    }

    #[test]
    fn a_signature_is_refused_until_it_expires() {
        let mut c = ReplayCache::new(8);
        assert_eq!(c.check(&sig(1), 100), Ok(()));
        c.remember(sig(1), 130);
        assert_eq!(c.check(&sig(1), 100), Err(Refusal::Replayed));
        assert_eq!(c.check(&sig(1), 130), Err(Refusal::Replayed));
        assert_eq!(c.check(&sig(2), 100), Ok(()));
        // Past its expiry the timestamp check refuses the message; the cache lets go.
        assert_eq!(c.check(&sig(1), 131), Ok(()));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn the_cache_never_grows_past_its_bound() {
        let mut c = ReplayCache::new(4);
        for n in 0..4 {
            assert_eq!(c.check(&sig(n), 100), Ok(()));
            c.remember(sig(n), 100 + n as i64);
        }
        assert_eq!(c.len(), 4);
        // Full of signatures still needed: refuse rather than forget one.
        assert_eq!(c.check(&sig(9), 100), Err(Refusal::Full));
        c.remember(sig(9), 200);
        assert_eq!(c.len(), 4);
        assert_eq!(c.check(&sig(0), 100), Err(Refusal::Replayed));
        // Two have expired by 102: room again, and the rest still refused.
        assert_eq!(c.check(&sig(9), 102), Ok(()));
        assert_eq!(c.len(), 2);
        c.remember(sig(9), 132);
        assert_eq!(c.check(&sig(2), 102), Err(Refusal::Replayed));
        assert_eq!(c.check(&sig(9), 102), Err(Refusal::Replayed));
        // Many more over time: the size stays within the bound.
        for n in 10..10_000u32 {
            let now = 200 + i64::from(n);
            if c.check(&sig(n), now).is_ok() {
                c.remember(sig(n), now + 30);
            }
            assert!(c.len() <= 4);
        }
    }
}
