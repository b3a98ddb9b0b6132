//! Snapshot schedules: cron expressions (croner; 5 fields, or 6 with seconds first, in
//! UTC) and when the next run falls. Pure: the caller passes the times.

use chrono::{TimeZone, Utc};

/// Parses a schedule as `snapshot_policies.<env>.schedule` writes it.
pub fn parse(expr: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| e.to_string())
}

/// The first time the schedule fires strictly after `after_ms` (Unix ms), if any.
pub fn next_after(cron: &croner::Cron, after_ms: i64) -> Option<i64> {
    let after = Utc.timestamp_millis_opt(after_ms).single()?;
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Whether a run is due at `now_ms`: the schedule fired after `since_ms` (the last run,
/// or when the schedule was first seen). Runs missed while nobody watched are not made
/// up one by one: one run covers them all.
pub fn due(cron: &croner::Cron, since_ms: i64, now_ms: i64) -> bool {
    next_after(cron, since_ms).is_some_and(|t| t <= now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn minutes_hours_and_seconds() {
        let every_minute = parse("* * * * *").unwrap();
        // 1970-01-01T00:00:30Z → the next minute.
        assert_eq!(next_after(&every_minute, 30_000), Some(MIN));
        assert_eq!(next_after(&every_minute, MIN), Some(2 * MIN));
        let nightly = parse("0 3 * * *").unwrap();
        assert_eq!(next_after(&nightly, 0), Some(3 * 60 * MIN));
        let five_seconds = parse("*/5 * * * * *").unwrap();
        assert_eq!(next_after(&five_seconds, 1), Some(5_000));
        assert!(parse("61 * * * *").is_err());
        assert!(parse("every day").is_err());
    }

    #[test]
    fn due_once_the_schedule_fired_since_the_last_run() {
        let every_minute = parse("* * * * *").unwrap();
        assert!(!due(&every_minute, 10 * MIN, 10 * MIN + 59_999));
        assert!(due(&every_minute, 10 * MIN, 11 * MIN));
        // Five missed runs are one run.
        assert!(due(&every_minute, 10 * MIN, 15 * MIN + 1));
        assert!(!due(&every_minute, 15 * MIN + 1, 15 * MIN + 2));
    }
}
