//! Link settings for the `faultline` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed (DT_RELR): the binary is position
    // independent, and the loader read its 1.76 MB of `.rela.dyn` at every
    // start, pages that then stayed resident (1.68 MB of RSS, README
    // "Performance"); packed they are a few KB. The linker emits them only
    // when glibc provides `GLIBC_ABI_DT_RELR` (2.36+), and a linker that
    // predates the option (binutils < 2.38) ignores it with a warning.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
