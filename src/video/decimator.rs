//! Timestamp bookkeeping of one camera: monotonic presentation times across loops and
//! restarts, and decimation down to a consumer's rate by timestamp (not by arrival), so
//! that a replay admits the same frames on any machine.

/// Makes presentation times monotonic for the life of a camera: when the source's
/// timestamps go back (a file loops, a paced source restarts), later ones continue from
/// the last time handed out plus one frame.
#[derive(Debug, Default, Clone)]
pub struct PtsClock {
    offset_ns: u64,
    last_raw_ns: Option<u64>,
    last_out_ns: u64,
    last_duration_ns: u64,
}

/// Step used after a jump back when the source gave no frame duration.
const FALLBACK_STEP_NS: u64 = 1_000_000;

impl PtsClock {
    /// Maps the source's timestamp `raw_ns` of a frame lasting `duration_ns`.
    pub fn map(&mut self, raw_ns: u64, duration_ns: Option<u64>) -> u64 {
        if let Some(last) = self.last_raw_ns
            && raw_ns < last
        {
            let step = if self.last_duration_ns > 0 {
                self.last_duration_ns
            } else {
                FALLBACK_STEP_NS
            };
            self.offset_ns = (self.last_out_ns + step).saturating_sub(raw_ns);
        }
        let out = raw_ns.saturating_add(self.offset_ns);
        self.last_raw_ns = Some(raw_ns);
        self.last_out_ns = out;
        if let Some(d) = duration_ns.filter(|&d| d > 0) {
            self.last_duration_ns = d;
        }
        out
    }
}

/// Admits frames down to a rate: a frame is admitted when its timestamp reaches the next
/// multiple of `1 / fps`; `fps = 0` admits every frame.
#[derive(Debug, Clone)]
pub struct PtsDecimator {
    interval_ns: u64,
    next_due_ns: u64,
}

impl PtsDecimator {
    pub fn new(fps: f32) -> PtsDecimator {
        let interval_ns = if fps.is_finite() && fps > 0.0 {
            (1e9 / fps as f64).round() as u64
        } else {
            0
        };
        PtsDecimator {
            interval_ns,
            next_due_ns: 0,
        }
    }

    /// Whether the frame at `pts_ns` is admitted; timestamps must not go back (see
    /// [`PtsClock`]).
    pub fn admit(&mut self, pts_ns: u64) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        if pts_ns < self.next_due_ns {
            return false;
        }
        self.next_due_ns = (pts_ns / self.interval_ns + 1) * self.interval_ns;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn decimate(fps: f32, frame_ms: u64, frames: u64) -> Vec<u64> {
        let mut s = PtsDecimator::new(fps);
        (0..frames)
            .map(|i| i * frame_ms * MS)
            .filter(|&p| s.admit(p))
            .map(|p| p / MS)
            .collect()
    }

    #[test]
    fn every_frame_at_zero_fps() {
        assert_eq!(decimate(0.0, 40, 5), [0, 40, 80, 120, 160]);
    }

    #[test]
    fn ten_of_twenty_five() {
        let taken = decimate(10.0, 40, 25);
        assert_eq!(taken, [0, 120, 200, 320, 400, 520, 600, 720, 800, 920]);
    }

    #[test]
    fn fps_above_source_rate_takes_all() {
        assert_eq!(decimate(50.0, 40, 4), [0, 40, 80, 120]);
    }

    #[test]
    fn rate_holds_over_a_long_run() {
        for (fps, frame_ms) in [(10.0, 40), (5.0, 33), (3.0, 40), (7.5, 17)] {
            let taken = decimate(fps, frame_ms, 3000);
            let secs = (3000 * frame_ms) as f32 / 1000.0;
            let rate = taken.len() as f32 / secs;
            assert!((rate - fps).abs() < 0.05 * fps + 0.1, "fps {fps}: {rate}");
        }
    }

    #[test]
    fn a_gap_does_not_cause_a_burst() {
        let mut s = PtsDecimator::new(10.0);
        assert!(s.admit(0));
        assert!(s.admit(5000 * MS));
        assert!(!s.admit(5040 * MS));
        assert!(s.admit(5100 * MS));
    }

    #[test]
    fn clock_continues_after_a_loop() {
        let mut c = PtsClock::default();
        let raw = [0, 40, 80, 0, 40, 0];
        let out: Vec<u64> = raw.iter().map(|&r| c.map(r * MS, Some(40 * MS)) / MS).collect();
        assert_eq!(out, [0, 40, 80, 120, 160, 200]);
    }

    #[test]
    fn clock_passes_forward_jumps_and_handles_missing_durations() {
        let mut c = PtsClock::default();
        assert_eq!(c.map(1000, None), 1000);
        assert_eq!(c.map(5000, None), 5000);
        assert_eq!(c.map(10, None), 5000 + FALLBACK_STEP_NS);
    }
}
