//! `[calendar]` and `[schedules.NAME]`: school days, term dates and time windows.

use std::fmt;

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[calendar]`: which days are school days.
///
/// Defaults: Monday to Friday are school days, no terms (so every weekday counts as a
/// school day until term dates are given), no closures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    pub school_days: Vec<DayName>,
    /// Term dates. When any are given, a school day must fall inside one.
    pub terms: Vec<Term>,
    /// Days the school is closed inside a term: half terms, INSET days, bank
    /// holidays. `"2026-10-26"` or a range `"2026-10-26..2026-10-30"` (inclusive).
    pub closures: Vec<DateRange>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            school_days: [
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ]
            .into_iter()
            .map(DayName)
            .collect(),
            terms: Vec::new(),
            closures: Vec::new(),
        }
    }
}

/// One term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    #[serde(default)]
    pub name: String,
    pub start: Date,
    pub end: Date,
}

/// `[schedules.NAME]`: a set of weekly time windows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `"school-days"` (per `[calendar]`), `"weekdays"`, `"every-day"`, or a list of
    /// day names (`["mon", "wed"]`). Default: `"school-days"`.
    #[serde(default)]
    pub days: Days,
    /// Windows in local school time, `"HH:MM-HH:MM"`; the end is exclusive and may be
    /// `24:00`. A window may not wrap past midnight (write two).
    pub times: Vec<TimeRange>,
}

/// Which days a schedule applies on.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Days {
    #[default]
    SchoolDays,
    Weekdays,
    EveryDay,
    List(Vec<DayName>),
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Days::SchoolDays => s.serialize_str("school-days"),
            Days::Weekdays => s.serialize_str("weekdays"),
            Days::EveryDay => s.serialize_str("every-day"),
            Days::List(days) => s.collect_seq(days),
        }
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<DayName>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) => match w.as_str() {
                "school-days" => Ok(Days::SchoolDays),
                "weekdays" => Ok(Days::Weekdays),
                "every-day" => Ok(Days::EveryDay),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not a day set: use \"school-days\", \"weekdays\", \
                     \"every-day\" or a list such as [\"mon\", \"tue\"]"
                ))),
            },
            Raw::List(v) => Ok(Days::List(v)),
        }
    }
}

/// A weekday written `mon`, `tue`, ... (or in full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayName(pub Weekday);

impl Serialize for DayName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = match self.0 {
            Weekday::Monday => "mon",
            Weekday::Tuesday => "tue",
            Weekday::Wednesday => "wed",
            Weekday::Thursday => "thu",
            Weekday::Friday => "fri",
            Weekday::Saturday => "sat",
            Weekday::Sunday => "sun",
        };
        s.serialize_str(name)
    }
}

impl<'de> Deserialize<'de> for DayName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let day = match s.to_ascii_lowercase().as_str() {
            "mon" | "monday" => Weekday::Monday,
            "tue" | "tuesday" => Weekday::Tuesday,
            "wed" | "wednesday" => Weekday::Wednesday,
            "thu" | "thursday" => Weekday::Thursday,
            "fri" | "friday" => Weekday::Friday,
            "sat" | "saturday" => Weekday::Saturday,
            "sun" | "sunday" => Weekday::Sunday,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "`{s}` is not a day of the week (mon, tue, wed, thu, fri, sat, sun)"
                )));
            }
        };
        Ok(DayName(day))
    }
}

/// A daily window in minutes since local midnight, `start < end <= 1440`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u16,
    pub end: u16,
}

impl TimeRange {
    /// Parses `"12:15-13:05"`.
    pub fn parse(s: &str) -> Result<TimeRange, String> {
        let bad =
            || format!("`{s}` is not a time window: write \"HH:MM-HH:MM\", e.g. \"12:15-13:05\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hhmm(a.trim()).ok_or_else(bad)?;
        let end = parse_hhmm(b.trim()).ok_or_else(bad)?;
        if start >= end {
            return Err(format!(
                "`{s}`: the window ends before it starts (a window cannot wrap past midnight; write two)"
            ));
        }
        Ok(TimeRange { start, end })
    }

    pub fn contains(self, minute_of_day: u16) -> bool {
        self.start <= minute_of_day && minute_of_day < self.end
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl Serialize for TimeRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TimeRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One date or an inclusive range of dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub first: Date,
    pub last: Date,
}

impl DateRange {
    pub fn parse(s: &str) -> Result<DateRange, String> {
        let date = |t: &str| {
            t.trim().parse::<Date>().map_err(|e| {
                format!("`{s}` is not a date or a date range (\"2026-10-26..2026-10-30\"): {e}")
            })
        };
        let (first, last) = match s.split_once("..") {
            Some((a, b)) => (date(a)?, date(b)?),
            None => {
                let d = date(s)?;
                (d, d)
            }
        };
        if last < first {
            return Err(format!("`{s}`: the range ends before it starts"));
        }
        Ok(DateRange { first, last })
    }

    pub fn contains(self, d: Date) -> bool {
        self.first <= d && d <= self.last
    }
}

impl Serialize for DateRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.collect_str(&self.first)
        } else {
            s.collect_str(&format_args!("{}..{}", self.first, self.last))
        }
    }
}

impl<'de> Deserialize<'de> for DateRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ranges_parse_and_reject() {
        assert_eq!(
            TimeRange::parse("12:15-13:05"),
            Ok(TimeRange {
                start: 735,
                end: 785
            })
        );
        assert_eq!(TimeRange::parse("16:00-24:00").map(|r| r.end), Ok(1440));
        assert_eq!(
            TimeRange::parse("lunch").unwrap_err(),
            "`lunch` is not a time window: write \"HH:MM-HH:MM\", e.g. \"12:15-13:05\""
        );
        assert_eq!(
            TimeRange::parse("22:00-02:00").unwrap_err(),
            "`22:00-02:00`: the window ends before it starts (a window cannot wrap past midnight; write two)"
        );
        assert!(TimeRange::parse("12:60-13:00").is_err());
        assert!(TimeRange::parse("24:30-24:40").is_err());
        let r = TimeRange::parse("12:15-13:05").unwrap();
        assert!(r.contains(735) && r.contains(784) && !r.contains(785) && !r.contains(734));
    }

    #[test]
    fn date_ranges() {
        let r = DateRange::parse("2026-10-26..2026-10-30").unwrap();
        assert!(r.contains("2026-10-28".parse().unwrap()));
        assert!(!r.contains("2026-10-31".parse().unwrap()));
        assert!(DateRange::parse("2026-10-30..2026-10-26").is_err());
        assert!(DateRange::parse("26/10/2026").is_err());
    }
}
