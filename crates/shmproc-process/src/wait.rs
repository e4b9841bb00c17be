//! Waiting on several sentinels at once (Python's
//! `multiprocessing.connection.wait`).
//!
//! Layer 0 (foundations): uses `error`.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use shmproc_shm::os;

use crate::error::ProcessError;

/// Waits until at least one of `objects` is ready (a process sentinel: the
/// child ended; any other descriptor: readable), or `timeout` passes.
/// Returns the indices of the ready ones (empty on timeout).
///
/// # Errors
/// The OS error of `poll`.
pub fn wait(
    objects: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>, ProcessError> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let ready = os::poll_readable(objects, left).map_err(ProcessError::os("poll"))?;
        let idx: Vec<usize> = ready
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.then_some(i))
            .collect();
        if !idx.is_empty() || left.is_some_and(|l| l.is_zero()) {
            return Ok(idx);
        }
    }
}
