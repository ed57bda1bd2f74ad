//! Real viewers for the exports: Debian's Chromium, headless, driven over the DevTools
//! protocol by `tests/browser/page_check.py` (standard library only), and speedscope
//! from its npm package, opened from disk with no network.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{target_dir, test_venv_python};

/// The speedscope release the tests open exports in.
pub const SPEEDSCOPE_VERSION: &str = "1.25.0";

/// Debian's Chromium. Panics with the command that installs it when it is missing.
pub fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "Chromium is missing: install it with `apt-get install -y chromium` \
         (.ci/run does this)"
    );
}

/// speedscope's `dist/release` folder, installed with npm under `target/` on first use
/// (one installer at a time across test binaries, by a lock file).
pub fn speedscope_release() -> PathBuf {
    let prefix = target_dir().join("npm-speedscope");
    let release = prefix.join("node_modules/speedscope/dist/release");
    std::fs::create_dir_all(target_dir()).expect("create target dir");
    let lock = std::fs::File::create(target_dir().join("npm-speedscope.lock"))
        .expect("create the npm lock");
    // SAFETY: flock on a file we hold open; released when `lock` is dropped.
    unsafe {
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    let package = prefix.join("node_modules/speedscope/package.json");
    let installed = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if installed.as_deref() != Some(SPEEDSCOPE_VERSION) {
        let spec = format!("speedscope@{SPEEDSCOPE_VERSION}");
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(&spec)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run npm ({e}): install Node.js and npm with `apt-get install -y npm`"
                )
            });
        assert!(
            out.status.success(),
            "`npm install --prefix {} {spec}` failed: {}",
            prefix.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
    assert!(
        release.join("index.html").exists(),
        "{} has no index.html: the speedscope package changed its layout",
        release.display()
    );
    release
}

/// The `file://` URL speedscope opens `profile` at, the way its own command line
/// does: the profile goes into a script next to it that hands it to speedscope
/// (`speedscope.loadFileFromBase64`), named in the URL's `localProfilePath`.
pub fn speedscope_url(profile: &Path) -> String {
    let bytes =
        std::fs::read(profile).unwrap_or_else(|e| panic!("cannot read {}: {e}", profile.display()));
    let name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let script = profile.with_extension("load.js");
    let source = format!(
        "speedscope.loadFileFromBase64({}, {})",
        Value::String(name),
        Value::String(base64(&bytes))
    );
    std::fs::write(&script, source).expect("write the loader script");
    format!(
        "file://{}/index.html#localProfilePath={}",
        speedscope_release().display(),
        script.display()
    )
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a page showed in headless Chromium.
#[derive(Debug)]
pub struct PageReport {
    /// Whether the wait expression became true.
    pub ready: bool,
    /// The value of the evaluated expression.
    pub value: Value,
    /// Console messages: `{type, text}`.
    pub console: Vec<Value>,
    /// Uncaught exceptions.
    pub exceptions: Vec<Value>,
    /// Browser log entries (failed loads, security errors): `{level, text, url}`.
    pub log: Vec<Value>,
}

impl PageReport {
    /// Console errors and assertions, uncaught exceptions and error log entries.
    pub fn errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .console
            .iter()
            .filter(|m| matches!(m["type"].as_str(), Some("error" | "assert")))
            .map(|m| format!("console: {}", m["text"]))
            .collect();
        errors.extend(self.exceptions.iter().map(|e| format!("exception: {e}")));
        errors.extend(
            self.log
                .iter()
                .filter(|m| m["level"].as_str() == Some("error"))
                .map(|m| format!("log: {} ({})", m["text"], m["url"])),
        );
        errors
    }
}

/// Opens `url` in headless Chromium, waits until `wait_js` is true, runs `click_js`
/// (if any) and waits again, then evaluates `eval_js` and saves a screenshot.
/// Chromium keeps both cores of a small machine busy while it starts, so it holds
/// [`crate::serial`]: no recording of the same test binary runs beside it.
pub fn open_page(
    url: &str,
    screenshot: &Path,
    wait_js: &str,
    eval_js: &str,
    click_js: Option<&str>,
) -> PageReport {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/page_check.py");
    let mut command = Command::new(test_venv_python());
    command
        .arg(&driver)
        .arg(chromium())
        .arg(url)
        .arg(screenshot)
        .arg(wait_js)
        .arg(eval_js);
    if let Some(click) = click_js {
        command.arg(click);
    }
    let out = {
        let _serial = crate::serial();
        command.output().expect("run the Chromium driver")
    };
    assert!(
        out.status.success(),
        "the Chromium driver failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Chromium driver printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let list = |v: &mut Value| v.as_array_mut().map(std::mem::take).unwrap_or_default();
    PageReport {
        ready: report["ready"].as_bool().unwrap_or(false),
        value: report["value"].take(),
        console: list(&mut report["console"]),
        exceptions: list(&mut report["exceptions"]),
        log: list(&mut report["log"]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_examples() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
