//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use shmproc_process::{Context, StartMethod, get_context};
use shmproc_shm::os;
use shmproc_sync::{Event, RawValue};
use shmproc_testing::TIMEOUT;

/// Every start method, as the tests run them: `fork` is allowed with
/// threads, since `cargo test` runs each test on a thread of its own.
pub fn contexts() -> Vec<Context> {
    vec![
        get_context(StartMethod::Fork).allow_fork_with_threads(true),
        get_context(StartMethod::Spawn),
        get_context(StartMethod::ForkServer),
    ]
}

/// The context of [`contexts`] whose start method is named `name`
/// (`"fork"`, `"spawn"`, `"forkserver"`), as a test passes it to a child.
///
/// # Panics
/// On an unknown name.
pub fn context_named(name: &str) -> Context {
    contexts()
        .into_iter()
        .find(|c| c.start_method().as_str() == name)
        .expect("known start method")
}

/// A child target that stores its pid, sets `started`, then waits (up to
/// [`TIMEOUT`]) for something that never comes: a child that runs until it
/// is killed or its test ends.
pub fn sleeper((started, pid): (Event, RawValue<i32>)) {
    pid.store(os::getpid().as_raw());
    started.set();
    let never = Event::new().expect("event");
    let _ = never.wait_timeout(TIMEOUT);
}
