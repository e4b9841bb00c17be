//! Readiness: `poll`, `readable`, `writable`, the [`Sentinels`] socket
//! pairs behind [`sentinel`](Connection::sentinel) and their signalling,
//! and [`wait`] on several connections.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shmproc_shm::sync::{AtomicU32, Ordering};
use shmproc_sync::futex::{self, Deadline, SLICE};

use super::layout::{LINE, TAG_MSG, TAG_PAD};
use super::recv::Next;
use super::{Connection, ConnectionError, PollError, Result, Until};
use crate::error::Corrupt;

#[derive(Debug)]
pub(super) struct Sentinels {
    /// Readable while ring `end` has something (read side of our pair).
    pub(super) read: UnixStream,
    /// The write side of our own pair, to re-signal after a drain.
    pub(super) self_signal: UnixStream,
    /// The write side of the peer's pair.
    pub(super) peer: UnixStream,
}

/// Sets `word` and writes one byte to `sock` on the 0 → 1 transition.
pub(super) fn signal(word: &AtomicU32, sock: Option<&UnixStream>) {
    // AcqRel: pairs with the reader's store of 0 in `rearm`.
    if word.swap(1, Ordering::AcqRel) == 0 {
        if let Some(mut s) = sock {
            // Non-blocking: a full socket is already readable.
            let _ = s.write(&[1]);
        }
    }
}

impl Connection {
    /// Drains the sentinel, then re-signals it if something is waiting.
    pub(super) fn rearm(&self) {
        let Some(s) = &self.sentinels else { return };
        let mut buf = [0u8; 64];
        while matches!((&s.read).read(&mut buf), Ok(n) if n > 0) {}
        let w = &self.rx.ctl().wake;
        w.signalled.store(0, Ordering::Relaxed);
        // The heavy fence: pairs with the writer's light fence in `publish`
        // between its store of `tail` and its load of `armed`/swap of
        // `signalled`.
        self.rx.heavy_fence();
        if self.peek_readable() || self.peer_gone(false) {
            signal(&w.signalled, Some(&s.self_signal));
        }
    }

    fn peek_readable(&self) -> bool {
        let ctl = self.rx.ctl();
        let head = ctl.head.value.load(Ordering::Relaxed);
        let off = head & self.rx.mask;
        if self.rx.sealed(head, off, self.seal_key) {
            if self.rx.line_tag(off) == TAG_MSG {
                return true;
            }
        } else if self.rx.seal_word(off).is_some() {
            // No seal at a line start: nothing published there yet (see
            // `poll_fast`); the writer's `tail` line is left alone.
            return false;
        }
        // A sealed pad, or a head that is not a line start (corrupt).
        // Acquire: pairs with the writer's Release store of `tail`.
        let tail = ctl.tail.value.load(Ordering::Acquire);
        let (tag, len) = self.rx.read_header(head);
        let avail = tail.wrapping_sub(head);
        if avail == 0 || avail > self.rx.cap {
            return avail != 0; // corrupt counts as "ready": recv reports it
        }
        !(tag == TAG_PAD && avail <= len)
    }

    /// Whether `recv` would not block now: a message is waiting, or the
    /// peer is gone (EOF). Python's `poll()` with no timeout.
    ///
    /// Like `poll(Some(Duration::ZERO))` it looks at the record seal only
    /// (see the module docs): a writer killed between publishing `tail` and
    /// the seal (two consecutive stores) leaves a last message that these
    /// two do not report; `recv`, `poll` with a timeout and [`wait`] (which
    /// checks liveness) still deliver it.
    pub fn readable(&self) -> bool {
        self.can_read && (self.peek_readable() || self.peer_gone(false))
    }

    /// Whether a small message can be sent without blocking.
    pub fn writable(&self) -> bool {
        if !self.can_write || self.closed {
            return false;
        }
        let ctl = self.tx.ctl();
        let used = ctl
            .tail
            .value
            .load(Ordering::Relaxed)
            .wrapping_sub(ctl.head.value.load(Ordering::Acquire));
        used.saturating_add(2 * LINE) <= self.tx.cap
    }

    /// Waits up to `timeout` (`None`: forever, `Some(Duration::ZERO)`: not
    /// at all) for a message or EOF; `Ok(true)` when
    /// [`recv`](Self::recv_bytes) would not block (Python's
    /// `poll(timeout)`). Unlike the `_timeout` forms of `recv`, the
    /// deadline passing is an answer (`Ok(false)`), not an error.
    ///
    /// # Errors
    /// [`PollError::Closed`], [`NotOwner`](PollError::NotOwner),
    /// [`WrongDirection`](PollError::WrongDirection), [`Corrupt`](PollError::Corrupt).
    #[inline]
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, PollError> {
        if timeout == Some(Duration::ZERO) {
            if let Some(ready) = self.poll_fast() {
                return Ok(ready);
            }
        }
        self.poll_until(timeout.map_or(Until::Never, Until::within))
    }

    /// As [`poll`](Self::poll), waiting until `deadline` (one that has
    /// passed: as `poll(Some(Duration::ZERO))`).
    ///
    /// # Errors
    /// As [`poll`](Self::poll).
    pub fn poll_deadline(&mut self, deadline: Instant) -> Result<bool, PollError> {
        self.poll_until(Until::At(deadline))
    }

    /// `poll` over a deadline: the one implementation of its forms.
    #[inline(never)]
    fn poll_until(&mut self, mut until: Until) -> Result<bool, PollError> {
        self.check_read(PollError::WrongDirection)?;
        if let Until::Now = until {
            return Ok(self.poll_now()?);
        }
        Ok(match self.next_record(&mut until)? {
            Next::Rec(_) | Next::Eof => true,
            Next::Later => false,
        })
    }

    /// The busy-poll check of `poll(Some(Duration::ZERO))` on an end this
    /// process holds: `Some(true)` when a message header is at the head,
    /// `Some(false)` when nothing is there and the peer is open; `None`
    /// for everything else (a pad, EOF, a corrupt index): [`poll_now`](Self::poll_now)
    /// decides.
    #[inline]
    fn poll_fast(&mut self) -> Option<bool> {
        if !self.can_read || !self.holds_end() {
            return None;
        }
        let head = self.rx_head;
        let off = head & self.rx.mask;
        if self.rx.sealed(head, off, self.seal_key) {
            // A message (whole or streamed) is ready; a pad: the general path.
            return (self.rx.line_tag(off) == TAG_MSG).then_some(true);
        }
        // No seal: a writer seals every record it publishes (after `tail`),
        // so nothing is there yet, unless `tail` was already seen to cover
        // the head, the head is not a line start (corrupt) or the peer
        // closed (EOF): the general path decides those.
        let avail = self.rx_cached_tail.wrapping_sub(head);
        if (1..=self.rx.cap).contains(&avail) || self.rx.seal_word(off).is_none() {
            return None;
        }
        (!self.peer_closed()).then_some(false)
    }

    /// `poll(Some(Duration::ZERO))`: whether a message (or EOF, or a corrupt
    /// record that `recv` reports at once) is there, without spinning or
    /// reading the clock. Skips a complete pad record at the ring's end.
    fn poll_now(&mut self) -> Result<bool, Corrupt> {
        // A pad record is followed by a message header at offset 0 (never a
        // second pad): two rounds at most.
        for _ in 0..2 {
            if self.rx_avail(LINE)? < LINE {
                return Ok(self.peer_gone(false));
            }
            let (tag, len) = self.rx.read_header(self.rx_head);
            let room = self.rx.cap - (self.rx_head & self.rx.mask);
            if tag != TAG_PAD || len != room {
                return Ok(true);
            }
            if self.rx_avail(len)? < len {
                return Ok(self.peer_gone(false));
            }
            self.rx_head = self.rx_head.wrapping_add(len);
            self.publish_head();
        }
        Ok(true)
    }

    /// A descriptor that is readable while [`readable`](Self::readable)
    /// holds because of a message or a `close` (not a peer's death: see
    /// [`wait`]), for `poll(2)` or `shmproc_process::wait`. `None` for an
    /// end opened by name.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        let s = self.sentinels.as_ref()?;
        if self.can_read {
            let w = &self.rx.ctl().wake;
            w.armed.store(1, Ordering::Relaxed);
            // The heavy fence: pairs with the writer's light fence in
            // `publish` (it sees `armed`, or we see its data below).
            self.rx.heavy_fence();
            if self.peek_readable() || self.peer_gone(false) {
                signal(&w.signalled, Some(&s.self_signal));
            }
        }
        Some(s.read.as_fd())
    }
}

/// Waits until at least one of `conns` is [`readable`](Connection::readable)
/// (a message or EOF), or `timeout` passes; returns the indices of the ready
/// ones, empty on timeout (Python's `multiprocessing.connection.wait`).
///
/// Sleeps on the connections' sentinels when all have one, in slices that
/// re-check liveness (a peer killed by `SIGKILL` shows up within a slice);
/// otherwise in 1 ms slices.
///
/// # Errors
/// [`ConnectionError::Os`] when `poll` fails.
pub fn wait(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
    let fds: Option<Vec<BorrowedFd<'_>>> = conns.iter().map(|c| c.sentinel()).collect();
    let fds = fds.filter(|f| !f.is_empty());
    // Liveness (a `/proc` read per connection) every slice of SLICE.
    let liveness_every: u32 = if fds.is_some() { 1 } else { 50 };
    let mut round = 0u32;
    loop {
        let check_alive = round > 0 && round % liveness_every == 0;
        let ready: Vec<usize> = conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.readable() || (check_alive && c.can_read && c.peer_gone(true)))
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let Some(slice) = deadline.slice(SLICE) else {
            return Ok(Vec::new());
        };
        round = round.wrapping_add(1);
        match &fds {
            Some(fds) => {
                shmproc_shm::os::poll_readable(fds, Some(slice))
                    .map_err(|source| ConnectionError::Os { op: "poll", source })?;
            }
            None => {
                let local = AtomicU32::new(0);
                futex::wait(&local, 0, Duration::from_millis(1).min(slice));
            }
        }
    }
}
