//! Intercepting a process before `main`: the `.init_array` hook, which
//! reads the role in `argv[1]` and becomes a `spawn` child, the fork server
//! or the session tracker.
//!
//! Layer 5 (entry before `main`): uses `forkserver::server` (layer 4),
//! `child` (layer 3), `tracker` and `reexec` (layer 1, the role strings),
//! and nothing that starts a child; `process` (layer 6) and the crate root
//! use [`ensure_linked`].
//!
//! # How the child is intercepted before `main`
//! A function in `.init_array` ([`BOOT_HOOK`]) runs before `main` in every
//! binary that links this crate: a plain program and a `cargo test` binary
//! alike, so neither needs a line of setup. It looks at `argv[1]`: a child
//! started by shmproc carries `--shmproc-child=<fd>` (the fork server:
//! `--shmproc-forkserver=<fd>`); anything else returns at once and `main`
//! runs as usual. Intercepting before `main` matters for test binaries: the
//! child never reaches libtest, never starts its threads, and never runs
//! other tests. The parent references the hook whenever it starts a process
//! ([`ensure_linked`]), so the linker cannot drop the object file that
//! holds it.
//!
//! Code before `main` runs without Rust's runtime set-up (the main thread has
//! no name, `std::env::args` may be empty); the child bootstrap uses only
//! what works there, and the target runs in the same state. A child flushes
//! `stdout` itself before it exits.
#![allow(unsafe_code)] // `.init_array` entry, raw argv.

use std::ffi::{CStr, c_char, c_int};

use shmproc_shm::os;

use crate::child::{bootstrap_failed, run_spawned};
use crate::reexec::{ROLE_CHILD, ROLE_FORKSERVER, ROLE_PREFIX, ROLE_TRACKER};

/// The hook run before `main` (see the module docs).
#[used]
#[unsafe(link_section = ".init_array")]
static BOOT_HOOK: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = boot_hook;

/// Keeps [`BOOT_HOOK`] in the final binary (called on every start).
#[inline]
pub(crate) fn ensure_linked() {
    std::hint::black_box(&BOOT_HOOK);
}

extern "C" fn boot_hook(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    // Every process of a program that links this crate tags the named
    // segments it creates with its crash-cleanup session (see `tracker`).
    crate::tracker::install();
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: glibc passes the process's argv to `.init_array` functions of the
    // executable; `argc >= 2`, so entry 1 exists.
    let arg1 = unsafe { argv.wrapping_add(1).read() };
    if arg1.is_null() {
        return;
    }
    // SAFETY: argv entries are NUL-terminated strings that live for the whole process.
    let arg1 = unsafe { CStr::from_ptr(arg1) };
    let arg = arg1.to_bytes();
    if !arg.starts_with(ROLE_PREFIX.as_bytes()) {
        return;
    }
    // Never unwind out of an `extern "C"` function.
    let r = std::panic::catch_unwind(|| dispatch(arg));
    if r.is_err() {
        os::exit_now(1);
    }
}

/// Becomes the process that `argv[1]` (`arg`, a role of `reexec`) asks
/// for. Returns only for roles this build does not know.
fn dispatch(arg: &[u8]) {
    if let Some(arg) = arg.strip_prefix(ROLE_TRACKER.as_bytes()) {
        crate::tracker::run_tracker(arg);
    }
    let Ok(arg) = std::str::from_utf8(arg) else {
        return;
    };
    if let Some(fd) = arg.strip_prefix(ROLE_CHILD) {
        let Ok(fd) = fd.parse::<i32>() else {
            bootstrap_failed("bad --shmproc-child argument");
        };
        run_spawned(fd);
    }
    if let Some(fd) = arg.strip_prefix(ROLE_FORKSERVER) {
        let Ok(fd) = fd.parse::<i32>() else {
            bootstrap_failed("bad --shmproc-forkserver argument");
        };
        crate::forkserver::server::serve(fd);
    }
}
