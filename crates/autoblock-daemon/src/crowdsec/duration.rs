//! Go duration strings as the CrowdSec Local API writes them (`3h59m58.1s`, `-111.46ms`).
//!
//! It owns parsing one such string into a sign and a [`Duration`]. It does not decide what a
//! negative or zero duration means for a decision (the stream module does).

use std::time::Duration;

/// A Go duration: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+`, or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration {
    /// The duration was negative (an expired or deleted decision).
    pub negative: bool,
    /// Its magnitude.
    pub magnitude: Duration,
}

impl GoDuration {
    /// The remaining time of a positive, non-zero duration.
    pub fn remaining(&self) -> Option<Duration> {
        (!self.negative && !self.magnitude.is_zero()).then_some(self.magnitude)
    }
}

/// Parses a Go duration string; the error says what is wrong with `s`.
pub fn parse(s: &str) -> Result<GoDuration, String> {
    let bad = |why: &str| format!("bad duration {s:?}: {why}");
    let mut rest = s;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(GoDuration {
            negative,
            magnitude: Duration::ZERO,
        });
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad("a number is missing"));
        }
        let unit_len = r
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(r.len(), |(i, _)| i);
        let (unit, r) = r.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => return Err(bad("a unit is missing")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad("number too large"))?
        };
        let mut part = int_v
            .checked_mul(nanos_per)
            .ok_or_else(|| bad("too large"))?;
        // Fractional digits beyond nanosecond precision are dropped, as Go does.
        let mut scale = nanos_per;
        for d in frac.bytes().take(30) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(|| bad("too large"))?;
        rest = r;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("too large"))?;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(GoDuration {
        negative,
        magnitude: Duration::new(secs, nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        parse(s).unwrap().magnitude
    }

    #[test]
    fn lapi_forms() {
        assert_eq!(
            d("3h59m58.1s"),
            Duration::from_secs(3 * 3600 + 59 * 60 + 58) + Duration::from_millis(100)
        );
        assert_eq!(
            d("1h29m57.324043164s"),
            Duration::new(3600 + 29 * 60 + 57, 324_043_164)
        );
        assert_eq!(d("90m"), Duration::from_secs(5400));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("7us"), Duration::from_micros(7));
        assert_eq!(d("7µs"), Duration::from_micros(7));
        assert_eq!(d("3ns"), Duration::from_nanos(3));
        assert_eq!(d(".5s"), Duration::from_millis(500));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("1.0000000019s"), Duration::new(1, 1));
    }

    #[test]
    fn sign() {
        let g = parse("-111.464444ms").unwrap();
        assert!(g.negative);
        assert_eq!(
            g.magnitude,
            Duration::from_micros(111_464) + Duration::from_nanos(444)
        );
        assert_eq!(g.remaining(), None);
        assert_eq!(
            parse("+2s").unwrap().remaining(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse("0s").unwrap().remaining(), None);
    }

    #[test]
    fn refused() {
        for s in [
            "",
            "-",
            "h",
            "3",
            "3x",
            "1.5",
            "1h30",
            "s1",
            "..s",
            "99999999999999999999999h",
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(&format!("{s:?}")), "{e}");
        }
    }
}
