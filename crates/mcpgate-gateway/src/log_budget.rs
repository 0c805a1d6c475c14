//! The gateway's log budgets ([`mcpgate_types::log_budget`]).

use std::time::Duration;

pub(crate) use mcpgate_types::log_budget::{LogBudget, SharedLogBudget};

/// The gateway's warnings that its store did not answer (session lookups,
/// new and ended sessions, the fleet sweep; the audit writer has a budget of
/// its own at the same rate): while the database is down every request
/// would log one; this many lines per [`STORE_WARNING_WINDOW`] are logged.
pub(crate) const STORE_WARNINGS: u32 = 3;
pub(crate) const STORE_WARNING_WINDOW: Duration = Duration::from_secs(10);

/// The budget of the gateway's store-outage warnings.
pub(crate) fn store_warnings() -> SharedLogBudget {
    SharedLogBudget::new(STORE_WARNINGS, STORE_WARNING_WINDOW)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_store_budget_logs_far_fewer_lines_than_an_outage_makes() {
        let b = store_warnings();
        let t0 = Instant::now();
        // A request every millisecond for STORE_WARNING_WINDOW.
        let logged = (0..STORE_WARNING_WINDOW.as_millis() as u64)
            .filter(|ms| b.allow_at(t0 + Duration::from_millis(*ms)).is_some())
            .count();
        assert_eq!(logged, STORE_WARNINGS as usize);
    }
}
