//! Sizes (`"64KiB"`) and durations (`"30s"`) as operators write them.
//!
//! Both are parsed once when the config loads; the hot path only ever sees
//! `u64` byte counts and `Duration`s.

use std::time::Duration;

/// Parses a size such as `"64KiB"`, `"16 MiB"`, `"512"` or `"1GB"` into bytes.
///
/// Binary (`KiB`, `MiB`, `GiB`) and decimal (`KB`, `MB`, `GB`) units are both
/// accepted because operators write both; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size; write a number with an optional unit, e.g. \"64KiB\""
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The longest duration a config may give, 100 of humantime's years (of
/// 365.25 days): far beyond any timeout, TTL or grace period, and far
/// enough from the end of `SystemTime` and `Instant` that adding one to
/// the clock cannot overflow, which would panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a duration such as `"30s"`, `"250ms"` or `"24h"`, of at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"30s\" or \"250ms\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than 100 years; write \"off\" where the key allows it"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert!(parse_size("KiB").is_err());
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(
            parse_size("18446744073709551615GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("100y"),
            Ok(Duration::from_secs(3_155_760_000))
        );
        assert!(parse_duration("101y").is_err());
        assert_eq!(
            parse_duration("300000000000y"),
            Err(
                "`300000000000y` is longer than 100 years; write \"off\" where the key allows it"
                    .into()
            )
        );
    }
}
