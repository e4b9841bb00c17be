//! The Manager's waits' poll before they sleep (one policy for its pipes
//! and its sockets): a waiter whose peer is awake on another CPU gets its
//! message in microseconds, far less than the two cross-CPU wake-ups a
//! sleeping wait costs (10-30 µs each on the reference VM). So every wait
//! for a message (a caller for its reply, a session for the next request,
//! either side of the handshake) first polls, bounded by an adaptive
//! [`SpinBudget`], then sleeps in the blocking form with its timeout.

use std::time::{Duration, Instant};

/// The longest a waiter polls before it sleeps: a peer that is awake
/// answers a round trip well within it (a pipe's in a few µs, a TCP
/// loopback's in 10-25 µs here).
pub(crate) const HOT_SPIN: Duration = Duration::from_micros(50);
/// The shortest such poll, for a peer whose messages come seldom.
const COLD_SPIN: Duration = Duration::from_micros(2);
/// The first part of a poll, with `pause` only (the peer runs on another
/// CPU); the rest yields between polls (on a busy machine the peer may
/// need this CPU).
const PAUSE_SPIN: Duration = Duration::from_micros(4);
/// The shortest `pause` phase, for a peer that shares this CPU.
const PAUSE_MIN: Duration = Duration::from_nanos(250);
/// A message caught this soon, even after yielding, came from a peer
/// running on another CPU (a dict round trip's wait plus one
/// `sched_yield` here: 1.5 to 2.5 µs).
const PARALLEL: Duration = Duration::from_micros(3);

/// An adaptive poll budget (one per waiter), two parts:
/// - the whole poll: a wait that ended while polling doubles it back
///   towards `HOT_SPIN`, one that had to sleep halves it down to
///   `COLD_SPIN`. A session fed back to back keeps its latency; an idle
///   one sleeps almost at once (bounded, then a blocking wait: an idle
///   session costs no CPU);
/// - its `pause` part: a message caught before yielding, or within
///   `PARALLEL`, doubles it back towards `PAUSE_SPIN`; one caught
///   later (the peer needed this CPU: spinning only delayed it) halves it
///   down to `PAUSE_MIN`.
///
/// A fresh budget polls the longest: a new connection's first waits (the
/// handshake) are on a peer that is awake.
#[derive(Debug, Clone, Copy)]
pub struct SpinBudget {
    poll: Duration,
    pause: Duration,
}

impl Default for SpinBudget {
    fn default() -> Self {
        Self {
            poll: HOT_SPIN,
            pause: PAUSE_SPIN,
        }
    }
}

impl SpinBudget {
    /// The wait ended after sleeping: poll less next time.
    pub fn slept(&mut self) {
        self.poll = (self.poll / 2).max(COLD_SPIN);
    }

    fn caught(&mut self, after: Duration, yielded: bool) {
        self.poll = (self.poll * 2).min(HOT_SPIN);
        self.pause = if !yielded || after < PARALLEL {
            (self.pause * 2).min(PAUSE_SPIN)
        } else {
            (self.pause / 2).max(PAUSE_MIN)
        };
    }

    /// The whole poll now (a diagnostic).
    pub fn current(&self) -> Duration {
        self.poll
    }

    /// Calls `attempt` until it gives `Some` (or an error), for up to the
    /// budget: `pause` between the first attempts, then `sched_yield`.
    /// `Ok(None)` when the budget ran out (the caller then sleeps; the
    /// budget knows).
    ///
    /// # Errors
    /// `attempt`'s.
    pub fn poll<T, E>(
        &mut self,
        attempt: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        self.poll_until(None, attempt)
    }

    /// [`poll`](Self::poll), but never past `deadline` (a zero timeout
    /// makes one attempt). A poll that the deadline cut short teaches the
    /// budget nothing: the wait did not end, the caller gave up.
    ///
    /// # Errors
    /// `attempt`'s.
    pub fn poll_until<T, E>(
        &mut self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        if let Some(v) = attempt()? {
            self.caught(Duration::ZERO, false);
            return Ok(Some(v));
        }
        let t0 = Instant::now();
        let budget_end = t0 + self.poll;
        let (spin_until, cut) = match deadline {
            Some(d) if d < budget_end => (d, true),
            _ => (budget_end, false),
        };
        let pause_until = (t0 + self.pause.min(self.poll)).min(spin_until);
        let mut yielded = false;
        loop {
            let now = Instant::now();
            if now < pause_until {
                for _ in 0..16 {
                    std::hint::spin_loop();
                }
            } else if now < spin_until {
                yielded = true;
                std::thread::yield_now();
            } else {
                if !cut {
                    self.slept();
                }
                return Ok(None);
            }
            if let Some(v) = attempt()? {
                self.caught(t0.elapsed(), yielded);
                return Ok(Some(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_deadline_makes_one_attempt_and_teaches_nothing() {
        let mut b = SpinBudget::default();
        let before = b.current();
        let mut calls = 0;
        let r: Result<Option<()>, ()> = b.poll_until(Some(Instant::now()), || {
            calls += 1;
            Ok(None)
        });
        assert_eq!(r, Ok(None));
        assert_eq!(calls, 1);
        assert_eq!(b.current(), before);
    }

    #[test]
    fn a_poll_that_runs_out_halves_the_budget() {
        let mut b = SpinBudget::default();
        let r: Result<Option<()>, ()> = b.poll(|| Ok(None));
        assert_eq!(r, Ok(None));
        assert_eq!(b.current(), HOT_SPIN / 2);
    }
}
