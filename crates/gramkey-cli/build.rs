//! Release builds lay out the functions a node runs side by side (`link-order.txt`, written by
//! `bench/link-order.sh`). The kernel maps code in blocks around each page fault, so a
//! scattered working set keeps most of the binary resident; laid out together, an idle node's
//! file-backed memory is about 8 MB instead of 16 (BENCHMARKS.md, "Idle memory"). Names the
//! list holds and the binary does not are skipped, so a stale list costs memory, never
//! correctness.
//!
//! Only LLD (rustc's own, the default on x86_64-unknown-linux-gnu since 1.90) and mold read
//! such a list; GNU ld refuses the option. So the build first links an empty program with it,
//! with this build's rustc, target, flags and linker, and passes it on only if that worked.
//! Elsewhere the build is the same, only without the layout.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let args = [
        format!("--symbol-ordering-file={}", order.display()),
        "--no-warn-symbol-ordering".to_owned(),
    ];
    if links_with(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bins=-Xlinker");
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    } else {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: built without the code layout of link-order.txt"
        );
    }
}

/// Whether an empty program links with `linker_args`, the way this build links.
fn links_with(linker_args: &[String]) -> bool {
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg(&source)
        .arg("--crate-name=probe")
        .arg("-o")
        .arg(out.join("probe"))
        .args(["--target", &env::var("TARGET").unwrap_or_default()]);
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        probe
            .arg("-C")
            .arg(format!("linker={}", linker.to_string_lossy()));
    }
    for arg in linker_args {
        probe
            .args(["-C", "link-arg=-Xlinker", "-C"])
            .arg(format!("link-arg={arg}"));
    }
    probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
