//! A tiny UTC calendar for the times a trace records (`started_at`, `ended_at`) and
//! for default trace names, so the crate needs no date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// A moment broken into UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanosecond: u32,
}

impl UtcTime {
    /// The calendar fields of `time`; a time before 1970 (a clock set wrong) is taken
    /// as the epoch itself.
    pub fn from_system_time(time: SystemTime) -> UtcTime {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs();
        let days = (secs / 86_400) as i64;
        let secs_of_day = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: secs_of_day / 3600,
            minute: secs_of_day / 60 % 60,
            second: secs_of_day % 60,
            nanosecond: since_epoch.subsec_nanos(),
        }
    }

    /// The current time.
    pub fn now() -> UtcTime {
        UtcTime::from_system_time(SystemTime::now())
    }

    /// RFC 3339 with microseconds and `Z`: `2024-05-01T12:34:56.123456Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanosecond / 1000
        )
    }

    /// `YYYYmmdd-HHMMSS`, the time part of a default trace name (DESIGN.md).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// RFC 3339 text of `time` in UTC (see [`UtcTime::rfc3339`]).
pub fn rfc3339(time: SystemTime) -> String {
    UtcTime::from_system_time(time).rfc3339()
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01 (days >= 0),
/// by Howard Hinnant's `civil_from_days` (proleptic Gregorian calendar, 400-year eras).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> UtcTime {
        UtcTime::from_system_time(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(at(0, 0).rfc3339(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn known_instants_match_their_calendar_dates() {
        // `date -u -d @951782400` = Tue Feb 29 00:00:00 UTC 2000 (a 400-year leap day).
        assert_eq!(at(951_782_400, 0).rfc3339(), "2000-02-29T00:00:00.000000Z");
        // `date -u -d @1709251199` = Thu Feb 29 23:59:59 UTC 2024.
        assert_eq!(
            at(1_709_251_199, 999_999_999).rfc3339(),
            "2024-02-29T23:59:59.999999Z"
        );
        // `date -u -d @4102444800` = Fri Jan  1 00:00:00 UTC 2100 (not a leap year).
        assert_eq!(at(4_102_444_800, 0).compact(), "21000101-000000");
        // `date -u -d @4107542400` = Mon Mar  1 00:00:00 UTC 2100.
        assert_eq!(at(4_107_542_400, 0).compact(), "21000301-000000");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_previous_one() {
        let mut previous = at(0, 0);
        for day in 1..(400 * 366) {
            let next = at(day * 86_400 + 3_723, 0);
            let same_month = next.year == previous.year && next.month == previous.month;
            if same_month {
                assert_eq!(next.day, previous.day + 1, "{next:?} after {previous:?}");
            } else {
                assert_eq!(next.day, 1, "{next:?} after {previous:?}");
                let expected_days = days_in_month(previous.year, previous.month);
                assert_eq!(previous.day, expected_days, "{previous:?} ends its month");
            }
            assert_eq!((next.hour, next.minute, next.second), (1, 2, 3));
            previous = next;
        }
    }

    fn days_in_month(year: i64, month: u32) -> u32 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}
