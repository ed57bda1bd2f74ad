//! Links the `tracer` binary as a position-dependent executable (`-no-pie`).
//!
//! A PIE `tracer` carries about 220,000 relative relocations (DataFusion's and
//! Arrow's vtables and static tables), which the dynamic loader applies at every
//! start, writing about 4 MB of `.data.rel.ro`: 4 ms of a traced program's start-up
//! (`strace -r`: the time before the RELRO `mprotect`), at every `tracer record`.
//! Linked without PIE those addresses are fixed by the linker and nothing is written
//! at start. The code is still compiled position-independent (proc macros and the
//! test binaries are unchanged); only the executable's own load address stops being
//! randomised, as for most distribution binaries built before PIE became the default.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
