//! Redaction of secrets before anything reaches disk (DESIGN.md, "Reprs").
//!
//! Two tests decide: [`is_secret_name`] for a value's *name* (an argument, a local, a
//! dict key), and [`looks_secret`] for a value's *text*. Either way the value is
//! stored as [`REDACTED`]. Both are plain scanners over ASCII patterns (no regex
//! engine), cheap enough to run on every string the sampler reprs.

/// What a redacted value is stored as.
pub const REDACTED: &str = "[REDACTED]";

/// The built-in secret words; a name containing one (any case) is secret.
pub const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "bearer",
    "cookie",
    "credential",
];

/// Whether a value called `name` must be redacted: `name` contains, ignoring case
/// and taking `-` for `_` (an `X-Api-Key` header, an `--api-key` option), one of
/// [`SECRET_WORDS`] or one of `extra` (the `--redact` names; empty ones are ignored).
pub fn is_secret_name(name: &str, extra: &[String]) -> bool {
    let folded = fold_name(name);
    SECRET_WORDS.iter().any(|w| folded.contains(w))
        || extra
            .iter()
            .filter(|w| !w.is_empty())
            .any(|w| folded.contains(&fold_name(w)))
}

/// `name` in lower case with `-` as `_`, in one pass (names are tested on every
/// argument and dict key a recording reads).
fn fold_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A command line with its secrets redacted, for the run's metadata and reports: the
/// value of an option whose name is secret (`--password=X`, `--api-key X`,
/// `DB_TOKEN=X`), and any argument that [`looks_secret`] (a token given bare). The
/// option names stay, so the command still reads as what was run.
pub fn redact_command(argv: &[String], extra: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut value_is_secret = false;
    for arg in argv {
        let after_secret_option = std::mem::take(&mut value_is_secret);
        if let Some((name, _)) = arg.split_once('=') {
            let bare = name.trim_start_matches('-');
            if !bare.is_empty()
                && !bare.contains(char::is_whitespace)
                && is_secret_name(bare, extra)
            {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        }
        if after_secret_option || looks_secret(arg) {
            out.push(REDACTED.to_string());
            continue;
        }
        value_is_secret = arg.len() > 1
            && arg.starts_with('-')
            && !arg.contains('=')
            && is_secret_name(arg.trim_start_matches('-'), extra);
        out.push(arg.clone());
    }
    out
}

/// The length of the shortest text [`looks_secret`] can match: a social security
/// number (`ddd-dd-dddd`); a card number needs 13 digits, the other shapes more.
const SHORTEST_SECRET: usize = 11;

/// Whether `text` holds something that looks like a secret anywhere in it:
///
/// * a JWT: `eyJ...` header, `.`, `eyJ...` payload (each at least 10 characters of
///   base64url), `.`, a signature (possibly empty);
/// * an AWS access key id: `AKIA` or `ASIA` and 16 more upper-case letters or digits;
/// * a GitHub token: `ghp_`, `gho_`, `ghu_`, `ghs_` or `ghr_` and at least 30
///   letters or digits, or `github_pat_` and at least 22;
/// * an `sk-` (OpenAI style) or `sk_live_`/`sk_test_` (Stripe) key: at least 20
///   characters of `[A-Za-z0-9_-]` after the prefix, with at least two digits and two
///   letters among them (so `sk-learn-...` prose is left alone);
/// * a payment card number: 13 to 19 digits that pass the Luhn check, start as a
///   card network's numbers do and have one of its lengths, either in one run or in
///   groups of 3 to 6 digits separated by single spaces or dashes;
/// * a US social security number `ddd-dd-dddd` (area not 000, 666 or 9xx, group not
///   00, serial not 0000);
/// * a URL with a password in it: `scheme://user:password@host` (a database or
///   broker URL, `postgres://app:hunter2@db/prod`).
///
/// Each pattern but the URL's must start and end at a word boundary (no ASCII letter
/// or digit right before or after it).
pub fn looks_secret(text: &str) -> bool {
    let b = text.as_bytes();
    // Most reprs (small ints, short names) are shorter than any pattern: this test
    // runs on every value of an exact trace.
    if b.len() < SHORTEST_SECRET {
        return false;
    }
    has_jwt(b)
        || has_aws_key(b)
        || has_github_token(b)
        || has_sk_key(b)
        || has_card_number(b)
        || has_ssn(b)
        || has_url_password(b)
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// No letter or digit right before `i`.
fn boundary_before(b: &[u8], i: usize) -> bool {
    i == 0 || !is_alnum(b[i - 1])
}

/// No letter or digit at `i` (the first byte after a match).
fn boundary_after(b: &[u8], i: usize) -> bool {
    i >= b.len() || !is_alnum(b[i])
}

/// The start of every occurrence of `needle` in `hay`.
fn occurrences<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// The end of the run of bytes from `start` for which `pred` holds.
fn run_end(b: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    b[start..]
        .iter()
        .position(|&c| !pred(c))
        .map_or(b.len(), |n| start + n)
}

fn has_jwt(b: &[u8]) -> bool {
    occurrences(b, b"eyJ").any(|i| {
        if i > 0 && is_b64url(b[i - 1]) {
            return false;
        }
        let header_end = run_end(b, i, is_b64url);
        if header_end - i < 10 || b.get(header_end) != Some(&b'.') {
            return false;
        }
        let payload = header_end + 1;
        if !b[payload..].starts_with(b"eyJ") {
            return false;
        }
        let payload_end = run_end(b, payload, is_b64url);
        payload_end - payload >= 10 && b.get(payload_end) == Some(&b'.')
    })
}

fn has_aws_key(b: &[u8]) -> bool {
    [b"AKIA", b"ASIA"].iter().any(|prefix| {
        occurrences(b, *prefix).any(|i| {
            let end = i + 20;
            boundary_before(b, i)
                && end <= b.len()
                && b[i + 4..end]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && boundary_after(b, end)
        })
    })
}

fn has_github_token(b: &[u8]) -> bool {
    let classic = [b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"]
        .iter()
        .any(|p| {
            occurrences(b, *p).any(|i| {
                let start = i + p.len();
                boundary_before(b, i) && run_end(b, start, is_alnum) - start >= 30
            })
        });
    classic
        || occurrences(b, b"github_pat_").any(|i| {
            let start = i + "github_pat_".len();
            boundary_before(b, i) && run_end(b, start, |c| is_alnum(c) || c == b'_') - start >= 22
        })
}

fn has_sk_key(b: &[u8]) -> bool {
    [&b"sk-"[..], b"sk_live_", b"sk_test_"].iter().any(|p| {
        occurrences(b, p).any(|i| {
            if !boundary_before(b, i) {
                return false;
            }
            let start = i + p.len();
            let tail = &b[start..run_end(b, start, is_b64url)];
            let digits = tail.iter().filter(|c| c.is_ascii_digit()).count();
            let letters = tail.iter().filter(|c| c.is_ascii_alphabetic()).count();
            tail.len() >= 20 && digits >= 2 && letters >= 2
        })
    })
}

/// Whether the digits pass the Luhn checksum.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn has_card_number(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || !boundary_before(b, i) {
            i += 1;
            continue;
        }
        // Groups of digits joined by single separators, from `i`.
        let mut groups: Vec<&[u8]> = Vec::new();
        let mut pos = i;
        loop {
            let end = run_end(b, pos, |c| c.is_ascii_digit());
            groups.push(&b[pos..end]);
            pos = end;
            let joined = matches!(b.get(pos), Some(b' ') | Some(b'-'))
                && b.get(pos + 1).is_some_and(u8::is_ascii_digit);
            if !joined {
                break;
            }
            pos += 1;
        }
        if boundary_after(b, pos) && card_in_groups(&groups) {
            return true;
        }
        i = pos.max(i + 1);
    }
    false
}

/// Whether some run of consecutive groups spells a Luhn-valid 13–19 digit number (a
/// single group, or several of 3 to 6 digits each).
fn card_in_groups(groups: &[&[u8]]) -> bool {
    for first in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        for (n, group) in groups[first..].iter().enumerate() {
            if n > 0 && !(3..=6).contains(&group.len()) {
                break;
            }
            if n == 1 && !(3..=6).contains(&groups[first].len()) {
                break;
            }
            digits.extend_from_slice(group);
            if digits.len() > 19 {
                break;
            }
            if digits.len() >= 13 && issued_length(&digits) && luhn_valid(&digits) {
                return true;
            }
        }
    }
    false
}

/// Whether `digits` start as a payment network's cards do and have a length its
/// cards have (Visa, Mastercard, American Express, Discover, JCB, Diners Club,
/// UnionPay, Maestro, Mir). One number in ten passes Luhn, so without this a tenth
/// of all 13-19 digit numbers (nanosecond timestamps, `hash()` values, ids) were
/// taken for cards; those starting with 0, 1, 7, 8 or 9 are no network's.
fn issued_length(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let len = digits.len();
    match digits[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'2' => {
            let four = prefix(4);
            len == 16 && ((2221..=2720).contains(&four) || (2200..=2204).contains(&four))
        }
        b'3' => match prefix(2) {
            34 | 37 => len == 15,
            35 => len >= 16,
            30 | 36 | 38 | 39 => len >= 14,
            _ => false,
        },
        b'5' => match prefix(2) {
            51..=55 => len == 16,
            50 | 56..=59 => true,
            _ => false,
        },
        b'6' => len >= 16,
        _ => false,
    }
}

fn has_ssn(b: &[u8]) -> bool {
    b.windows(11).enumerate().any(|(i, w)| {
        let shape = w.iter().enumerate().all(|(j, &c)| match j {
            3 | 6 => c == b'-',
            _ => c.is_ascii_digit(),
        });
        if !shape {
            return false;
        }
        let before_ok = i == 0 || !(is_alnum(b[i - 1]) || b[i - 1] == b'-');
        let after = i + 11;
        let after_ok = after >= b.len() || !(is_alnum(b[after]) || b[after] == b'-');
        let area = &w[0..3];
        let valid = area != b"000"
            && area != b"666"
            && area[0] != b'9'
            && &w[4..6] != b"00"
            && &w[7..11] != b"0000";
        before_ok && after_ok && valid
    })
}

/// `://`, then a user part and a non-empty password separated by `:`, then `@`,
/// with no `/`, `@`, space or quote between `://` and the `@`.
fn has_url_password(b: &[u8]) -> bool {
    occurrences(b, b"://").any(|i| {
        let userinfo_start = i + 3;
        let end = b[userinfo_start..]
            .iter()
            .position(|&c| matches!(c, b'/' | b'@' | b'\'' | b'"') || c.is_ascii_whitespace())
            .map(|n| userinfo_start + n);
        let Some(at) = end.filter(|&at| b[at] == b'@') else {
            return false;
        };
        b[userinfo_start..at]
            .iter()
            .position(|&c| c == b':')
            .is_some_and(|colon| userinfo_start + colon + 1 < at)
    })
}

#[cfg(test)]
mod tests {
    fn command(args: &[&str], extra: &[&str]) -> Vec<String> {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        redact_command(&argv, &extra)
    }

    #[test]
    fn a_command_keeps_its_options_and_loses_their_secret_values() {
        assert_eq!(
            command(
                &[
                    "python3",
                    "app.py",
                    "--password=hunter2",
                    "--api-key",
                    "abc",
                    "-v",
                    "x"
                ],
                &[]
            ),
            [
                "python3",
                "app.py",
                "--password=[REDACTED]",
                "--api-key",
                "[REDACTED]",
                "-v",
                "x"
            ]
        );
        assert_eq!(
            command(&["env", "DB_TOKEN=abc", "python3", "-c", "pass"], &[]),
            ["env", "DB_TOKEN=[REDACTED]", "python3", "-c", "pass"]
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig";
        assert_eq!(
            command(&["python3", "a.py", jwt], &[]),
            ["python3", "a.py", "[REDACTED]"]
        );
        assert_eq!(
            command(&["python3", "a.py", "--pin", "1234", "--pin=5"], &["pin"]),
            ["python3", "a.py", "--pin", "[REDACTED]", "--pin=[REDACTED]"]
        );
        let plain = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "a=b"];
        assert_eq!(command(&plain, &[]), plain);
    }

    use super::*;

    #[test]
    fn secret_names_match_any_case_and_extra_words() {
        for name in [
            "password",
            "DB_PASSWORD",
            "user_passwd",
            "pwd",
            "client_secret",
            "refresh_token",
            "api_key",
            "APIKEY",
            "aws_access_key_id",
            "private_key_pem",
            "Authorization",
            "bearer",
            "session_cookie",
            "credentials",
        ] {
            assert!(is_secret_name(name, &[]), "{name} should be secret");
        }
        for name in ["user", "amount", "path", "cwd", "self", "items"] {
            assert!(!is_secret_name(name, &[]), "{name} should not be secret");
        }
        let extra = vec!["ssn".to_string(), String::new()];
        assert!(is_secret_name("customer_SSN", &extra));
        assert!(
            !is_secret_name("customer_id", &extra),
            "an empty --redact name must not match everything"
        );
    }

    #[test]
    fn jwt_is_secret() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                   eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.\
                   SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert!(looks_secret(jwt));
        assert!(looks_secret(&format!("Authorization: Bearer {jwt}")));
        assert!(!looks_secret("eyJhbGciOiJIUzI1NiJ9 is only a header"));
    }

    #[test]
    fn aws_key_is_secret() {
        assert!(looks_secret("AKIAIOSFODNN7EXAMPLE"));
        assert!(looks_secret("key=ASIAIOSFODNN7EXAMPLE;"));
        assert!(!looks_secret("AKIA is a prefix"));
        assert!(!looks_secret("XAKIAIOSFODNN7EXAMPLE"));
    }

    #[test]
    fn github_tokens_are_secret() {
        assert!(looks_secret("ghp_1234567890abcdefghijABCDEFGHIJ123456"));
        assert!(looks_secret(
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
        ));
        assert!(!looks_secret("ghp_short"));
    }

    #[test]
    fn sk_keys_are_secret() {
        assert!(looks_secret("sk-proj-4f9A8b7C6d5E4f3G2h1I0jKlMnOp"));
        assert!(looks_secret("sk_live_51HqLyjWDarjtT1zdp7dc1234"));
        assert!(!looks_secret("sk-learn-is-a-machine-learning-library"));
        assert!(!looks_secret("the task-force-report-2024-final-v2"));
    }

    #[test]
    fn luhn_valid_card_numbers_are_secret_and_invalid_ones_are_not() {
        assert!(looks_secret("4111111111111111"));
        assert!(
            looks_secret("4222222222222"),
            "13 digits, the shortest card"
        );
        assert!(looks_secret("card: 4111 1111 1111 1111."));
        assert!(looks_secret("5500-0000-0000-0004"));
        assert!(looks_secret("amex 3782 822463 10005"));
        assert!(looks_secret("paid in 2023 with 4111111111111111"));
        assert!(!looks_secret("4111111111111112"), "fails Luhn");
        assert!(!looks_secret("4111 1111 1111 1112"), "fails Luhn");
        assert!(
            !looks_secret("41111111111111110000"),
            "20 digits is not a card"
        );
        assert!(!looks_secret("order 12345 shipped 2024-01-15"));
        // Luhn-valid, but no network issues numbers that start so, or this long.
        assert!(
            !looks_secret("1796677882321039344"),
            "a nanosecond timestamp"
        );
        assert!(!looks_secret("1733000000005"), "a millisecond timestamp");
        assert!(!looks_secret("{'hash': 9123456789012345672}"));
        assert!(!looks_secret("2845678901234565"), "28xx is no Mastercard");
        assert!(
            !looks_secret("41111111111114"),
            "14 digits is no Visa length"
        );
        assert!(looks_secret("2221000000000009"), "a 2-series Mastercard");
        assert!(looks_secret("6011111111111117"), "Discover");
        assert!(looks_secret("3530111333300000"), "JCB");
        assert!(looks_secret("30569309025904"), "Diners Club");
    }

    #[test]
    fn a_url_with_a_password_is_secret_and_other_urls_are_not() {
        assert!(looks_secret("postgres://app:hunter2@db.internal:5432/prod"));
        assert!(looks_secret("'redis://:s3cret@cache:6379/0'"));
        assert!(looks_secret("connecting to amqp://guest:guest@localhost//"));
        assert!(!looks_secret("https://example.com:8443/path?q=a:b@c"));
        assert!(!looks_secret("ssh://deploy@host.example/repo.git"));
        assert!(!looks_secret("postgres://app:@db/prod (no password)"));
        assert!(!looks_secret("see https://docs.python.org/3/library/"));
    }

    #[test]
    fn ssn_is_secret() {
        assert!(looks_secret("123-45-6789"));
        assert!(looks_secret("ssn 078-05-1120 on file"));
        assert!(!looks_secret("000-12-3456"), "area 000 is never issued");
        assert!(!looks_secret("123-45-67890"));
        assert!(!looks_secret("2024-01-1234"));
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "",
            "hello world",
            "it's a \"quoted\" string",
            "/usr/lib/python3.11/threading.py",
            "SELECT * FROM events WHERE pid = 4242",
            "version 3.12.1 (main, Dec 2023)",
            "日本語のテキスト 🎉",
            "phone +1 555-123-4567",
        ] {
            assert!(!looks_secret(text), "{text:?} should not look secret");
        }
    }
}
