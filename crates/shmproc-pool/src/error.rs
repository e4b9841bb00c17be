//! The pool's error type.

use std::ops::Range;

use shmproc_process::{Pid, ProcessError};
use shmproc_shm::SegmentError;
use shmproc_shm::transfer::TransferError;

/// What a pool call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A bad argument: zero processes, input and output of different lengths.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The pool was closed or terminated.
    #[error("the pool is closed")]
    Closed,
    /// A worker died while it held a chunk, and the chunk ran out of retries.
    #[error("worker {pid} died ({}) while running items {}..{}", describe_exit(*.exitcode), .chunk.start, .chunk.end)]
    WorkerDied {
        /// The worker's pid.
        pid: Pid,
        /// Its exit code, Python's way: `-N` for signal `N`.
        exitcode: Option<i32>,
        /// The index range of the chunk it held.
        chunk: Range<usize>,
    },
    /// The task panicked on item `index`.
    #[error("task panicked on item {index}: {message}")]
    TaskPanicked {
        /// The panic message.
        message: String,
        /// The index of the item (for `map_slices`, the first of the slice).
        index: usize,
    },
    /// The result did not come within the timeout (it stays pending).
    #[error("timed out waiting for the result")]
    Timeout,
    /// A task's input or result could not be encoded or decoded (serde).
    #[error("encoding: {0}")]
    Codec(String),
    /// The initializer failed in a worker (the pool does not start).
    #[error("the initializer failed: {0}")]
    Initializer(String),
    /// Starting or talking to a worker failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A shared array could not be created.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Arrays could not be packed for the workers.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// An OS call failed.
    #[error("{op}: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl PoolError {
    /// The signal that killed the worker, for [`PoolError::WorkerDied`].
    pub fn signal(&self) -> Option<i32> {
        match self {
            PoolError::WorkerDied {
                exitcode: Some(c), ..
            } if *c < 0 => Some(-c),
            _ => None,
        }
    }
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(c) if c < 0 => format!("signal {}", -c),
        Some(c) => format!("exit code {c}"),
        None => "exit status unknown".into(),
    }
}
