//! The argument encoding of `spawn`: the arguments after the path, separated by NUL bytes.
//! Pure logic, tested on the host.

use alloc::vec::Vec;
use sysabi::Error;

/// Encodes `args` for `spawn`: joined with NUL separators (no trailing NUL, none for no
/// arguments). An argument may not contain a NUL byte, and a lone empty argument cannot be
/// told from no arguments: both are `InvalidArgument`.
pub fn encode(args: &[&str]) -> Result<Vec<u8>, Error> {
    if args.len() == 1 && args[0].is_empty() {
        return Err(Error::InvalidArgument);
    }
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if a.as_bytes().contains(&0) {
            return Err(Error::InvalidArgument);
        }
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(a.as_bytes());
    }
    Ok(out)
}

/// Splits a NUL-terminated name list (as `file_list` and `points` write it) into names.
pub fn split_nul_list(bytes: &[u8]) -> Vec<&str> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| core::str::from_utf8(s).unwrap_or("?"))
        .collect()
}

/// Parses a decimal or `0x` hexadecimal unsigned number.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses a decimal (optionally negative) or `0x` hexadecimal number as an i32.
pub fn parse_i32(s: &str) -> Option<i32> {
    match s.strip_prefix('-') {
        Some(rest) => parse_u64(rest).and_then(|v| i64::try_from(v).ok()).and_then(|v| i32::try_from(-v).ok()),
        None => parse_u64(s).and_then(|v| i32::try_from(v).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_separators() {
        assert_eq!(encode(&[]), Ok(Vec::new()));
        assert_eq!(encode(&["a", "bc"]), Ok(b"a\0bc".to_vec()));
        assert_eq!(encode(&["a", ""]), Ok(b"a\0".to_vec()));
        assert_eq!(encode(&[""]), Err(Error::InvalidArgument));
        assert_eq!(encode(&["a\0b"]), Err(Error::InvalidArgument));
    }

    #[test]
    fn splits_name_lists() {
        assert_eq!(split_nul_list(b"init\0shell\0"), ["init", "shell"]);
        assert!(split_nul_list(b"").is_empty());
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("x"), None);
        assert_eq!(parse_i32("-3"), Some(-3));
        assert_eq!(parse_i32("2147483648"), None);
        assert_eq!(parse_i32("-2147483648"), Some(i32::MIN));
    }
}
