//! libbuildpack's `dependency_deprecation_dates`: when a dependency being installed is
//! in an entry's `version_line` and the entry's `date` is past or less than 30 days
//! away, staging warns, naming the dependency, the line, the date and the `link`.
//! Operators plan upgrades from these warnings. The clock is the run's context
//! (`supply::Context::now`), so tests pass a fixed one.

use crate::manifest::Dependency;
use crate::redact::Redacted;
use crate::version_line::{Version, VersionLine};
use std::time::{SystemTime, UNIX_EPOCH};

/// libbuildpack warns once the end of life is less than this far away (installer.go).
pub const WARN_WITHIN_SECS: i64 = 30 * 86_400;
const NANOS: i128 = 1_000_000_000;

/// One entry, typed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub name: String,
    /// As written, for the warning.
    pub version_line: String,
    pub line: Line,
    pub date: Date,
    pub link: Option<String>,
}

/// What `version_line` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Range(VersionLine),
    /// Not a range: libbuildpack then matches a version that is not semver by equal
    /// text. The manifest check keeps it only for such a version; `why` says what is
    /// wrong with it as a range.
    Text {
        why: String,
    },
}

impl Line {
    pub fn parse(s: &str) -> Line {
        match VersionLine::parse(s) {
            Ok(range) => Line::Range(range),
            Err(why) => Line::Text { why },
        }
    }
}

/// A calendar date, `YYYY-MM-DD` (Go's layout `2006-01-02`, as libbuildpack parses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    pub fn parse(s: &str) -> Result<Date, String> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 10
            || b[4] != b'-'
            || b[7] != b'-'
            || !digits(0..4)
            || !digits(5..7)
            || !digits(8..10)
        {
            return Err("must be a date written as YYYY-MM-DD, such as 2027-04-01".into());
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or(0);
        let (year, month, day) = (num(0..4), num(5..7) as u8, num(8..10) as u8);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(format!("{s:?} is not a day of the calendar"));
        }
        Ok(Date { year, month, day })
    }

    /// Days from 1970-01-01 (the civil-from-days algorithm, proleptic Gregorian).
    fn days_since_epoch(self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Nanoseconds since the epoch, negative before it: Go compares time.Time to the
/// nanosecond, so a clock half a second past the 30-day mark is inside the window.
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl Deprecation {
    /// True when this entry is about `dep`'s version: in the range, or, for a version
    /// that is not semver, written the same (libbuildpack's rule).
    pub fn covers(&self, dep: &Dependency) -> bool {
        if self.name != dep.name {
            return false;
        }
        match (&self.line, Version::parse(&dep.version)) {
            (Line::Range(range), Some(v)) => range.matches(&v),
            (_, None) => self.version_line == dep.version,
            (Line::Text { .. }, Some(_)) => false,
        }
    }

    /// The warning for a run at `now`: when the end of life (midnight UTC of `date`)
    /// is past or less than 30 days away, as libbuildpack decides it.
    pub fn warning(&self, now: SystemTime) -> Option<String> {
        let now = unix_nanos(now);
        let eol = i128::from(self.date.days_since_epoch()) * 86_400 * NANOS;
        if eol - now >= i128::from(WARN_WITHIN_SECS) * NANOS {
            return None;
        }
        let today = now.div_euclid(86_400 * NANOS);
        let days =
            i64::try_from(i128::from(self.date.days_since_epoch()) - today).unwrap_or(i64::MIN);
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        let (when, tense) = match days {
            0 => (format!("today, {}", self.date), "do"),
            d if d > 0 => (format!("{}, in {d} day{}", self.date, plural(d)), "will"),
            d => (format!("{}, {} day{} ago", self.date, -d, plural(-d)), "do"),
        };
        let verb = if days < 0 { "was" } else { "is" };
        let carry = if tense == "will" {
            "will not include"
        } else {
            "do not include"
        };
        let see = self
            .link
            .as_deref()
            .map(|l| format!("; see {}", Redacted::str(l)))
            .unwrap_or_default();
        Some(format!(
            "{} {} is deprecated: its end of life {verb} {when}, and buildpacks released \
             after that date {carry} it{see}",
            self.name, self.version_line
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fixed clock: `date` at `hh:mm` UTC.
    fn at(date: &str, hh: u64, mm: u64) -> SystemTime {
        let days = Date::parse(date).expect("date").days_since_epoch();
        UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(days).expect("after 1970") * 86_400 + hh * 3600 + mm * 60,
            )
    }

    fn entry(line: &str, date: &str, link: Option<&str>) -> Deprecation {
        Deprecation {
            name: "config-server".into(),
            version_line: line.into(),
            line: Line::parse(line),
            date: Date::parse(date).expect("date"),
            link: link.map(str::to_string),
        }
    }

    const LINK: &str = "https://example.com/config-server/eol";

    #[test]
    fn far_near_and_past() {
        let e = entry("0.1.x", "2027-04-01", Some(LINK));
        // Far: 31 days and more.
        assert_eq!(e.warning(at("2027-03-01", 0, 0)), None);
        assert_eq!(e.warning(at("2026-01-01", 12, 0)), None);
        // Near.
        assert_eq!(
            e.warning(at("2027-03-15", 9, 30)).as_deref(),
            Some(
                "config-server 0.1.x is deprecated: its end of life is 2027-04-01, in 17 days, \
                 and buildpacks released after that date will not include it; see \
                 https://example.com/config-server/eol"
            )
        );
        assert_eq!(
            e.warning(at("2027-03-31", 23, 59)).as_deref(),
            Some(
                "config-server 0.1.x is deprecated: its end of life is 2027-04-01, in 1 day, \
                 and buildpacks released after that date will not include it; see \
                 https://example.com/config-server/eol"
            )
        );
        // Today, and past.
        assert!(e.warning(at("2027-04-01", 8, 0)).expect("today").contains(
            "its end of life is today, 2027-04-01, and buildpacks released after \
                       that date do not include it"
        ));
        assert_eq!(
            e.warning(at("2027-04-15", 0, 0)).as_deref(),
            Some(
                "config-server 0.1.x is deprecated: its end of life was 2027-04-01, 14 days \
                 ago, and buildpacks released after that date do not include it; see \
                 https://example.com/config-server/eol"
            )
        );
    }

    #[test]
    fn thirty_days_is_measured_from_midnight_utc_as_libbuildpack_does() {
        let e = entry("0.1.x", "2027-04-01", None);
        // Exactly 30 days before the end of life: not less than 30 days away.
        assert_eq!(e.warning(at("2027-03-02", 0, 0)), None);
        // Half a second later it is, as Go's time.Sub measures it.
        assert!(e
            .warning(at("2027-03-02", 0, 0) + Duration::from_millis(500))
            .is_some());
        // A minute later it is.
        let w = e.warning(at("2027-03-02", 0, 1)).expect("warns");
        assert!(
            w.ends_with("in 30 days, and buildpacks released after that date will not include it"),
            "{w}"
        );
        assert!(!w.contains("see"), "no link, no 'see': {w}");
    }

    #[test]
    fn covers_the_dependency_by_name_and_range() {
        let dep = |name: &str, version: &str| Dependency {
            name: name.into(),
            version: version.into(),
            uri: url::Url::parse("https://h/x.tgz").expect("url"),
            uri_text: "https://h/x.tgz".into(),
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .expect("sha"),
            cf_stacks: vec!["cflinuxfs4".into()],
            file: None,
        };
        let e = entry("0.1.x", "2027-04-01", None);
        assert!(e.covers(&dep("config-server", "0.1.0")));
        assert!(!e.covers(&dep("config-server", "0.2.0")));
        assert!(!e.covers(&dep("my-agent", "0.1.0")));
        // A version that is not semver is matched by equal text, as libbuildpack does.
        let odd = entry("1.2.3_4", "2027-04-01", None);
        assert!(odd.covers(&dep("config-server", "1.2.3_4")));
        assert!(!odd.covers(&dep("config-server", "1.2.3_5")));
        assert!(!odd.covers(&dep("config-server", "1.2.3")));
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            Date::parse("2028-02-29").expect("leap").to_string(),
            "2028-02-29"
        );
        for bad in [
            "2027-4-1",
            "27-04-01",
            "2027/04/01",
            "2027-04-01T00:00:00Z",
            "2027-13-01",
            "2027-02-29",
            "2100-02-29",
            "2027-04-31",
            "2027-00-10",
            "2027-01-00",
            "",
            "２０２７-04-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Date::parse("1970-01-01").expect("epoch").days_since_epoch(),
            0
        );
        assert_eq!(
            Date::parse("2000-03-01").expect("d").days_since_epoch(),
            11_017
        );
    }
}
