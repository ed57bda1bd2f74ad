//! Builds the exact-mode hook's native accelerator (`src/exact/native/`), a CPython
//! extension module written against the stable ABI, into `OUT_DIR`, from where
//! `src/exact/mod.rs` embeds it. Its own header declares the few stable-ABI items it
//! uses, so no Python headers are needed. Where it cannot be built (another OS, no C
//! compiler) an empty file stands in and the hook runs its pure-Python callbacks.

use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/exact/native/tracer_native.c";
const HEADER: &str = "src/exact/native/limited_api.h";
const OUTPUT: &str = "_tracer_exact_native.so";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={HEADER}");
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let output = out_dir.join(OUTPUT);
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let built = if target_os == "linux" {
        match build(&output) {
            Ok(()) => true,
            Err(why) => {
                println!("cargo:warning=the exact-mode native accelerator was not built ({why}); the hook will use its pure-Python callbacks");
                false
            }
        }
    } else {
        false
    };
    if !built {
        if let Err(e) = std::fs::write(&output, b"") {
            panic!("cannot write {}: {e}", output.display());
        }
    }
}

/// Compiles and links the module with the C compiler `cc` picks for the target.
fn build(output: &std::path::Path) -> Result<(), String> {
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .try_get_compiler()
        .map_err(|e| e.to_string())?;
    let mut command: Command = compiler.to_command();
    command.args([
        "-shared",
        "-fPIC",
        "-O2",
        "-std=gnu11",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-o",
    ]);
    command.arg(output).arg(SOURCE);
    let result = command
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", compiler.path()))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            compiler.path(),
            String::from_utf8_lossy(&result.stderr).trim()
        ))
    }
}
