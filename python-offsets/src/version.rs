use std::fmt;

/// A CPython version, as the target reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
}

impl Version {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Version {
        Version {
            major,
            minor,
            micro,
        }
    }

    /// Decodes `PY_VERSION_HEX` (the `Py_Version` symbol, exported from 3.11):
    /// major in bits 24–31, minor 16–23, micro 8–15.
    pub fn from_hex(hex: u32) -> Version {
        Version::new((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8)
    }

    /// Finds the first `3.N.M` in `text` (a `sys.version` string such as
    /// `"3.9.18 (main, ...)"`, or a file name such as `libpython3.9.so.1.0`, which
    /// gives only `3.N` and a micro of 0).
    pub fn parse_prefix(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        for start in 0..bytes.len() {
            if bytes[start] != b'3' || bytes.get(start + 1) != Some(&b'.') {
                continue;
            }
            if start > 0 && bytes[start - 1].is_ascii_digit() {
                continue;
            }
            let rest = &text[start + 2..];
            let minor_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            if minor_len == 0 || minor_len > 2 {
                continue;
            }
            let minor: u8 = rest[..minor_len].parse().ok()?;
            let after = &rest[minor_len..];
            let micro = after
                .strip_prefix('.')
                .map(|m| {
                    let n = m.bytes().take_while(u8::is_ascii_digit).count();
                    m[..n].parse().unwrap_or(0)
                })
                .unwrap_or(0);
            return Some(Version::new(3, minor, micro));
        }
        None
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_3_13_0_final() {
        assert_eq!(Version::from_hex(0x030d00f0), Version::new(3, 13, 0));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            Version::parse_prefix("3.9.18 (main, May  9 2026)"),
            Some(Version::new(3, 9, 18))
        );
        assert_eq!(
            Version::parse_prefix("/usr/lib/libpython3.10.so.1.0"),
            Some(Version::new(3, 10, 0))
        );
        assert_eq!(
            Version::parse_prefix("/usr/bin/python3.11"),
            Some(Version::new(3, 11, 0))
        );
        assert_eq!(Version::parse_prefix("python"), None);
        assert_eq!(Version::parse_prefix("13.5"), None);
    }
}
