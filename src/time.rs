//! Event times: epoch milliseconds (`i64`), parsed from RFC 3339 and
//! formatted back as RFC 3339 UTC.
//!
//! Hand-written rather than pulled from a date crate because it sits on the
//! hot path of every reading (no allocation, no locale, no time zone
//! database) and needs exactly two shapes: RFC 3339 with an offset, and the
//! naive `YYYY-MM-DD hh:mm:ss[.fff]` that CSV exports (SKAB) use, read as UTC.

use std::fmt::Write as _;

/// Smallest accepted event time: 0000-01-01T00:00:00Z.
pub const MIN_MS: i64 = -62_167_219_200_000;
/// Largest accepted event time: 9999-12-31T23:59:59.999Z.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Whether a timestamp without an offset is an error or UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naive {
    Reject,
    AsUtc,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        let mut v = 0u32;
        for &c in s {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        self.i += n;
        Some(v)
    }

    fn byte(&mut self, want: &[u8]) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if want.contains(&c) {
            self.i += 1;
            Some(c)
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
}

/// Parses an RFC 3339 date-time (`T`, `t` or a space between date and
/// time; fractional seconds of any length, truncated to milliseconds;
/// `Z`/`z` or `±hh:mm`). With [`Naive::AsUtc`] the offset may be missing
/// and the time is taken as UTC. Returns epoch milliseconds.
pub fn parse_rfc3339(s: &str, naive: Naive) -> Option<i64> {
    let mut c = Cursor { b: s.as_bytes(), i: 0 };
    let year = c.digits(4)?;
    c.byte(b"-")?;
    let month = c.digits(2)?;
    c.byte(b"-")?;
    let day = c.digits(2)?;
    c.byte(b"Tt ")?;
    let hour = c.digits(2)?;
    c.byte(b":")?;
    let minute = c.digits(2)?;
    c.byte(b":")?;
    let second = c.digits(2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        // 60 is a leap second; it is counted as the first second of the next minute.
        || second > 60
    {
        return None;
    }
    let mut millis = 0i64;
    if c.byte(b".").is_some() {
        let start = c.i;
        let mut scale = 100;
        while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
            millis += i64::from(d - b'0') * scale;
            scale /= 10;
            c.i += 1;
        }
        if c.i == start {
            return None;
        }
    }
    let offset_min: i64 = match c.peek() {
        None if naive == Naive::AsUtc => 0,
        None => return None,
        Some(b'Z' | b'z') => {
            c.i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let oh = c.digits(2)?;
            c.byte(b":")?;
            let om = c.digits(2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = i64::from(oh * 60 + om);
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        Some(_) => return None,
    };
    if c.i != c.b.len() {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second) - offset_min * 60;
    let ms = secs * 1000 + millis;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms)
}

/// Parses a CSV time cell: RFC 3339 (naive taken as UTC) or integer epoch
/// milliseconds.
pub fn parse_cell(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) {
        return s.parse::<i64>().ok().filter(|ms| (MIN_MS..=MAX_MS).contains(ms));
    }
    parse_rfc3339(s, Naive::AsUtc)
}

/// Appends `ms` as RFC 3339 UTC (`2026-11-21T10:15:03.250Z`; whole seconds
/// are written without a fraction: `2026-11-21T10:15:00Z`).
pub fn write_rfc3339(out: &mut String, ms: i64) {
    let ms = ms.clamp(MIN_MS, MAX_MS);
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, f) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    // Writing to a String cannot fail.
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if f != 0 {
        let _ = write!(out, ".{f:03}");
    }
    out.push('Z');
}

/// `ms` as an RFC 3339 UTC string.
pub fn format_rfc3339(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_rfc3339(&mut s, ms);
    s
}

/// Milliseconds since the epoch now, from the system clock.
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(MAX_MS),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(MAX_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_spec_examples() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z", Naive::Reject), Some(0));
        assert_eq!(parse_rfc3339("2026-11-21T10:15:03.250Z", Naive::Reject), Some(1_795_256_103_250));
        // Same instant written with an offset.
        assert_eq!(parse_rfc3339("2026-11-21T12:15:03.250+02:00", Naive::Reject), Some(1_795_256_103_250));
        assert_eq!(parse_rfc3339("2026-11-21t05:15:03.2509999-05:00", Naive::Reject), Some(1_795_256_103_250));
    }

    #[test]
    fn naive_times_need_permission() {
        assert_eq!(parse_rfc3339("2020-03-09 10:14:33", Naive::Reject), None);
        assert_eq!(parse_rfc3339("2020-03-09 10:14:33", Naive::AsUtc), Some(1_583_748_873_000));
        assert_eq!(parse_cell("2020-03-09 10:14:33"), Some(1_583_748_873_000));
        assert_eq!(parse_cell("1583748873000"), Some(1_583_748_873_000));
    }

    #[test]
    fn rejects_impossible_dates() {
        for s in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:61Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00Z ",
            "26-01-01T00:00:00Z",
            "",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(s, Naive::Reject), None, "{s}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z", Naive::Reject).is_some());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z", Naive::Reject).is_some());
        assert!(parse_rfc3339("1900-02-29T00:00:00Z", Naive::Reject).is_none());
    }

    #[test]
    fn formats_whole_seconds_without_fraction() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_256_103_250), "2026-11-21T10:15:03.250Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ms in MIN_MS..=MAX_MS) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms), Naive::Reject), Some(ms));
        }

        #[test]
        fn days_round_trip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!(d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
