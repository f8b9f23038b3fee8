//! Human-readable byte sizes for quotas: `500MiB`, `10GB`, `2G`, `123`, `unlimited`.
//!
//! Binary suffixes (`KiB`, `MiB`, ...) and bare letters (`K`, `M`, `G`, `T`, as `du` and `ls -h` use
//! them) are powers of 1024; decimal suffixes (`kB`, `MB`, `GB`, `TB`) are powers of 1000.

use std::fmt;
use std::str::FromStr;

/// A quota: a number of bytes, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Limited(u64),
    Unlimited,
}

impl Quota {
    /// The limit in bytes, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            Quota::Limited(bytes) => Some(bytes),
            Quota::Unlimited => None,
        }
    }

    pub fn from_limit(limit: Option<u64>) -> Quota {
        limit.map_or(Quota::Unlimited, Quota::Limited)
    }
}

/// A size that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {0:?}: expected a number with an optional unit (500MiB, 10GB, 2G) or 'unlimited'"
)]
pub struct SizeError(String);

impl FromStr for Quota {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("unlimited") || trimmed.eq_ignore_ascii_case("none") {
            return Ok(Quota::Unlimited);
        }
        parse_bytes(trimmed).map(Quota::Limited).ok_or_else(|| SizeError(text.to_owned()))
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier);
    }
    // Fractions such as `1.5G`; rounded down to whole bytes.
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let bytes = value * multiplier as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

pub use wharf_common::units::format_bytes;

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quota::Limited(bytes) => f.write_str(&format_bytes(*bytes)),
            Quota::Unlimited => f.write_str("unlimited"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Option<u64> {
        text.parse::<Quota>().ok().and_then(Quota::limit)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(bytes("500MiB"), Some(500 << 20));
        assert_eq!(bytes("10GB"), Some(10_000_000_000));
        assert_eq!(bytes("2G"), Some(2 << 30));
        assert_eq!(bytes("123"), Some(123));
        assert_eq!(bytes("1.5K"), Some(1536));
        assert_eq!("unlimited".parse::<Quota>(), Ok(Quota::Unlimited));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "MiB", "10XB", "-5", "1e400G", "99999999999999999999T"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?} should be refused");
        }
    }
}
