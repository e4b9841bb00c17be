//! A worker rank's serve loop: receive a chunk from the driver, run it,
//! send the result back, until told to stop.
//!
//! A worker sends its result with a non-blocking send and, while that send
//! is in flight, keeps receiving what the driver sends it (queued): the
//! driver's own sends block, so a worker that only sent would deadlock with
//! a driver that is sending it its next chunk, for messages past MPI's
//! eager limit.

use std::collections::VecDeque;

use mpi::Rank;
use mpi::point_to_point::Destination;
use mpi::topology::{Communicator, SimpleCommunicator};

use crate::ident::WireRef;
use crate::proto::{self, Backoff};
use crate::runners::{Failure, Mapped, PodRunner, RunPod, RunTasks, ShmArrays, TaskRunner};

const DRIVER: Rank = 0;

/// The runners a worker resolved last, kept for the next chunk of the same
/// call.
#[derive(Default)]
struct Resolved {
    tasks: Option<((WireRef, WireRef), Box<dyn RunTasks>)>,
    pod: Option<((WireRef, WireRef), Box<dyn RunPod>)>,
}

impl Resolved {
    fn tasks(&mut self, runner: WireRef, task: WireRef) -> Result<&dyn RunTasks, String> {
        if self
            .tasks
            .as_ref()
            .is_none_or(|(k, _)| *k != (runner, task))
        {
            let r: TaskRunner = runner.resolve()?;
            self.tasks = Some(((runner, task), r(task)?));
        }
        match &self.tasks {
            Some((_, r)) => Ok(&**r),
            None => Err("no runner".into()),
        }
    }

    fn pod(&mut self, runner: WireRef, task: WireRef) -> Result<&dyn RunPod, String> {
        if self.pod.as_ref().is_none_or(|(k, _)| *k != (runner, task)) {
            let r: PodRunner = runner.resolve()?;
            self.pod = Some(((runner, task), r(task)?));
        }
        match &self.pod {
            Some((_, r)) => Ok(&**r),
            None => Err("no runner".into()),
        }
    }
}

/// Serves the driver until it says stop.
pub(crate) fn serve(world: &SimpleCommunicator) {
    let mut inbox: VecDeque<Vec<u8>> = VecDeque::new();
    let mut resolved = Resolved::default();
    let mut maps = Mapped::default();
    let mut out = Vec::new();
    loop {
        let msg = match inbox.pop_front() {
            Some(m) => m,
            None => wait_message(world),
        };
        let p = match proto::parse(&msg) {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "shmproc-mpi: rank {}: bad message from the driver: {e}",
                    world.rank()
                );
                continue;
            }
        };
        let (job, chunk) = (p.w(1), p.w(2));
        out.clear();
        let outcome = match p.w(0) {
            proto::STOP => return,
            proto::RELEASE => {
                maps.clear();
                continue;
            }
            proto::TASKS => {
                let count = usize::try_from(p.w(3)).unwrap_or(usize::MAX);
                let (runner, task) = refs(&p, 4);
                resolved
                    .tasks(runner, task)
                    .map_err(Failure::Other)
                    .and_then(|r| r.run(count, p.blob, &mut out))
            }
            proto::POD => {
                let start = usize::try_from(p.w(3)).unwrap_or(usize::MAX);
                let (runner, task) = refs(&p, 5);
                resolved
                    .pod(runner, task)
                    .map_err(Failure::Other)
                    .and_then(|r| r.run_bytes(start, p.blob, &mut out))
            }
            proto::POD_SHM => {
                let start = usize::try_from(p.w(3)).unwrap_or(usize::MAX);
                let end = usize::try_from(p.w(4)).unwrap_or(usize::MAX);
                let (runner, task) = refs(&p, 5);
                let at = ShmArrays {
                    pid: p.w(9),
                    input: (p.w(10), p.w(11), p.w(12)),
                    output: (p.w(13), p.w(14), p.w(15)),
                    aliased: p.w(16) != 0,
                };
                resolved
                    .pod(runner, task)
                    .map_err(Failure::Other)
                    .and_then(|r| r.run_shm(&mut maps, &at, start, end))
            }
            k => Err(Failure::Other(format!("unknown message kind {k}"))),
        };
        let reply = match outcome {
            Ok(()) => proto::message(&[proto::DONE, job, chunk], &out),
            Err(Failure::Panic { offset, message }) => proto::message(
                &[proto::PANICKED, job, chunk, offset as u64],
                message.as_bytes(),
            ),
            Err(Failure::Other(m)) => proto::message(
                &[proto::FAILED, job, chunk],
                format!("rank {}: {m}", world.rank()).as_bytes(),
            ),
        };
        send_while_receiving(world, &reply, &mut inbox);
    }
}

fn refs(p: &proto::Parsed<'_>, at: usize) -> (WireRef, WireRef) {
    (
        WireRef::from_words(p.w(at), p.w(at + 1)),
        WireRef::from_words(p.w(at + 2), p.w(at + 3)),
    )
}

/// The driver's next message, waiting without holding a core.
fn wait_message(world: &SimpleCommunicator) -> Vec<u8> {
    let mut backoff = Backoff::new();
    loop {
        if let Some(probed) = proto::try_probe(world, Some(DRIVER)) {
            return proto::receive(probed).0;
        }
        backoff.pause();
    }
}

/// Sends `reply` to the driver; meanwhile queues what the driver sends.
fn send_while_receiving(world: &SimpleCommunicator, reply: &[u8], inbox: &mut VecDeque<Vec<u8>>) {
    let driver = world.process_at_rank(DRIVER);
    mpi::request::scope(|scope| {
        let mut req = driver.immediate_send_with_tag(scope, reply, proto::TAG);
        let mut backoff = Backoff::new();
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if let Some(probed) = proto::try_probe(world, Some(DRIVER)) {
                inbox.push_back(proto::receive(probed).0);
                continue;
            }
            backoff.pause();
        }
    });
}
