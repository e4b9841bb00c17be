//! The driver's non-blocking sends: the driver never waits for a worker to
//! receive (a blocking send of a chunk past MPI's eager limit waits until
//! the worker, busy with its previous chunk, posts its receive, and the
//! driver would hand out nothing meanwhile). The outbox owns each message's
//! buffer until MPI reports the send complete.
#![allow(unsafe_code)] // Buffers handed to MPI for the request's lifetime.

use mpi::Rank;
use mpi::point_to_point::Destination;
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};

use crate::proto::{Backoff, TAG};

/// A send in flight and its buffer (from `Box::into_raw`).
type InFlight = (Request<'static, [u8], StaticScope>, *mut [u8]);

/// Sends in flight, each with its buffer.
#[derive(Default)]
pub(crate) struct Outbox {
    pending: Vec<InFlight>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbox({} in flight)", self.pending.len())
    }
}

impl Outbox {
    /// Starts sending `msg` to `rank`.
    pub(crate) fn send(&mut self, world: &SimpleCommunicator, rank: Rank, msg: Vec<u8>) {
        let raw: *mut [u8] = Box::into_raw(msg.into_boxed_slice());
        // SAFETY: `raw` comes from `Box::into_raw` just above, so it is valid
        // and unaliased; the buffer is freed only in `progress`, after the
        // request that reads it completed, so the reference lives as long as
        // MPI may read it ("'static" to the request's scope).
        let buf: &'static [u8] = unsafe { &*raw };
        let req = world
            .process_at_rank(rank)
            .immediate_send_with_tag(StaticScope, buf, TAG);
        self.pending.push((req, raw));
    }

    /// Frees the buffers of the sends that completed.
    pub(crate) fn progress(&mut self) {
        let mut still = Vec::with_capacity(self.pending.len());
        for (req, raw) in self.pending.drain(..) {
            match req.test() {
                Ok(_) => {
                    // SAFETY: `raw` came from `Box::into_raw` in `send`; its
                    // request completed (and `test` consumed it), so MPI no
                    // longer reads the buffer and no reference to it remains.
                    drop(unsafe { Box::from_raw(raw) });
                }
                Err(req) => still.push((req, raw)),
            }
        }
        self.pending = still;
    }

    /// Waits until every send completed (the receivers are serving, so it
    /// does: a worker receives in every state).
    pub(crate) fn flush(&mut self) {
        let mut backoff = Backoff::new();
        loop {
            self.progress();
            if self.pending.is_empty() {
                return;
            }
            backoff.pause();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // A request dropped incomplete aborts the process (the mpi crate):
        // finish them. Empty after `Driver::shutdown`.
        if !self.pending.is_empty() {
            self.flush();
        }
    }
}
