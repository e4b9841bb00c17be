//! Tells the targets whether cargo-fuzz built them with comparison tracing
//! (`-sanitizer-coverage-trace-compares`, its default), so that they can
//! say at start-up that `--no-trace-compares` is how this project runs
//! them (fuzz/README.md, "Speed").

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shmproc_trace_compares)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|f| f.contains("trace-compares")) {
        println!("cargo::rustc-cfg=shmproc_trace_compares");
    }
}
