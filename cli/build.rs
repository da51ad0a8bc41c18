//! Link-time layout of the sidecar's code (release builds on x86_64 Linux, linked by LLD).
//!
//! `concord connect proxy` runs one copy per service instance, and most of its resident
//! memory is the binary's own code pages: the kernel maps a page fault's 64 KiB
//! neighbourhood (fault-around), and the ~2.4 MB of functions a sidecar executes were
//! spread over ~9 MiB of a ~20 MB text. `sidecar.order` lists those functions (their
//! mangled names, recorded by `bench/proxy/order.sh`), and LLD places them first and side
//! by side. Names it does not find (after a dependency update, say) are skipped silently:
//! the layout only degrades back to the default, never breaks the build.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=sidecar.order");
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    // rustc links x86_64-unknown-linux-gnu with its bundled LLD (since 1.90, the
    // workspace's rust-version); other targets may use a linker without
    // `--symbol-ordering-file`.
    let lld = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if !(release && lld) {
        return;
    }
    let (Ok(dir), Ok(out)) = (
        std::env::var("CARGO_MANIFEST_DIR"),
        std::env::var("OUT_DIR"),
    ) else {
        return;
    };
    // The linker reads a copy in this build's own output directory: cargo keeps a build
    // script's output while the source file is unchanged, so a path into the checkout
    // would outlive the checkout when another one shares the target directory.
    let order = Path::new(&out).join("sidecar.order");
    if std::fs::copy(Path::new(&dir).join("sidecar.order"), &order).is_ok() {
        println!(
            "cargo:rustc-link-arg-bin=concord=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=concord=-Wl,--no-warn-symbol-ordering");
    }
}
