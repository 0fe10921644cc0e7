//! When a job runs: a crontab line (5 fields, or 6 with seconds first) in a time zone, evaluated
//! by `croner`, against a [`Clock`] that tests replace with tokio's virtual time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule. Time-zone aware: `0 2 * * *` in `Europe/Berlin` is 02:00 Berlin time on
/// both sides of a DST change (croner skips a nonexistent 02:30 and runs an ambiguous one once).
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    pattern: String,
}

impl Schedule {
    pub fn parse(pattern: &str, tz: &str) -> Result<Schedule, String> {
        let tz: Tz = parse_tz(tz)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern.trim())
            .map_err(|e| format!("schedule {pattern:?} is not a crontab line: {e}"))?;
        Ok(Schedule { cron, tz, pattern: pattern.trim().to_string() })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// croner's English description ("At 02:00 AM"), for logs and `/status`.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// How many occurrences fall in `(after, until]`, counting at most `cap`.
    pub fn occurrences_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> usize {
        let mut n = 0;
        let mut t = after;
        while n < cap {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}

pub fn parse_tz(tz: &str) -> Result<Tz, String> {
    tz.trim().parse::<Tz>().map_err(|_| format!("unknown time zone {tz:?} (use an IANA name such as \"UTC\" or \"Europe/Berlin\")"))
}

/// Wall-clock time for the scheduler.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (production).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time that advances with tokio's clock from a fixed start: under
/// `tokio::time::pause()` the scheduler's sleeps complete in virtual time, instantly.
pub struct TokioClock {
    wall0: DateTime<Utc>,
    instant0: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall0: DateTime<Utc>) -> Arc<TokioClock> {
        Arc::new(TokioClock { wall0, instant0: tokio::time::Instant::now() })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.instant0;
        self.wall0 + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// Sleep until `clock` reads `at` or later. Re-checks after waking, so a wall clock that was
/// stepped (NTP) never makes a job fire early.
pub async fn sleep_until(clock: &dyn Clock, at: DateTime<Utc>) {
    loop {
        let now = clock.now();
        if now >= at {
            return;
        }
        let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_and_six_fields_with_seconds() {
        let every5 = Schedule::parse("*/5 * * * *", "UTC").unwrap();
        assert_eq!(every5.next_after(utc("2026-11-23T10:02:30Z")), Some(utc("2026-11-23T10:05:00Z")));
        assert_eq!(every5.next_after(utc("2026-11-23T10:05:00Z")), Some(utc("2026-11-23T10:10:00Z")), "strictly after");
        let secs = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(secs.next_after(utc("2026-11-23T10:00:01Z")), Some(utc("2026-11-23T10:00:10Z")));
    }

    #[test]
    fn named_time_zone_and_dst() {
        let s = Schedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1.
        assert_eq!(s.next_after(utc("2026-11-23T00:00:00Z")), Some(utc("2026-11-23T01:00:00Z")));
        // Summer: UTC+2.
        assert_eq!(s.next_after(utc("2026-06-30T23:00:00Z")), Some(utc("2026-07-01T00:00:00Z")));
    }

    #[test]
    fn bad_patterns_and_zones_are_refused() {
        assert!(Schedule::parse("every five minutes", "UTC").unwrap_err().contains("not a crontab line"));
        assert!(Schedule::parse("61 * * * *", "UTC").is_err());
        assert!(Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err().contains("unknown time zone"));
    }

    #[test]
    fn occurrences_in_a_window() {
        let s = Schedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(s.occurrences_between(utc("2026-11-23T10:00:00Z"), utc("2026-11-23T10:03:30Z"), 100), 3);
        assert_eq!(s.occurrences_between(utc("2026-11-23T10:00:00Z"), utc("2026-11-23T10:00:59Z"), 100), 0);
    }
}
