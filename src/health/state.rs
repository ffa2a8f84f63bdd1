//! The per-target rise/fall state machine. Pure: it sees probe outcomes, never sockets or
//! clocks, so it is tested without either.
use crate::routing::table::Health;

/// Consecutive-outcome counter with hysteresis: `fall` failures in a row take a serving target
/// down, `rise` successes in a row bring a down target back. Unknown behaves like up, except
/// that the first success confirms it as up at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub health: Health,
    ok_run: u32,
    fail_run: u32,
}

impl Tracker {
    pub fn new(seed: Health) -> Tracker {
        Tracker {
            health: seed,
            ok_run: 0,
            fail_run: 0,
        }
    }

    /// Records one probe outcome; returns the new health when it changed.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Health> {
        let before = self.health;
        if ok {
            self.fail_run = 0;
            self.ok_run = self.ok_run.saturating_add(1);
            match self.health {
                Health::Unknown => self.health = Health::Up,
                Health::Down if self.ok_run >= rise => self.health = Health::Up,
                _ => {}
            }
        } else {
            self.ok_run = 0;
            self.fail_run = self.fail_run.saturating_add(1);
            if self.health.serving() && self.fail_run >= fall {
                self.health = Health::Down;
            }
        }
        (self.health != before).then_some(self.health)
    }
}

/// Exponentially weighted moving average of probe latency, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ewma {
    value: Option<f64>,
}

impl Ewma {
    /// Weight of the newest sample.
    const ALPHA: f64 = 0.3;

    pub fn observe(&mut self, sample_us: f64) {
        self.value = Some(match self.value {
            None => sample_us,
            Some(v) => v + Self::ALPHA * (sample_us - v),
        });
    }

    pub fn get(&self) -> Option<f64> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Tracker, outcomes: &[bool]) -> Vec<Option<Health>> {
        outcomes.iter().map(|ok| t.observe(*ok, 2, 3)).collect()
    }

    #[test]
    fn unknown_confirms_up_on_first_success() {
        let mut t = Tracker::new(Health::Unknown);
        assert_eq!(t.observe(true, 2, 3), Some(Health::Up));
        assert_eq!(t.observe(true, 2, 3), None);
    }

    #[test]
    fn falls_after_fall_consecutive_failures() {
        let mut t = Tracker::new(Health::Up);
        assert_eq!(
            run(&mut t, &[false, false, true, false, false, false]),
            vec![None, None, None, None, None, Some(Health::Down)]
        );
    }

    #[test]
    fn unknown_falls_like_up() {
        let mut t = Tracker::new(Health::Unknown);
        assert_eq!(
            run(&mut t, &[false, false, false]),
            vec![None, None, Some(Health::Down)]
        );
    }

    #[test]
    fn rises_after_rise_consecutive_successes() {
        let mut t = Tracker::new(Health::Down);
        assert_eq!(
            run(&mut t, &[true, false, true, true]),
            vec![None, None, None, Some(Health::Up)]
        );
        assert!(t.health.serving());
    }

    #[test]
    fn flapping_never_changes_state() {
        let mut t = Tracker::new(Health::Up);
        let flaps: Vec<bool> = (0..50).map(|i| i % 2 == 0).collect();
        assert!(run(&mut t, &flaps).iter().all(Option::is_none));
        assert_eq!(t.health, Health::Up);
    }

    #[test]
    fn ewma_smooths() {
        let mut e = Ewma::default();
        assert_eq!(e.get(), None);
        e.observe(100.0);
        assert_eq!(e.get(), Some(100.0));
        e.observe(200.0);
        assert_eq!(e.get(), Some(130.0));
    }
}
