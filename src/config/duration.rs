//! Durations in Go's syntax (`14h`, `1m30s`, `250ms`, `1.5h`), as Pomerium's settings are written.

use std::time::Duration;

/// Parse a Go duration string. Negative durations are refused: every duration postern reads is a timeout or a
/// lifetime. `0` alone is accepted (Go accepts it); callers that need a positive value check for zero.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("a negative duration".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("an empty value".into());
    }
    let mut total: u128 = 0; // nanoseconds
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err("a number before each unit".into());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("a unit after each number (ns, us, ms, s, m, h)".into()),
            _ => return Err(format!("unknown unit {unit:?} (use ns, us, ms, s, m, h)")),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| "a number that fits")?
        };
        let mut part = whole.checked_mul(scale).ok_or("a duration that fits")?;
        // Fraction: add digit by digit so 1.5h is exact and long fractions cannot overflow.
        let mut div: u128 = 1;
        for d in frac.bytes().take(18) {
            div *= 10;
            part += u128::from(d - b'0') * scale / div;
        }
        total = total.checked_add(part).ok_or("a duration that fits")?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "a duration that fits")?;
    // The remainder is below 10^9, so it fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Write a duration back in Go's style for logs (`14h0m0s` is shown as `14h`).
pub fn show(d: Duration) -> String {
    let mut secs = d.as_secs();
    let ms = d.subsec_millis();
    if secs == 0 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let h = secs / 3600;
    secs %= 3600;
    let m = secs / 60;
    secs %= 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if secs > 0 || ms > 0 {
        if ms > 0 {
            out.push_str(&format!("{secs}.{ms:03}s"));
        } else {
            out.push_str(&format!("{secs}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        let ok: &[(&str, Duration)] = &[
            ("14h", Duration::from_secs(14 * 3600)),
            ("1m30s", Duration::from_secs(90)),
            ("250ms", Duration::from_millis(250)),
            ("1.5h", Duration::from_secs(5400)),
            ("30s", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("1h2m3s4ms", Duration::new(3723, 4_000_000)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (".5s", Duration::from_millis(500)),
            ("+2s", Duration::from_secs(2)),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s).as_ref(), Ok(want), "{s}");
        }
        for bad in [
            "",
            "14",
            "14 hours",
            "h",
            "-1s",
            "1d",
            "1.2.3s",
            "s1",
            "99999999999999999999999h",
            "1h 30m",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn shows_go_style() {
        assert_eq!(show(Duration::from_secs(14 * 3600)), "14h");
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_millis(250)), "250ms");
    }
}
