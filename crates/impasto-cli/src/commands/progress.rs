//! Progress for logs: when stderr is not a terminal (a batch system's log file, CI, `2> log`)
//! the progress bar is hidden, so a plain line is printed every few seconds instead; a run in a
//! log otherwise shows nothing for minutes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines; `IMPASTO_PROGRESS_SECONDS` overrides (0: every
/// iteration, which the tests use).
pub const DEFAULT_INTERVAL_S: f64 = 5.0;

/// Prints a line at most every interval, and the first one at once; nothing on a terminal (the
/// bar is shown there) or with --quiet.
pub struct PlainProgress {
    enabled: bool,
    every: Duration,
    last: Option<Instant>,
}

impl PlainProgress {
    pub fn new(quiet: bool) -> Self {
        PlainProgress {
            enabled: !quiet && !std::io::stderr().is_terminal(),
            every: interval(),
            last: None,
        }
    }

    /// Prints `line()` if the interval has passed since the last line (or none was printed).
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        eprintln!("{}", line());
    }
}

fn interval() -> Duration {
    std::env::var("IMPASTO_PROGRESS_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(
            Duration::from_secs_f64(DEFAULT_INTERVAL_S),
            Duration::from_secs_f64,
        )
}

/// Time left for `remaining` units of work at the rate `done` units took `elapsed`; `None`
/// before any work is done.
pub fn eta(elapsed: Duration, done: f64, remaining: f64) -> Option<Duration> {
    (done > 0.0 && remaining >= 0.0)
        .then(|| Duration::from_secs_f64(elapsed.as_secs_f64() * remaining / done))
}

/// `45 s`, `12 min 5 s`, `3 h 20 min`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_extrapolates_the_rate_so_far() {
        let e = eta(Duration::from_secs(10), 2.0, 6.0).unwrap();
        assert_eq!(e, Duration::from_secs(30));
        assert!(eta(Duration::from_secs(10), 0.0, 6.0).is_none());
        assert_eq!(duration(Duration::from_secs(45)), "45 s");
        assert_eq!(duration(Duration::from_secs(725)), "12 min 5 s");
        assert_eq!(duration(Duration::from_secs(12_000)), "3 h 20 min");
    }
}
