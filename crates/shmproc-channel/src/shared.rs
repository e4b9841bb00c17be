//! Every channel object is a [`SharedObject`]: it opens again from its
//! segment's name or descriptor, so it passes to a child process under every
//! start method (one blanket impl in `shmproc_shm::transfer`).

use bytemuck::Pod;
use shmproc_shm::{Segment, SegmentKind, SharedObject, Source};

use crate::bytes::ByteQueue;
use crate::error::QueueError;
use crate::joinable::JoinableQueue;
use crate::pipe::ConnectionError;
use crate::pipe::{Connection, PipeEnd};
use crate::queue::Queue;
use crate::simple::SimpleQueue;

impl<T: Pod> SharedObject for Queue<T> {
    const WHAT: &'static str = "Queue";
    type Error = QueueError;

    fn segment(&self) -> &Segment {
        Queue::segment(self)
    }

    fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        Queue::open_with(SegmentKind::QUEUE, source)
    }
}

impl<T: Pod> SharedObject for JoinableQueue<T> {
    const WHAT: &'static str = "JoinableQueue";
    type Error = QueueError;

    fn segment(&self) -> &Segment {
        Queue::segment(self)
    }

    fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        JoinableQueue::open_source(source)
    }
}

impl<T: Pod> SharedObject for SimpleQueue<T> {
    const WHAT: &'static str = "SimpleQueue";
    type Error = QueueError;

    fn segment(&self) -> &Segment {
        SimpleQueue::segment(self)
    }

    fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        SimpleQueue::open_source(source)
    }
}

impl SharedObject for ByteQueue {
    const WHAT: &'static str = "ByteQueue";
    type Error = QueueError;

    fn segment(&self) -> &Segment {
        ByteQueue::segment(self)
    }

    fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        ByteQueue::open_source(source)
    }
}

/// A pipe end travels as its segment's handle plus which end it is (its
/// [`role`](SharedObject::role)); the receiver reopens that end.
///
/// Ownership (one end, one process at a time): packing gives up the
/// sender's claim ([`release_claim`](Connection::release_claim)), and the
/// receiver claims the end as it unpacks it ([`claim_now`](Connection::claim_now)),
/// before the target runs, so its death gives the peer EOF even if it never
/// used the end.
/// - A sender that never used the end: nothing to give up; its copy's drop
///   never closes a never-used end, so the receiver's use is unaffected.
/// - A sender that did use it: messages it already received stay received
///   and the receiver starts at the published indices; from then on the
///   sender's copy fails with `NotOwner` and its drop does not close the end.
///   Use the end in one process only.
///
/// Only a child killed while still booting (before that claim) leaves the
/// end counted as the sender's, with no EOF: for that case use a timeout, or
/// `wait` on the process sentinel beside the connection.
impl SharedObject for Connection {
    const WHAT: &'static str = "Connection";
    type Error = ConnectionError;

    fn segment(&self) -> &Segment {
        Connection::segment(self)
    }

    fn open_source(source: Source<'_>) -> Result<Self, ConnectionError> {
        Connection::open_source(source, PipeEnd::First)
    }

    fn role(&self) -> u8 {
        match self.end() {
            PipeEnd::First => 0,
            PipeEnd::Second => 1,
        }
    }

    fn open_as(source: Source<'_>, role: u8) -> Option<Result<Self, ConnectionError>> {
        let end = match role {
            0 => PipeEnd::First,
            1 => PipeEnd::Second,
            _ => return None,
        };
        Some(Connection::open_source(source, end))
    }

    fn hand_over(&self) {
        self.release_claim();
    }

    fn take_over(&mut self) -> Result<(), ConnectionError> {
        Ok(self.claim_now()?)
    }
}
