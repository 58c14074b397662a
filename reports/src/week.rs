//! [`IsoWeek`]: the week a summary covers (`2026-W47`), and its days and period in
//! the school's time zone.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use schoolgate_events::Period;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 8601 week: Monday to Sunday, numbered 1 to 52 or 53 within its ISO year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    year: i16,
    week: i8,
}

/// Why a week could not be read or placed in time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeekError {
    #[error("`{0}` is not an ISO week: write YYYY-Www, e.g. 2026-W47")]
    Syntax(String),
    #[error("{year} has no week {week}")]
    NoSuchWeek { year: i16, week: i8 },
    #[error("week {week} cannot be placed in time zone {tz}: {message}")]
    Time {
        week: IsoWeek,
        tz: String,
        message: String,
    },
}

impl IsoWeek {
    /// The week `week` of ISO year `year`; week 53 exists only in some years.
    pub fn new(year: i16, week: i8) -> Result<IsoWeek, WeekError> {
        ISOWeekDate::new(year, week, Weekday::Monday)
            .map(|_| IsoWeek { year, week })
            .map_err(|_| WeekError::NoSuchWeek { year, week })
    }

    /// The week a day falls in.
    pub fn containing(date: Date) -> IsoWeek {
        let iso = date.iso_week_date();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The week a moment falls in, in the given time zone.
    pub fn at(time: Timestamp, tz: &TimeZone) -> IsoWeek {
        IsoWeek::containing(time.to_zoned(tz.clone()).date())
    }

    pub fn year(self) -> i16 {
        self.year
    }

    pub fn week(self) -> i8 {
        self.week
    }

    /// The Monday that starts the week.
    pub fn monday(self) -> Date {
        // `new` and `containing` only make weeks that exist.
        ISOWeekDate::new(self.year, self.week, Weekday::Monday)
            .map(|d| d.date())
            .unwrap_or(Date::MIN)
    }

    /// Monday to Sunday.
    pub fn days(self) -> [Date; 7] {
        let monday = self.monday();
        let mut days = [monday; 7];
        for (i, d) in days.iter_mut().enumerate().skip(1) {
            *d = monday.saturating_add((i as i64).days());
        }
        days
    }

    /// The week before.
    #[must_use]
    pub fn previous(self) -> IsoWeek {
        IsoWeek::containing(self.monday().saturating_sub(7.days()))
    }

    /// The week after.
    #[must_use]
    pub fn next(self) -> IsoWeek {
        IsoWeek::containing(self.monday().saturating_add(7.days()))
    }

    /// From Monday 00:00 to the next Monday 00:00, school time (so a week with a
    /// clock change is 167 or 169 hours long, as the school lived it).
    pub fn period(self, tz: &TimeZone) -> Result<Period, WeekError> {
        let from = local_midnight(self, self.monday(), tz)?;
        let to = local_midnight(self, self.next().monday(), tz)?;
        Ok(Period::new(from, to))
    }

    /// One day of the week, midnight to midnight school time.
    pub fn day_period(self, day: Date, tz: &TimeZone) -> Result<Period, WeekError> {
        let from = local_midnight(self, day, tz)?;
        let to = local_midnight(self, day.saturating_add(1.day()), tz)?;
        Ok(Period::new(from, to))
    }
}

fn local_midnight(week: IsoWeek, day: Date, tz: &TimeZone) -> Result<Timestamp, WeekError> {
    day.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| WeekError::Time {
            week,
            tz: tz.iana_name().unwrap_or("?").to_owned(),
            message: e.to_string(),
        })
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

impl FromStr for IsoWeek {
    type Err = WeekError;

    /// `2026-W47` (also `2026-w47` and `2026W47`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || WeekError::Syntax(s.to_owned());
        let t = s.trim();
        let (y, w) = t
            .split_once(['W', 'w'])
            .ok_or_else(syntax)
            .map(|(y, w)| (y.strip_suffix('-').unwrap_or(y), w))?;
        if y.len() != 4 || w.is_empty() || w.len() > 2 {
            return Err(syntax());
        }
        let year: i16 = y.parse().map_err(|_| syntax())?;
        let week: i8 = w.parse().map_err(|_| syntax())?;
        IsoWeek::new(year, week)
    }
}

impl Serialize for IsoWeek {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IsoWeek {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let w: IsoWeek = "2026-W47".parse().expect("valid");
        assert_eq!((w.year(), w.week()), (2026, 47));
        assert_eq!(w.to_string(), "2026-W47");
        assert_eq!(
            "2026w05".parse::<IsoWeek>().map(|w| w.to_string()).ok(),
            Some("2026-W05".into())
        );
        assert!("2026-47".parse::<IsoWeek>().is_err());
        assert!("2026-W54".parse::<IsoWeek>().is_err());
        assert!(
            "2025-W53".parse::<IsoWeek>().is_err(),
            "2025 has 52 ISO weeks"
        );
        assert!(
            "2026-W53".parse::<IsoWeek>().is_ok(),
            "2026 has 53 ISO weeks"
        );
    }

    #[test]
    fn days_and_neighbours() {
        let w: IsoWeek = "2026-W47".parse().expect("valid");
        assert_eq!(w.monday(), jiff::civil::date(2026, 11, 16));
        assert_eq!(w.days()[6], jiff::civil::date(2026, 11, 22));
        assert_eq!(w.previous().to_string(), "2026-W46");
        let first: IsoWeek = "2027-W01".parse().expect("valid");
        assert_eq!(first.previous().to_string(), "2026-W53");
        assert_eq!(first.previous().next(), first);
    }

    #[test]
    fn period_follows_the_clock_change() {
        let tz = TimeZone::get("Europe/London").expect("tzdb");
        // 2026-W13 holds Sunday 29 March, when the clocks go forward.
        let w: IsoWeek = "2026-W13".parse().expect("valid");
        let p = w.period(&tz).expect("period");
        let hours = (p.to.as_second() - p.from.as_second()) / 3600;
        assert_eq!(hours, 167);
        assert_eq!(p.from.to_string(), "2026-03-23T00:00:00Z");
    }
}
