//! `--timeout DURATION`: `90s`, `30m`, `2h`, `1h30m`, `1d`.

use std::time::Duration;

/// The longest `--timeout` accepted: a week (a larger value is a typo).
const MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration of one or more `<number><unit>` parts (units `s`, `m`,
/// `h`, `d`). A bare number is refused: seconds or minutes would be a guess.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty duration".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            if digits.len() > 9 {
                return Err(format!("`{text}` is too long"));
            }
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("`{text}`: `{c}` is not a unit (use s, m, h or d)")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}`: a number must come before `{c}`"))?;
        digits.clear();
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{text}` has no unit after `{digits}` (e.g. {digits}m)"
        ));
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err(format!("`{text}` is zero"));
    }
    if d > MAX {
        return Err(format!("`{text}` is longer than a week"));
    }
    Ok(d)
}

/// `1h30m` for 5400 s: how the CLI says a duration back.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(show(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show(Duration::from_secs(3)), "3s");
    }

    #[test]
    fn bad_durations_say_why() {
        for (bad, says) in [
            ("30", "no unit"),
            ("", "empty"),
            ("0m", "zero"),
            ("m", "number must come"),
            ("5x", "not a unit"),
            ("8d", "longer than a week"),
            ("9999999999s", "too long"),
            ("-5m", "not a unit"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
