//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use shmproc_process::{Context, StartMethod, get_context};

/// Every start method, as the tests run them: `fork` is allowed with
/// threads, since `cargo test` runs each test on a thread of its own.
pub fn contexts() -> Vec<Context> {
    vec![
        get_context(StartMethod::Fork).allow_fork_with_threads(true),
        get_context(StartMethod::Spawn),
        get_context(StartMethod::ForkServer),
    ]
}
