//! Backup schedules in crontab syntax (croner): 5 fields, or 6 with a leading seconds field;
//! weekdays 0-7 with 0 and 7 = Sunday; day-of-month and day-of-week combine with OR, like cron.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// A parsed schedule expression.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Schedule {
    /// Parses a crontab expression; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !text.trim().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "`{text}` has {fields} fields; a schedule has 5 (minute hour day-of-month month day-of-week) \
                 or 6 (with a leading seconds field)"
            ));
        }
        let cron = croner::Cron::from_str(text).map_err(|e| format!("invalid schedule `{text}`: {e}"))?;
        Ok(Schedule {
            text: text.trim().to_string(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after`, evaluated in `zone`.
    pub fn next_after(&self, after: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        match zone {
            Zone::Utc => self.cron.find_next_occurrence(&after, false).ok(),
            Zone::Local => self
                .cron
                .find_next_occurrence(&after.with_timezone(&chrono::Local), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Zone::Named(tz) => self
                .cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// The time zone schedules (and retention's hourly/daily/... buckets) are read in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Zone {
    /// The machine's local zone (default).
    #[default]
    Local,
    /// UTC.
    Utc,
    /// An IANA zone.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `local`, `UTC`, or an IANA name such as `Europe/Berlin`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        match text {
            "local" | "Local" => Ok(Zone::Local),
            "UTC" | "utc" | "Etc/UTC" => Ok(Zone::Utc),
            name => name.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
                format!("unknown time zone `{name}`: use `local`, `UTC` or an IANA name like `Europe/Berlin`")
            }),
        }
    }

    /// Local wall-clock time of an instant in this zone.
    pub fn wall_clock(&self, t: DateTime<Utc>) -> chrono::NaiveDateTime {
        match self {
            Zone::Local => t.with_timezone(&chrono::Local).naive_local(),
            Zone::Utc => t.naive_utc(),
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(expr: &str, from: DateTime<Utc>) -> DateTime<Utc> {
        Schedule::parse(expr)
            .unwrap()
            .next_after(from, &Zone::Utc)
            .unwrap()
    }

    #[test]
    fn weekday_ranges_use_crontab_numbering() {
        // 2026-11-21 is a Saturday: `1-5` means Monday to Friday, so the next is Monday the 23rd.
        assert_eq!(
            next("0 9 * * 1-5", at(2026, 11, 21, 12, 0, 0)),
            at(2026, 11, 23, 9, 0, 0)
        );
        // 0 and 7 are both Sunday.
        assert_eq!(
            next("30 2 * * 0", at(2026, 11, 21, 12, 0, 0)),
            at(2026, 11, 22, 2, 30, 0)
        );
        assert_eq!(
            next("30 2 * * 7", at(2026, 11, 21, 12, 0, 0)),
            at(2026, 11, 22, 2, 30, 0)
        );
        assert_eq!(
            next("0 0 * * SAT", at(2026, 11, 21, 12, 0, 0)),
            at(2026, 11, 28, 0, 0, 0)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // "the 13th, or any Friday": from Sat 2026-11-21 the next Friday (27th) comes before Dec 13.
        assert_eq!(
            next("0 0 13 * 5", at(2026, 11, 21, 0, 0, 0)),
            at(2026, 11, 27, 0, 0, 0)
        );
        // From Sat 2026-12-12 the 13th (a Sunday) comes before Friday the 18th.
        assert_eq!(
            next("0 0 13 * 5", at(2026, 12, 12, 0, 0, 0)),
            at(2026, 12, 13, 0, 0, 0)
        );
    }

    #[test]
    fn optional_seconds_field() {
        assert_eq!(
            next("*/10 * * * * *", at(2026, 11, 21, 12, 0, 3)),
            at(2026, 11, 21, 12, 0, 10)
        );
        assert_eq!(
            next("15 0 3 * * *", at(2026, 11, 21, 12, 0, 0)),
            at(2026, 11, 22, 3, 0, 15)
        );
        // Strictly after: a fire time equal to `after` is not returned again.
        assert_eq!(
            next("0 3 * * *", at(2026, 11, 22, 3, 0, 0)),
            at(2026, 11, 23, 3, 0, 0)
        );
    }

    #[test]
    fn zones_shift_wall_clock_times() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let s = Schedule::parse("0 3 * * *").unwrap();
        // 03:00 in Berlin (CET, UTC+1 in November) is 02:00 UTC.
        assert_eq!(
            s.next_after(at(2026, 11, 21, 12, 0, 0), &berlin),
            Some(at(2026, 11, 22, 2, 0, 0))
        );
        assert!(
            Zone::parse("Mars/Olympus")
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(Schedule::parse("* * * *").unwrap_err().contains("has 4 fields"));
        assert!(
            Schedule::parse("61 * * * *")
                .unwrap_err()
                .contains("invalid schedule")
        );
        assert!(Schedule::parse("0 0 * * 8").is_err());
    }
}
