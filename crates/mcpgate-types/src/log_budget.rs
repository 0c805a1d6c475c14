//! Budgets for log lines that something outside mcpgate can make it
//! repeat without end: a stdio child writing to stderr or sending messages
//! nobody can take, or a database that stops answering while every request,
//! sweep and poll asks it. Within a budget the lines are logged; past it
//! they are counted, and the count goes out with the next line let through,
//! so the log says how much was held back instead of repeating it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most a number of lines per window; owned by one task (or kept under
/// a lock the owner already holds). See [`SharedLogBudget`] for one shared
/// by many requests.
#[derive(Debug, Default)]
pub struct LogBudget {
    /// When the current window began; `None` before the first line.
    window: Option<Instant>,
    used: u32,
    held_back: u64,
}

impl LogBudget {
    /// `Some(lines held back since the last one let through)` when this
    /// line may be logged: at most `per_sec` a second.
    pub fn allow(&mut self, per_sec: u32) -> Option<u64> {
        self.allow_at(Instant::now(), per_sec, Duration::from_secs(1))
    }

    /// [`LogBudget::allow`] at `now`, for `lines` per `window`.
    pub fn allow_at(&mut self, now: Instant, lines: u32, window: Duration) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= window)
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= lines {
            self.held_back += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.held_back))
    }

    /// Counts a line that was dropped for another reason (too long to
    /// read); reported with the next line let through.
    pub fn hold_back(&mut self) {
        self.held_back += 1;
    }
}

/// A [`LogBudget`] many tasks draw on at once, with its own rate.
#[derive(Debug)]
pub struct SharedLogBudget {
    lines: u32,
    window: Duration,
    budget: Mutex<LogBudget>,
}

impl SharedLogBudget {
    pub fn new(lines: u32, window: Duration) -> Self {
        Self {
            lines,
            window,
            budget: Mutex::new(LogBudget::default()),
        }
    }

    /// As [`LogBudget::allow`], at this budget's rate.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`SharedLogBudget::allow`] at `now`.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic while counting: keep counting.
        let mut b = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        b.allow_at(now, self.lines, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_and_reported_with_the_next() {
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let mut b = LogBudget::default();
        // Three lines in a window; the first says nothing was held back.
        for _ in 0..3 {
            assert_eq!(b.allow_at(t0, 3, window), Some(0));
        }
        // Five more in the same window are held back, however spread.
        for ms in [0, 1, 500, 5_000, 9_999] {
            assert_eq!(b.allow_at(t0 + Duration::from_millis(ms), 3, window), None);
        }
        // The next window lets a line through and reports the five.
        assert_eq!(b.allow_at(t0 + window, 3, window), Some(5));
        assert_eq!(b.allow_at(t0 + window, 3, window), Some(0));
        // Lines dropped for another reason are reported the same way.
        b.hold_back();
        b.hold_back();
        assert_eq!(b.allow_at(t0 + window, 3, window), Some(2));
        assert_eq!(b.allow_at(t0 + window, 3, window), None);
    }

    #[test]
    fn a_shared_budget_holds_for_every_caller_together() {
        let b = std::sync::Arc::new(SharedLogBudget::new(2, Duration::from_secs(60)));
        let t0 = Instant::now();
        let let_through: u32 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..100).filter(|_| b.allow_at(t0).is_some()).count() as u32)
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(let_through, 2, "800 warnings in one window");
        assert_eq!(b.allow_at(t0 + Duration::from_secs(60)), Some(798));
    }
}
