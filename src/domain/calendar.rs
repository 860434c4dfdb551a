//! Working days in Vietnam: what a procedure's deadline in working days
//! (ngày làm việc) counts. Saturdays and Sundays are not working days for
//! state agencies, nor are the public holidays of the Labour Code 2019
//! (art. 112): New Year's Day, five days of Tết, the Hùng Kings' day (the
//! 10th of the third lunar month), 30 April, 1 May, and 2 September with the
//! day before it. A holiday on a Saturday or Sunday gives the next working
//! day off instead. Each year the Prime Minister also moves some days (a
//! bridge day off, made up on a Saturday): those come from the
//! configuration, as extra days off and extra working days.
//!
//! The lunar dates are computed with the Vietnamese calendar (new moons and
//! solar terms at UTC+7, after Hồ Ngọc Đức's published method), which in
//! some years differs from the Chinese one (Tết 1985: 21 January in Vietnam).

use jiff::civil::{Date, Weekday};
use std::collections::BTreeSet;
use std::f64::consts::PI;

/// Vietnam's time zone, in hours from UTC.
const TIME_ZONE: f64 = 7.0;

/// The Julian day number of a date.
fn julian_day(d: Date) -> i64 {
    let (dd, mm, yy) = (i64::from(d.day()), i64::from(d.month()), i64::from(d.year()));
    let a = (14 - mm) / 12;
    let y = yy + 4800 - a;
    let m = mm + 12 * a - 3;
    dd + (153 * m + 2) / 5 + 365 * y + y / 4 - y / 100 + y / 400 - 32045
}

/// The date of a Julian day number.
fn date_of(jd: i64) -> Option<Date> {
    // 1970-01-01 is Julian day 2440588.
    Date::new(1970, 1, 1).ok()?.checked_add(jiff::Span::new().days(jd - 2_440_588)).ok()
}

/// The day of the `k`th new moon since 1900-01-01, at UTC+7.
fn new_moon_day(k: i64) -> i64 {
    let k = k as f64;
    let t = k / 1236.85;
    let (t2, t3) = (t * t, t * t * t);
    let dr = PI / 180.0;
    let mut jd1 = 2415020.75933 + 29.53058868 * k + 0.0001178 * t2 - 0.000000155 * t3;
    jd1 += 0.00033 * ((166.56 + 132.87 * t - 0.009173 * t2) * dr).sin();
    let m = 359.2242 + 29.10535608 * k - 0.0000333 * t2 - 0.00000347 * t3;
    let mpr = 306.0253 + 385.81691806 * k + 0.0107306 * t2 + 0.00001236 * t3;
    let f = 21.2964 + 390.67050646 * k - 0.0016528 * t2 - 0.00000239 * t3;
    let mut c1 = (0.1734 - 0.000393 * t) * (m * dr).sin() + 0.0021 * (2.0 * dr * m).sin();
    c1 = c1 - 0.4068 * (mpr * dr).sin() + 0.0161 * (dr * 2.0 * mpr).sin();
    c1 -= 0.0004 * (dr * 3.0 * mpr).sin();
    c1 = c1 + 0.0104 * (dr * 2.0 * f).sin() - 0.0051 * (dr * (m + mpr)).sin();
    c1 = c1 - 0.0074 * (dr * (m - mpr)).sin() + 0.0004 * (dr * (2.0 * f + m)).sin();
    c1 = c1 - 0.0004 * (dr * (2.0 * f - m)).sin() - 0.0006 * (dr * (2.0 * f + mpr)).sin();
    c1 = c1 + 0.0010 * (dr * (2.0 * f - mpr)).sin() + 0.0005 * (dr * (2.0 * mpr + m)).sin();
    let delta_t = if t < -11.0 {
        0.001 + 0.000839 * t + 0.0002261 * t2 - 0.00000845 * t3 - 0.000000081 * t * t3
    } else {
        -0.000278 + 0.000265 * t + 0.000262 * t2
    };
    let jd_new = jd1 + c1 - delta_t;
    (jd_new + 0.5 + TIME_ZONE / 24.0).floor() as i64
}

/// Which twelfth of the ecliptic the sun is in at the start of a day (0-11).
fn sun_longitude(jdn: i64) -> i64 {
    let t = (jdn as f64 - 2451545.5 - TIME_ZONE / 24.0) / 36525.0;
    let t2 = t * t;
    let dr = PI / 180.0;
    let m = 357.52910 + 35999.05030 * t - 0.0001559 * t2 - 0.00000048 * t * t2;
    let l0 = 280.46645 + 36000.76983 * t + 0.0003032 * t2;
    let mut dl = (1.914600 - 0.004817 * t - 0.000014 * t2) * (dr * m).sin();
    dl += (0.019993 - 0.000101 * t) * (dr * 2.0 * m).sin() + 0.000290 * (dr * 3.0 * m).sin();
    let mut l = (l0 + dl) * dr;
    l -= PI * 2.0 * (l / (PI * 2.0)).floor();
    (l / PI * 6.0).floor() as i64
}

/// The first day of the 11th lunar month of the lunar year that ends in `year`.
fn lunar_month_11(year: i16) -> i64 {
    let off = julian_day(Date::new(year, 12, 31).unwrap_or_default()) - 2415021;
    let k = (off as f64 / 29.530588853).floor() as i64;
    let nm = new_moon_day(k);
    if sun_longitude(nm) >= 9 {
        new_moon_day(k - 1)
    } else {
        nm
    }
}

/// How many months after month 11 the leap month falls.
fn leap_month_offset(a11: i64) -> i64 {
    let k = ((a11 as f64 - 2415021.076998695) / 29.530588853 + 0.5).floor() as i64;
    let mut i = 1;
    let mut arc = sun_longitude(new_moon_day(k + i));
    loop {
        let last = arc;
        i += 1;
        arc = sun_longitude(new_moon_day(k + i));
        if arc == last || i >= 14 {
            return i - 1;
        }
    }
}

/// The solar date of a day of the Vietnamese lunar calendar (not in a leap month).
pub fn lunar_to_solar(day: i64, month: i64, year: i16) -> Option<Date> {
    let (a11, b11) = if month < 11 {
        (lunar_month_11(year - 1), lunar_month_11(year))
    } else {
        (lunar_month_11(year), lunar_month_11(year + 1))
    };
    let k = (0.5 + (a11 as f64 - 2415021.076998695) / 29.530588853).floor() as i64;
    let mut off = month - 11;
    if off < 0 {
        off += 12;
    }
    if b11 - a11 > 365 && off >= leap_month_offset(a11) {
        off += 1;
    }
    date_of(new_moon_day(k + off) + day - 1)
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The public holidays of a year by the Labour Code, with the days off given
/// for those that fall on a weekend.
pub fn public_holidays(year: i16) -> BTreeSet<Date> {
    let mut days = Vec::new();
    let fixed = [(1, 1), (4, 30), (5, 1), (9, 1), (9, 2)];
    days.extend(fixed.iter().filter_map(|&(m, d)| Date::new(year, m, d).ok()));
    // Tết: the last day of the old year and the first four of the new.
    if let Some(tet) = lunar_to_solar(1, 1, year) {
        days.extend((-1..4).filter_map(|n| tet.checked_add(jiff::Span::new().days(n)).ok()));
    }
    days.extend(lunar_to_solar(10, 3, year));
    let mut holidays: BTreeSet<Date> = days.iter().copied().collect();
    // Each holiday on a weekend gives the next day that is neither.
    for d in days.iter().filter(|d| is_weekend(**d)) {
        let mut next = *d;
        while let Ok(n) = next.tomorrow() {
            next = n;
            if !is_weekend(next) && !holidays.contains(&next) {
                holidays.insert(next);
                break;
            }
        }
    }
    holidays
}

/// Today's date in Vietnam (UTC+7, no daylight saving).
pub fn today_in_vietnam() -> Date {
    let offset = jiff::tz::Offset::constant(7);
    jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::fixed(offset)).date()
}

/// The working days of state agencies: weekdays that are not holidays, with
/// the year's moved days from the configuration.
#[derive(Debug, Clone, Default)]
pub struct WorkingCalendar {
    /// Days off besides the public holidays (bridge days, moved days).
    pub extra_days_off: BTreeSet<Date>,
    /// Saturdays or Sundays worked to make a bridge day up.
    pub extra_working_days: BTreeSet<Date>,
}

impl WorkingCalendar {
    pub fn is_working_day(&self, d: Date) -> bool {
        self.works(d, &public_holidays(d.year()))
    }

    /// Whether `d` is a working day, given its year's public holidays.
    fn works(&self, d: Date, holidays: &BTreeSet<Date>) -> bool {
        if self.extra_working_days.contains(&d) {
            return true;
        }
        !is_weekend(d) && !self.extra_days_off.contains(&d) && !holidays.contains(&d)
    }

    /// The day `n` working days after `from` (which itself does not count):
    /// a deadline of `n` working days for something received on `from`.
    pub fn add_working_days(&self, from: Date, n: u32) -> Date {
        let mut day = from;
        let mut left = n;
        // Each year's holidays are worked out once, not for every day counted.
        let mut year = (from.year(), public_holidays(from.year()));
        while left > 0 {
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return day,
            }
            if day.year() != year.0 {
                year = (day.year(), public_holidays(day.year()));
            }
            if self.works(day, &year.1) {
                left -= 1;
            }
        }
        day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i16, m: i8, d: i8) -> Date {
        Date::new(y, m, d).unwrap()
    }

    #[test]
    fn tet_and_the_hung_kings_day_fall_on_the_vietnamese_lunar_dates() {
        for (year, tet) in [(2023, (1, 22)), (2024, (2, 10)), (2025, (1, 29)), (2026, (2, 17)), (2027, (2, 6))] {
            assert_eq!(lunar_to_solar(1, 1, year), Some(date(year, tet.0, tet.1)), "Tết {year}");
        }
        // The Vietnamese calendar, not the Chinese: Tết 1985 came a month earlier.
        assert_eq!(lunar_to_solar(1, 1, 1985), Some(date(1985, 1, 21)));
        for (year, day) in [(2024, (4, 18)), (2025, (4, 7)), (2026, (4, 26))] {
            assert_eq!(lunar_to_solar(10, 3, year), Some(date(year, day.0, day.1)), "Hùng Kings {year}");
        }
    }

    #[test]
    fn deadlines_count_working_days_across_weekends_holidays_and_moved_days() {
        let c = WorkingCalendar::default();
        // 2026: the Hùng Kings' day is Sunday 26 April, so Monday 27 is off;
        // 30 April and 1 May are Thursday and Friday.
        let holidays = public_holidays(2026);
        assert!(holidays.contains(&date(2026, 4, 27)) && holidays.contains(&date(2026, 5, 1)));
        assert_eq!(c.add_working_days(date(2026, 4, 24), 3), date(2026, 5, 4));
        // Tết 2026: 16 to 20 February, then the weekend.
        assert_eq!(c.add_working_days(date(2026, 2, 13), 1), date(2026, 2, 23));
        // An ordinary week: Friday plus 2 is Tuesday.
        assert_eq!(c.add_working_days(date(2026, 10, 9), 2), date(2026, 10, 13));
        // A bridge day off, made up on a Saturday.
        let moved = WorkingCalendar {
            extra_days_off: [date(2026, 10, 12)].into(),
            extra_working_days: [date(2026, 10, 10)].into(),
        };
        assert_eq!(moved.add_working_days(date(2026, 10, 9), 2), date(2026, 10, 13));
        assert!(moved.is_working_day(date(2026, 10, 10)) && !moved.is_working_day(date(2026, 10, 12)));
    }
}
