//! How numbers, shares, durations and times read on the pages.

/// `1234567` → `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share 0..1 as a percentage with one decimal: `0.5234` → `52.3 %`.
pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// `n` things, singular or plural: "1 problem", "3 problems".
pub fn things(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", count(n as i64))
    }
}

/// A rate per second, rounded to whole units with separators.
pub fn rate(per_s: f64) -> String {
    count(per_s.round() as i64)
}

/// `75.2` → `1m 15s`; under a minute with one decimal.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s.round() as u64;
    let (h, m, sec) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// A planned span of time: `48 h`, `1 h 30 min`, `45 min`, `90 s`.
pub fn span(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        _ => duration(seconds as f64),
    }
}

/// Seconds since the Unix epoch as `2026-12-01 09:30:05 UTC`.
pub fn timestamp(epoch_s: f64) -> String {
    let secs = epoch_s.floor() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A factor like `0.85` as `×0.85`, dropping needless zeros.
pub fn factor(f: f64) -> String {
    let text = format!("{f:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("×{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
        assert_eq!(percent(0.5234), "52.3 %");
        assert_eq!(rate(80_100.4), "80,100");
        assert_eq!(factor(0.85), "×0.85");
        assert_eq!(factor(2.0), "×2");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(duration(4.25), "4.2s");
        assert_eq!(duration(75.2), "1m 15s");
        assert_eq!(duration(3_725.0), "1h 02m 05s");
        assert_eq!(span(172_800), "48 h");
        assert_eq!(span(5_400), "1 h 30 min");
        assert_eq!(span(2_700), "45 min");
        assert_eq!(span(45), "45 s");
        assert_eq!(span(90), "1m 30s");
        assert_eq!(timestamp(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(1_796_117_405.0), "2026-12-01 09:30:05 UTC");
        assert_eq!(timestamp(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }
}
