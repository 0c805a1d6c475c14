//! Times for people: RFC 3339 in UTC, for operator and client output and
//! the account pages.

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn fmt_time(t: i64) -> String {
    // RFC 3339 in UTC without pulling a date crate: civil-from-days.
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::fmt_time(1_796_563_199), "2026-12-06T13:19:59Z");
    }
}
