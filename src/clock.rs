//! The one seam to the system clocks. Everything that needs wall-clock time (when a table was
//! published, when an evacuation started) takes it from a [`Clock`] passed in, so tests can
//! fix it; `clippy.toml` forbids `SystemTime::now` and `std::time::Instant::now` everywhere
//! else. Async code measures intervals with `tokio::time::Instant`, which tests pause. A leaf.
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where wall-clock time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the seam itself
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that says what it is told: for tests and replays.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Whole seconds since the Unix epoch (0 for times before it).
/// Wall-clock time that moves with tokio's clock from a given start: under a paused tokio
/// clock (tests), it advances exactly as the test advances time.
pub struct TokioClock {
    start: SystemTime,
    at: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start: SystemTime) -> TokioClock {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.at.elapsed()
    }
}

pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A monotonic instant, for threads outside the async runtime (the UDP workers' rate-limit
/// windows), where tokio's paused clock does not reach.
#[allow(clippy::disallowed_methods)] // the seam itself
pub fn monotonic() -> Instant {
    Instant::now()
}
