//! Release builds lay out the functions a node runs side by side (`link-order.txt`, written by
//! `bench/link-order.sh`). The kernel maps code in blocks around each page fault, so a
//! scattered working set keeps most of the binary resident; laid out together, an idle node
//! keeps about 8 MB less of it (BENCHMARKS.md, "Idle memory"). Names the list holds and the
//! binary does not are skipped, so a stale list costs memory, never correctness.
//!
//! Only where the linker is known to be LLD, which reads the list: rustc 1.90 and later link
//! x86_64-unknown-linux-gnu with its own LLD unless a linker is configured. Elsewhere the build
//! is the same, only without the layout.

use std::env;
use std::process::Command;

fn main() {
    let order = concat!(env!("CARGO_MANIFEST_DIR"), "/link-order.txt");
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() == Ok("release") && linked_by_rust_lld() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order},--no-warn-symbol-ordering"
        );
    }
}

fn linked_by_rust_lld() -> bool {
    let target = |key: &str| env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if (target("ARCH"), target("OS"), target("ENV"))
        != ("x86_64".into(), "linux".into(), "gnu".into())
    {
        return false;
    }
    // A linker chosen in Cargo's configuration or in the flags may not read the list.
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if env::var_os("RUSTC_LINKER").is_some() || flags.contains("link") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (…)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (1, 90)
}
