//! Jittered exponential backoff, shared by everything that retries: camera pipelines after
//! a failure and MQTT connections (rumqttc has none of its own: polling its event loop
//! again reconnects at once).

use std::time::Duration;

/// Relative jitter applied to each delay (±20 %), so that clients that failed together
/// (a switch rebooted, the broker restarted) do not all retry in the same instant.
pub const JITTER: f64 = 0.2;

/// Delays `initial, 2·initial, 4·initial, …` capped at `max`, each jittered by ±20 %
/// (and never above `max`).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// `initial` is raised to 1 ms and `max` to `initial`, so the schedule is always valid.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random_range(-1.0..=1.0))
    }

    /// The delay before the next attempt, with `unit` in [-1, 1] choosing the jitter
    /// (-1: 20 % shorter, 0: none, 1: 20 % longer).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let delay = jittered(base_delay(self.initial, self.max, self.attempt), unit, self.max);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The next attempt starts over at `initial` (after a success, or a healthy while).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// `initial · 2^attempt`, capped at `max`.
pub fn base_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
    initial.checked_mul(factor).map_or(max, |d| d.min(max))
}

/// `base · (1 + JITTER · unit)`, `unit` clamped to [-1, 1] (NaN counts as 0), at most `max`.
pub fn jittered(base: Duration, unit: f64, max: Duration) -> Duration {
    let unit = if unit.is_finite() { unit.clamp(-1.0, 1.0) } else { 0.0 };
    base.mul_f64(1.0 + JITTER * unit).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let got: Vec<Duration> = (0..8).map(|a| base_delay(ms(500), ms(30_000), a)).collect();
        let want = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000].map(ms);
        assert_eq!(got, want);
        assert_eq!(base_delay(ms(500), ms(30_000), u32::MAX), ms(30_000));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_below_max() {
        assert_eq!(jittered(ms(1000), -1.0, ms(5000)), ms(800));
        assert_eq!(jittered(ms(1000), 1.0, ms(5000)), ms(1200));
        assert_eq!(jittered(ms(1000), 0.0, ms(5000)), ms(1000));
        assert_eq!(jittered(ms(1000), 7.0, ms(5000)), ms(1200));
        assert_eq!(jittered(ms(1000), f64::NAN, ms(5000)), ms(1000));
        // At the cap the jitter can only shorten the delay.
        assert_eq!(jittered(ms(5000), 1.0, ms(5000)), ms(5000));
        assert_eq!(jittered(ms(5000), -1.0, ms(5000)), ms(4000));
    }

    #[test]
    fn schedule_grows_and_resets() {
        let mut b = Backoff::new(ms(100), ms(1000));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay_with(0.0)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000].map(ms));
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay_with(0.0), ms(100));
    }

    #[test]
    fn random_delays_are_in_range() {
        let mut b = Backoff::new(ms(1000), ms(60_000));
        for attempt in 0..5u64 {
            let d = b.next_delay();
            let base = 1000 * (1 << attempt);
            assert!(d >= ms(base * 8 / 10) && d <= ms(base * 12 / 10), "{attempt}: {d:?}");
        }
        let mut capped = Backoff::new(ms(30_000), ms(30_000));
        for _ in 0..200 {
            let d = capped.next_delay();
            assert!(d >= ms(24_000) && d <= ms(30_000), "{d:?}");
        }
    }

    #[test]
    fn nonsense_parameters_are_raised() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay_with(0.0), ms(1));
        assert_eq!(b.next_delay_with(0.0), ms(1));
    }
}
