//! What the fuzz targets share: [`target!`], which defines a target as
//! `libfuzzer_sys::fuzz_target!` does and also gives libFuzzer flags
//! that the command line leaves out (an options file, in the target).

use std::ffi::{CStr, c_char, c_int};

/// Defines a fuzz target over `&[u8]`, as `libfuzzer_sys::fuzz_target!`
/// does (the same panic hook: a panic aborts, which libFuzzer reports as a
/// crash), with `defaults`: libFuzzer flags (`"-name=value"`) added to the
/// command line when it does not name them itself, so that `cargo fuzz run
/// <target>` runs with them and `-- -name=...` still overrides them.
#[macro_export]
macro_rules! target {
    (defaults: [$($flag:literal),* $(,)?], |$data:ident| $body:expr) => {
        /// Called by libFuzzer before it parses its flags.
        #[unsafe(no_mangle)]
        pub extern "C" fn LLVMFuzzerInitialize(
            argc: *mut ::std::ffi::c_int,
            argv: *mut *mut *mut ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: libFuzzer passes its `main`'s argc and argv, valid
            // and NUL-terminated, before anything else reads them.
            unsafe { $crate::add_default_flags(argc, argv, &[$($flag),*]) };
            if cfg!(shmproc_trace_compares) {
                eprintln!("{}", $crate::TRACE_COMPARES_NOTE);
            }
            ::libfuzzer_sys::initialize(argc.cast_const().cast(), argv.cast_const().cast());
            0
        }

        /// Called by libfuzzer-sys's `LLVMFuzzerTestOneInput`.
        #[unsafe(no_mangle)]
        #[allow(improper_ctypes_definitions)] // a Rust caller (libfuzzer-sys) only
        pub extern "C" fn rust_fuzzer_test_input($data: &[u8]) -> i32 {
            // `cargo fuzz fmt` support, as in `fuzz_target!`.
            if let Some(path) = ::libfuzzer_sys::rust_libfuzzer_debug_path() {
                use ::std::io::Write;
                let mut file = ::std::fs::File::create(path)
                    .expect("failed to create `RUST_LIBFUZZER_DEBUG_PATH` file");
                writeln!(&mut file, "{:?}", $data)
                    .expect("failed to write to `RUST_LIBFUZZER_DEBUG_PATH` file");
                return 0;
            }
            $body;
            0
        }
    };
}

/// What a target built with comparison tracing prints at start-up.
pub const TRACE_COMPARES_NOTE: &str = "shmproc-fuzz: built with comparison tracing \
    (cargo fuzz's default), which costs a third to a half of a target's \
    speed and reached no more coverage here; this project builds with `cargo fuzz run --no-trace-compares` \
    (fuzz/README.md, Speed)";

/// Appends each of `defaults` (`"-name=value"`) to `*argv` unless an
/// argument already starts with its `-name=`; the new argument vector is
/// leaked (it lives as long as the process, as `main`'s does).
///
/// # Safety
/// `argc` and `argv` point to `main`'s argument count and vector (or one
/// like it): `(*argv)[0..*argc]` valid C strings, followed by a null.
pub unsafe fn add_default_flags(
    argc: *mut c_int,
    argv: *mut *mut *mut c_char,
    defaults: &[&'static str],
) {
    // SAFETY: the caller's contract: `argc` is valid to read.
    let n = usize::try_from(unsafe { *argc }).unwrap_or(0);
    // SAFETY: the caller's contract: `argv` is valid to read.
    let old = unsafe { *argv };
    let mut args: Vec<*mut c_char> = (0..n)
        // SAFETY: `i < argc`, inside the vector.
        .map(|i| unsafe { *old.add(i) })
        .collect();
    let given = |name: &str| {
        args.iter().any(|&a| {
            // SAFETY: each `argv[i]`, `i < argc`, is a valid C string.
            let a = unsafe { CStr::from_ptr(a) };
            a.to_bytes().starts_with(name.as_bytes())
        })
    };
    let mut added = Vec::new();
    for flag in defaults {
        let name = flag.split_inclusive('=').next().unwrap_or(flag);
        if !given(name) {
            added.push(flag);
        }
    }
    if added.is_empty() {
        return;
    }
    for flag in added {
        let c = std::ffi::CString::new(*flag).expect("a flag without NUL");
        args.push(c.into_raw());
    }
    let new_argc = c_int::try_from(args.len()).expect("argument count");
    args.push(std::ptr::null_mut());
    let leaked: &'static mut [*mut c_char] = Box::leak(args.into_boxed_slice());
    // SAFETY: the caller's contract: both are valid to write; the new
    // vector is NUL-terminated and lives for the rest of the process.
    unsafe {
        *argv = leaked.as_mut_ptr();
    }
    // SAFETY: as above.
    unsafe {
        *argc = new_argc;
    }
}
