//! The messages between the driver (rank 0) and a worker rank: a few
//! little-endian `u64` words, then a blob, as one MPI message of bytes
//! under [`TAG`]. Parsing checks every length; nothing another rank sent
//! can make this rank panic.

use mpi::Rank;
use mpi::point_to_point::{MatchedReceiveVec, Message, Source, Status};
use mpi::topology::{Communicator, SimpleCommunicator};
use std::time::{Duration, Instant};

/// The tag of every message of the pool.
pub(crate) const TAG: i32 = 0x5348;

/// Driver to worker: a chunk of serde-encoded tasks.
/// `[TASKS, job, chunk, count, runner (2), task (2)]` + the encoded inputs.
pub(crate) const TASKS: u64 = 1;
/// Driver to worker: a chunk of a `Pod` call, its input bytes attached.
/// `[POD, job, chunk, start, end, runner (2), task (2)]` + input bytes.
pub(crate) const POD: u64 = 2;
/// Driver to worker on the driver's node: a chunk of a `Pod` call whose
/// arrays the worker maps itself (`/proc/<pid>/fd/<fd>`).
/// `[POD_SHM, job, chunk, start, end, runner (2), task (2), pid, in_fd,
/// in_ino, in_len, out_fd, out_ino, out_len, aliased]`.
pub(crate) const POD_SHM: u64 = 3;
/// Driver to worker: unmap the arrays of the `Pod` call that ended.
pub(crate) const RELEASE: u64 = 4;
/// Driver to worker: leave the serve loop.
pub(crate) const STOP: u64 = 5;

/// Worker to driver: a chunk done. `[DONE, job, chunk]` + the encoded
/// results (serde), the output bytes (`POD`) or nothing (`POD_SHM`).
pub(crate) const DONE: u64 = 11;
/// Worker to driver: the task panicked. `[PANICKED, job, chunk, index]` +
/// the message.
pub(crate) const PANICKED: u64 = 12;
/// Worker to driver: the chunk could not run (decoding, a code reference
/// that does not resolve, a segment that does not open). `[FAILED, job,
/// chunk]` + the message.
pub(crate) const FAILED: u64 = 13;

/// The most header words a message has.
const MAX_WORDS: usize = 32;

/// Builds a message: `words`, then `blob`.
pub(crate) fn message(words: &[u64], blob: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + words.len() * 8 + blob.len());
    b.extend_from_slice(&(words.len() as u64).to_le_bytes());
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b.extend_from_slice(blob);
    b
}

/// A parsed message: its words and its blob.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) words: Vec<u64>,
    pub(crate) blob: &'a [u8],
}

impl Parsed<'_> {
    /// Word `i`, or 0 when the message is shorter (a kind then fails its
    /// own checks).
    pub(crate) fn w(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }
}

/// Parses a message built by [`message`].
pub(crate) fn parse(msg: &[u8]) -> Result<Parsed<'_>, String> {
    let word = |i: usize| -> Option<u64> {
        msg.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let n = word(0).ok_or_else(|| format!("short message ({} bytes)", msg.len()))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n == 0 || n > MAX_WORDS {
        return Err(format!("message of {n} words"));
    }
    let words: Option<Vec<u64>> = (1..=n).map(word).collect();
    let words = words.ok_or("message shorter than its words")?;
    Ok(Parsed {
        words,
        blob: &msg[(n + 1) * 8..],
    })
}

/// Receives the message that `probe` matched.
pub(crate) fn receive(probed: (Message, Status)) -> (Vec<u8>, Status) {
    probed.matched_receive_vec::<u8>()
}

/// How a rank waits for a message without holding a core: it probes in a
/// tight loop for [`SPIN`], then yields between probes until [`YIELD`],
/// then sleeps between probes, from 20 µs up to 1 ms. MPI's own blocking
/// receive spins on the CPU for as long as it waits, which would take a
/// core from the ranks that compute on an oversubscribed node.
pub(crate) struct Backoff {
    since: Instant,
    sleep: Duration,
}

/// How long a waiting rank probes without yielding.
pub(crate) const SPIN: Duration = Duration::from_micros(30);
/// How long a waiting rank probes, yielding, before it sleeps.
pub(crate) const YIELD: Duration = Duration::from_micros(300);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            sleep: Duration::from_micros(20),
        }
    }

    /// Waits a little before the next probe.
    pub(crate) fn pause(&mut self) {
        let waited = self.since.elapsed();
        if waited < SPIN {
            std::hint::spin_loop();
        } else if waited < YIELD {
            std::thread::yield_now();
        } else {
            // Polling is the only way here: MPI has no wait that sleeps
            // (OpenMPI's blocking calls spin in its progress engine).
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(Duration::from_millis(1));
        }
    }
}

/// A message of the pool from `source`, if one is waiting.
pub(crate) fn try_probe(
    world: &SimpleCommunicator,
    source: Option<Rank>,
) -> Option<(Message, Status)> {
    match source {
        Some(r) => world
            .process_at_rank(r)
            .immediate_matched_probe_with_tag(TAG),
        None => world.any_process().immediate_matched_probe_with_tag(TAG),
    }
}

/// The number of ranks of `world`.
pub(crate) fn size(world: &SimpleCommunicator) -> usize {
    usize::try_from(world.size()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let m = message(&[TASKS, 7, 8], b"blob");
        let p = parse(&m).expect("parse");
        assert_eq!(p.words, [TASKS, 7, 8]);
        assert_eq!(p.blob, b"blob");
        assert_eq!(p.w(10), 0);
        assert!(parse(&m[..7]).is_err());
        assert!(parse(&m[..20]).is_err());
        assert!(parse(&message(&[], b"")).is_err());
        let mut huge = m.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }
}
