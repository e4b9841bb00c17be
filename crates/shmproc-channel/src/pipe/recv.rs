//! Receiving: [`recv_bytes`](Connection::recv_bytes) and its variants, `recv`,
//! `recv_obj`, the in-place [`RecvGuard`], and what they share: waiting
//! for data, the next record (skipping pads), copying a body out (whole or
//! streamed) and giving space back (`publish_head`).
//!
//! Each receive is written once, as an `_until` method over an [`Until`];
//! its blocking, `try_`, `_timeout` and `_deadline` forms are one-liners
//! over it. The deadline bounds the wait for a message to *start*: a
//! message that has started (a streamed one whose header was read) is
//! received whole.
// Raw copies out of the ring, `Vec::set_len` after them, and the borrowed
// message; every block justified.
#![allow(unsafe_code)]

use std::mem::size_of;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::sync::Ordering;
use shmproc_sync::futex::{self, Spin, Wake};

use super::layout::{
    BUSY_SPIN_LIMIT, INLINE, INLINE_MAX, LINE, MAX_PIPE_MESSAGE_LEN, READER_WAITING, Rec, TAG_MSG,
    TAG_PAD, WRITER_WAITING, copy_small, parse_header, record_shape,
};
use super::{
    ClaimError, Connection, RecvError, RecvTimeoutError, TryRecvError, Until, forever, gave_up,
};
use crate::error::Corrupt;

/// How a wait for data ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Avail {
    /// The bytes are there.
    Ready,
    /// The peer is gone and they will never come.
    Gone,
    /// The deadline passed first.
    Later,
}

/// What is at the reader's head.
#[derive(Debug, Clone, Copy)]
pub(super) enum Next {
    /// A message's header (pads skipped).
    Rec(Rec),
    /// Nothing, and the peer is gone: end of file.
    Eof,
    /// Nothing yet, and the deadline passed.
    Later,
}

impl Connection {
    /// Checks that this end receives and is this process's: `wrong` is the
    /// caller's "this end only sends" error.
    pub(super) fn check_read<E: From<ClaimError>>(&mut self, wrong: E) -> Result<(), E> {
        if !self.can_read {
            return Err(wrong);
        }
        self.claim().map_err(E::from)
    }

    /// Bytes available to read (refreshing the cached tail when needed).
    pub(super) fn rx_avail(&mut self, need: u64) -> Result<u64, Corrupt> {
        let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
        if avail >= need && avail <= self.rx.cap {
            return Ok(avail);
        }
        // Acquire: pairs with the writer's Release store of `tail` in `publish_tail`.
        let tail = self.rx.ctl().tail.value.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.rx_head);
        if avail > self.rx.cap {
            return Err(Corrupt::new("pipe tail", tail));
        }
        self.rx_cached_tail = tail;
        Ok(avail)
    }

    #[inline]
    pub(super) fn publish_head(&mut self) {
        // Release: pairs with the writer's Acquire load of `head` in `tx_free`.
        // (The model's mutant `pipe_head_relaxed` weakens it.)
        let order = if shmproc_sync::mutant!("pipe_head_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.rx.ctl().head.value.store(self.rx_head, order);
        // The light fence: pairs with the writer's heavy fence in
        // `wait_space` (Dekker).
        self.rx.light_fence(self.light);
        self.rx.wake(WRITER_WAITING);
    }

    /// Whether `need` bytes are readable once the peer is gone (nothing
    /// more will come).
    fn avail_or_gone(&mut self, need: u64) -> Result<Avail, Corrupt> {
        Ok(if self.rx_avail(need)? >= need {
            Avail::Ready
        } else {
            Avail::Gone
        })
    }

    /// Waits until at least `need` bytes are readable, the peer is gone, or
    /// `until` passes. `Until::Now` checks once: no spin, no clock.
    fn wait_data(&mut self, need: u64, until: &mut Until) -> Result<Avail, Corrupt> {
        if until.is_now() {
            return self.wait_data_spun(need, until, &mut Spin::new(), &mut None);
        }
        let mut spin = if cfg!(shmproc_loom) {
            Spin::new()
        } else {
            self.spin_budget[0].spin()
        };
        let mut slept = None;
        let r = self.wait_data_spun(need, until, &mut spin, &mut slept);
        if !cfg!(shmproc_loom) {
            let budget = &self.spin_budget[0];
            match slept {
                Some(began) => budget.slept(began.elapsed()),
                // Caught while spinning (a wait that found it ready at
                // once, such as a message's body after its header, says
                // nothing about spinning).
                None if spin.count() > 0 && matches!(r, Ok(Avail::Ready)) => budget.caught(),
                None => {}
            }
        }
        r
    }

    /// [`wait_data`](Self::wait_data) with its spinning phase `spin`;
    /// `slept` is set to when the wait began if it slept.
    fn wait_data_spun(
        &mut self,
        need: u64,
        until: &mut Until,
        spin: &mut Spin,
        slept: &mut Option<std::time::Instant>,
    ) -> Result<Avail, Corrupt> {
        let mut light = true;
        // Without a deadline, keep spinning while the writer is filling a
        // large record (`busy`, bounded by BUSY_SPIN_LIMIT): it is about to
        // be published, and sleeping would cost both sides a futex call.
        let patient = until.is_never();
        loop {
            if self.rx_avail(need)? >= need {
                return Ok(Avail::Ready);
            }
            if self.peer_gone(false) {
                return self.avail_or_gone(need);
            }
            if (spin.more() && !until.expired())
                || (patient
                    && spin.count() < BUSY_SPIN_LIMIT
                    && self.rx.ctl().wake.busy.load(Ordering::Relaxed) != 0)
            {
                // `core::hint::spin_loop` (a loom yield under the model).
                shmproc_shm::sync::spin_loop();
                continue;
            }
            if until.expired() {
                return Ok(Avail::Later);
            }
            let ring = self.rx;
            let w = &ring.ctl().wake;
            // Acquire: pairs with the writer's Release `fetch_add` in `Ring::wake`.
            let seq = w.wake.load(Ordering::Acquire);
            w.waiters.fetch_or(READER_WAITING, Ordering::Relaxed);
            // The heavy fence (after a light first sleep): pairs with the
            // writer's light fence in `publish` (Dekker).
            let cap = ring.sleep_fence(light);
            // The re-check (the model's mutant `pipe_skip_recheck` drops it).
            if !shmproc_sync::mutant!("pipe_skip_recheck") && self.rx_avail(need)? >= need {
                return Ok(Avail::Ready);
            }
            if self.peer_closed() {
                return self.avail_or_gone(need);
            }
            let Some(slice) = until.slice(cap) else {
                return Ok(Avail::Later);
            };
            slept.get_or_insert_with(|| spin.since().unwrap_or_else(std::time::Instant::now));
            let woke = futex::wait(&w.wake, seq, slice);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return self.avail_or_gone(need);
            }
        }
    }

    /// [`wait_data`](Self::wait_data) with no deadline, inside a message
    /// that has started: `false` when the peer is gone.
    fn wait_data_forever(&mut self, need: u64) -> Result<bool, Corrupt> {
        loop {
            match self.wait_data(need, &mut Until::Never)? {
                Avail::Ready => return Ok(true),
                Avail::Gone => return Ok(false),
                // No deadline: never; it would only mean "wait again".
                Avail::Later => {}
            }
        }
    }

    /// The next message's header, skipping pad records. Waits up to `until`.
    pub(super) fn next_record(&mut self, until: &mut Until) -> Result<Next, Corrupt> {
        loop {
            match self.wait_data(LINE, until)? {
                Avail::Ready => {}
                Avail::Later => return Ok(Next::Later),
                Avail::Gone => {
                    if self.rx_avail(1)? > 0 {
                        return Err(Corrupt::new("pipe record cut short", self.rx_head));
                    }
                    return Ok(Next::Eof);
                }
            }
            let (tag, len) = self.rx.read_header(self.rx_head);
            match tag {
                TAG_PAD => {
                    let room = self.rx.cap - (self.rx_head & self.rx.mask);
                    if len != room {
                        return Err(Corrupt::new("pipe pad length", len));
                    }
                    // A pad is published whole: a wait here is only for a
                    // corrupt one.
                    match self.wait_data(len, until)? {
                        Avail::Ready => {}
                        Avail::Later => return Ok(Next::Later),
                        Avail::Gone => return Err(Corrupt::new("pipe pad cut short", len)),
                    }
                    self.rx_head = self.rx_head.wrapping_add(len);
                    self.publish_head();
                }
                TAG_MSG => {
                    if len > MAX_PIPE_MESSAGE_LEN {
                        return Err(Corrupt::new("pipe message length", len));
                    }
                    let (payload, span) = record_shape(len);
                    let streamed = span > self.rx.cap;
                    if !streamed && (self.rx_head & self.rx.mask) + span > self.rx.cap {
                        return Err(Corrupt::new("pipe record wraps", len));
                    }
                    return Ok(Next::Rec(Rec {
                        len,
                        payload,
                        span,
                        streamed,
                    }));
                }
                other => return Err(Corrupt::new("pipe record tag", u64::from(other))),
            }
        }
    }

    /// The checks and the wait every receive starts with: the next
    /// message's header, `None` when `until` passed first.
    fn record_until(&mut self, mut until: Until) -> Result<Option<Rec>, RecvError> {
        self.check_read(RecvError::WrongDirection)?;
        match self.next_record(&mut until)? {
            Next::Rec(rec) => Ok(Some(rec)),
            Next::Eof => Err(RecvError::Eof),
            Next::Later => Ok(None),
        }
    }

    /// The fast path of the copying receives: a whole record that does not
    /// wrap, already published, on an end this process holds, whose length
    /// fits `dst` (equals it when `exact`). `None`: nothing was consumed (at
    /// most the cached tail was refreshed), and the general path (which
    /// waits, skips pads, streams and reports errors) runs.
    #[inline]
    fn try_recv_fast(&mut self, dst: &mut [u8], exact: bool) -> Option<usize> {
        if !self.can_read || !self.holds_end() {
            return None;
        }
        let head = self.rx_head;
        let off = head & self.rx.mask;
        // The seal says the record at the head is complete and `tail`
        // covers it (Acquire); none yet: the general path waits on `tail`.
        if !self.rx.sealed(head, off, self.seal_key) {
            return None;
        }
        let mut line = [0u8; LINE as usize];
        self.rx.read_line(off, &mut line);
        let (tag, len) = parse_header(&line);
        if tag != TAG_MSG || len > dst.len() as u64 || (exact && len != dst.len() as u64) {
            return None;
        }
        // A streamed message (longer than the ring) or a record that would
        // wrap (corrupt): the general path.
        let (_, span) = record_shape(len);
        if span > self.rx.cap - off {
            return None;
        }
        let n = len as usize;
        let dst = dst.get_mut(..n)?;
        if len <= INLINE_MAX {
            copy_small(dst, line.get(INLINE as usize..).unwrap_or_default());
        } else {
            // SAFETY: `off + LINE + len <= off + span <= cap`: inside the data
            // area; published (sealed, written before the seal); `dst` holds
            // `len` bytes.
            unsafe { self.rx.read_at(off + LINE, dst.as_mut_ptr(), n) };
        }
        self.rx_head = head.wrapping_add(span);
        // `tail` covers the record (see above): a cached tail left behind
        // the new head is raised to it, a lower bound of the real one.
        if self.rx_cached_tail.wrapping_sub(self.rx_head) > self.rx.cap {
            self.rx_cached_tail = self.rx_head;
        }
        self.publish_head();
        self.after_recv();
        Some(n)
    }

    /// Copies the body of `rec` (at the head) into `dst` (valid for
    /// `rec.len` bytes) and consumes the record. The message has started:
    /// no deadline.
    fn take_body(&mut self, rec: Rec, dst: *mut u8) -> Result<(), RecvError> {
        if !rec.streamed {
            if !self.wait_data_forever(rec.span)? {
                return Err(RecvError::Truncated);
            }
            self.rx
                .copy_out(self.rx_head.wrapping_add(rec.payload), dst, rec.len);
            self.rx_head = self.rx_head.wrapping_add(rec.span);
            self.publish_head();
            self.after_recv();
            return Ok(());
        }
        // Each chunk's `done + n <= rec.len`: inside `dst` (caller's contract).
        self.take_streamed(rec, |done, _| Some(dst.wrapping_add(done as usize)))
    }

    /// Consumes the streamed record `rec` (at the head) chunk by chunk as
    /// the writer publishes it. `sink(done, n)` gives where the `n` bytes
    /// after the first `done` go (valid for `n` bytes), or `None` to
    /// consume them without a copy.
    fn take_streamed(
        &mut self,
        rec: Rec,
        mut sink: impl FnMut(u64, u64) -> Option<*mut u8>,
    ) -> Result<(), RecvError> {
        self.rx_head = self.rx_head.wrapping_add(LINE);
        self.publish_head();
        let mut done = 0u64;
        while done < rec.len {
            if !self.wait_data_forever(1)? {
                return Err(RecvError::Truncated);
            }
            let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
            let n = avail.min(rec.len - done);
            if let Some(at) = sink(done, n) {
                self.rx.copy_out(self.rx_head, at, n);
            }
            self.rx_head = self.rx_head.wrapping_add(n);
            self.publish_head();
            done += n;
        }
        let pad = self.rx_head.wrapping_neg() & (LINE - 1);
        if pad > 0 {
            if !self.wait_data_forever(pad)? {
                return Err(RecvError::Truncated);
            }
            self.rx_head = self.rx_head.wrapping_add(pad);
            self.publish_head();
        }
        self.after_recv();
        Ok(())
    }

    /// Receives the body of `rec` into a new `Vec`. The length in the
    /// header is the peer's word: it never sizes an allocation ahead of the
    /// bytes that back it. A record that fits the ring is waited for whole,
    /// then copied out (it stays readable when it cannot be allocated); a
    /// streamed one grows the `Vec` chunk by chunk as the bytes arrive (it
    /// is consumed when memory runs out on the way).
    fn take_vec(&mut self, rec: Rec) -> Result<Vec<u8>, RecvError> {
        let no_memory = RecvError::NoMemory { len: rec.len };
        let mut v: Vec<u8> = Vec::new();
        if !rec.streamed {
            // `span <= cap`: the record is in the ring once this returns.
            if !self.wait_data_forever(rec.span)? {
                return Err(RecvError::Truncated);
            }
            let n = rec.len as usize; // `len < span <= cap`, a local bound.
            v.try_reserve_exact(n).map_err(|_| no_memory)?;
            self.take_body(rec, v.as_mut_ptr())?;
            // SAFETY: `take_body` initialised all `n` bytes of the reserved capacity.
            unsafe { v.set_len(n) };
            return Ok(v);
        }
        let mut failed = false;
        self.take_streamed(rec, |done, n| {
            if failed {
                return None;
            }
            let (done, n) = (done as usize, n as usize);
            // SAFETY: the `done` bytes before this chunk were copied into
            // the capacity the previous calls reserved, so `done <=
            // capacity` and they are initialised.
            unsafe { v.set_len(done) };
            if v.try_reserve(n).is_err() {
                failed = true;
                return None;
            }
            Some(v.as_mut_ptr().wrapping_add(done))
        })?;
        if failed {
            return Err(no_memory);
        }
        // SAFETY: every chunk up to `rec.len` was copied into reserved
        // capacity (no call failed), so `rec.len` bytes are initialised.
        unsafe { v.set_len(rec.len as usize) };
        Ok(v)
    }

    // ---- recv_bytes, recv_bytes_max

    /// `recv_bytes_max(max)` over a deadline: the one implementation of
    /// the `recv_bytes` and `recv_bytes_max` forms.
    fn recv_vec_until(&mut self, max: u64, until: Until) -> Result<Option<Vec<u8>>, RecvError> {
        let Some(rec) = self.record_until(until)? else {
            return Ok(None);
        };
        if rec.len > max {
            return Err(RecvError::TooLong { len: rec.len, max });
        }
        self.take_vec(rec).map(Some)
    }

    /// Receives the next byte message (Python's `recv_bytes`). Blocks until
    /// one arrives or the peer is gone.
    ///
    /// # Errors
    /// [`RecvError::Eof`] when the peer closed (or died) and every message
    /// was received; [`Truncated`](RecvError::Truncated),
    /// [`NoMemory`](RecvError::NoMemory), [`Closed`](RecvError::Closed),
    /// [`NotOwner`](RecvError::NotOwner),
    /// [`WrongDirection`](RecvError::WrongDirection), [`Corrupt`](RecvError::Corrupt).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, RecvError> {
        forever(|| self.recv_vec_until(MAX_PIPE_MESSAGE_LEN, Until::Never))
    }

    /// As [`recv_bytes`](Self::recv_bytes) if a message (or EOF) is waiting;
    /// never waits (a streamed message whose start is there is received whole).
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is waiting, and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn try_recv_bytes(&mut self) -> Result<Vec<u8>, TryRecvError> {
        gave_up(self.recv_vec_until(MAX_PIPE_MESSAGE_LEN, Until::Now))
    }

    /// As [`recv_bytes`](Self::recv_bytes), giving up after `timeout` when no
    /// message has started (a message that has started is received whole).
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        gave_up(self.recv_vec_until(MAX_PIPE_MESSAGE_LEN, Until::within(timeout)))
    }

    /// As [`recv_bytes_timeout`](Self::recv_bytes_timeout), giving up at
    /// `deadline` (one that has passed: as [`try_recv_bytes`](Self::try_recv_bytes)).
    ///
    /// # Errors
    /// As [`recv_bytes_timeout`](Self::recv_bytes_timeout).
    pub fn recv_bytes_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, RecvTimeoutError> {
        gave_up(self.recv_vec_until(MAX_PIPE_MESSAGE_LEN, Until::At(deadline)))
    }

    /// Receives the next message if it is at most `max` bytes (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// # Errors
    /// [`RecvError::TooLong`] (the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_max(&mut self, max: usize) -> Result<Vec<u8>, RecvError> {
        forever(|| self.recv_vec_until(max as u64, Until::Never))
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max) if a message is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], and as [`recv_bytes_max`](Self::recv_bytes_max).
    pub fn try_recv_bytes_max(&mut self, max: usize) -> Result<Vec<u8>, TryRecvError> {
        gave_up(self.recv_vec_until(max as u64, Until::Now))
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max), waiting at most `timeout`
    /// for a message to start.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and as [`recv_bytes_max`](Self::recv_bytes_max).
    pub fn recv_bytes_max_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, RecvTimeoutError> {
        gave_up(self.recv_vec_until(max as u64, Until::within(timeout)))
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max), waiting until `deadline`
    /// for a message to start.
    ///
    /// # Errors
    /// As [`recv_bytes_max_timeout`](Self::recv_bytes_max_timeout).
    pub fn recv_bytes_max_deadline(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, RecvTimeoutError> {
        gave_up(self.recv_vec_until(max as u64, Until::At(deadline)))
    }

    // ---- recv_bytes_into

    /// `recv_bytes_into(buf)` over a deadline: the fast path, then the
    /// general one.
    #[inline]
    fn recv_into_until(
        &mut self,
        buf: &mut [u8],
        until: Until,
    ) -> Result<Option<usize>, RecvError> {
        if let Some(n) = self.try_recv_fast(buf, false) {
            return Ok(Some(n));
        }
        self.recv_into_slow(buf, until)
    }

    #[inline(never)]
    fn recv_into_slow(&mut self, buf: &mut [u8], until: Until) -> Result<Option<usize>, RecvError> {
        let Some(rec) = self.record_until(until)? else {
            return Ok(None);
        };
        if rec.len > buf.len() as u64 {
            return Err(RecvError::TooLong {
                len: rec.len,
                max: buf.len() as u64,
            });
        }
        self.take_body(rec, buf.as_mut_ptr())?;
        Ok(Some(rec.len as usize))
    }

    /// Receives the next message into `buf`, returning its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`RecvError::TooLong`] with the length needed when `buf` is too short
    /// (Python's `BufferTooShort`; the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes) but [`NoMemory`](RecvError::NoMemory).
    #[inline]
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        forever(|| self.recv_into_until(buf, Until::Never))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) if a message is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], and as [`recv_bytes_into`](Self::recv_bytes_into).
    #[inline]
    pub fn try_recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        gave_up(self.recv_into_until(buf, Until::Now))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting at most `timeout`
    /// for a message to start.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and as [`recv_bytes_into`](Self::recv_bytes_into).
    #[inline]
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        gave_up(self.recv_into_until(buf, Until::within(timeout)))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting until `deadline`
    /// for a message to start.
    ///
    /// # Errors
    /// As [`recv_bytes_into_timeout`](Self::recv_bytes_into_timeout).
    #[inline]
    pub fn recv_bytes_into_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutError> {
        gave_up(self.recv_into_until(buf, Until::At(deadline)))
    }

    // ---- recv (Pod)

    /// `recv::<T>()` over a deadline: the fast path, then the general one.
    #[inline]
    fn recv_pod_until<T: Pod>(&mut self, until: Until) -> Result<Option<T>, RecvError> {
        let mut v = T::zeroed();
        if self
            .try_recv_fast(bytemuck::bytes_of_mut(&mut v), true)
            .is_some()
        {
            return Ok(Some(v));
        }
        let Some(rec) = self.record_until(until)? else {
            return Ok(None);
        };
        let expected = size_of::<T>() as u64;
        if rec.len != expected {
            return Err(RecvError::WrongSize {
                expected,
                found: rec.len,
            });
        }
        self.take_body(rec, bytemuck::bytes_of_mut(&mut v).as_mut_ptr())?;
        Ok(Some(v))
    }

    /// Receives a `Pod` value sent with [`send`](Self::send).
    ///
    /// # Errors
    /// [`RecvError::WrongSize`] (the message stays readable), and as
    /// [`recv_bytes_into`](Self::recv_bytes_into) but `TooLong`.
    pub fn recv<T: Pod>(&mut self) -> Result<T, RecvError> {
        forever(|| self.recv_pod_until(Until::Never))
    }

    /// [`recv`](Self::recv) if a message is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], and as [`recv`](Self::recv).
    pub fn try_recv<T: Pod>(&mut self) -> Result<T, TryRecvError> {
        gave_up(self.recv_pod_until(Until::Now))
    }

    /// [`recv`](Self::recv), waiting at most `timeout` for a message.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        gave_up(self.recv_pod_until(Until::within(timeout)))
    }

    /// [`recv`](Self::recv), waiting until `deadline` for a message.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline<T: Pod>(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        gave_up(self.recv_pod_until(Until::At(deadline)))
    }

    // ---- recv_bytes_ref

    /// `recv_bytes_ref()` over a deadline, up to the guard: the body in
    /// place (the record waited for whole), or copied when it streamed.
    fn recv_body_until(&mut self, until: Until) -> Result<Option<(Body, u64)>, RecvError> {
        let Some(rec) = self.record_until(until)? else {
            return Ok(None);
        };
        if rec.streamed {
            return Ok(Some((Body::Owned(self.take_vec(rec)?), 0)));
        }
        if !self.wait_data_forever(rec.span)? {
            return Err(RecvError::Truncated);
        }
        let off = (self.rx_head.wrapping_add(rec.payload) & self.rx.mask) as usize;
        // SAFETY: the record does not wrap (checked in `next_record`), so the
        // payload is inside the data area.
        let ptr = unsafe { self.rx.data.as_ptr().add(off) };
        let body = Body::InPlace {
            ptr,
            len: rec.len as usize,
        };
        Ok(Some((body, rec.span)))
    }

    fn recv_guard(&mut self, (body, span): (Body, u64)) -> RecvGuard<'_> {
        RecvGuard {
            conn: self,
            body,
            span,
        }
    }

    /// Receives the next message, borrowed in place in the ring when it fits
    /// (copied when it streamed). The message is consumed when the guard drops.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_ref(&mut self) -> Result<RecvGuard<'_>, RecvError> {
        let body = forever(|| self.recv_body_until(Until::Never))?;
        Ok(self.recv_guard(body))
    }

    /// [`recv_bytes_ref`](Self::recv_bytes_ref) if a message is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], and as [`recv_bytes_ref`](Self::recv_bytes_ref).
    pub fn try_recv_bytes_ref(&mut self) -> Result<RecvGuard<'_>, TryRecvError> {
        let body = gave_up::<_, _, TryRecvError>(self.recv_body_until(Until::Now))?;
        Ok(self.recv_guard(body))
    }

    /// [`recv_bytes_ref`](Self::recv_bytes_ref), waiting at most `timeout`
    /// for a message to start.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], and as [`recv_bytes_ref`](Self::recv_bytes_ref).
    pub fn recv_bytes_ref_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<RecvGuard<'_>, RecvTimeoutError> {
        let body = gave_up::<_, _, RecvTimeoutError>(self.recv_body_until(Until::within(timeout)))?;
        Ok(self.recv_guard(body))
    }

    /// [`recv_bytes_ref`](Self::recv_bytes_ref), waiting until `deadline`
    /// for a message to start.
    ///
    /// # Errors
    /// As [`recv_bytes_ref_timeout`](Self::recv_bytes_ref_timeout).
    pub fn recv_bytes_ref_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<RecvGuard<'_>, RecvTimeoutError> {
        let body = gave_up::<_, _, RecvTimeoutError>(self.recv_body_until(Until::At(deadline)))?;
        Ok(self.recv_guard(body))
    }

    /// After consuming: keep the sentinel honest (drain it once the ring is
    /// empty).
    #[inline]
    fn after_recv(&self) {
        let w = &self.rx.ctl().wake;
        if w.armed.load(Ordering::Relaxed) == 0 || w.signalled.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.rx.ctl().tail.value.load(Ordering::Acquire) != self.rx_head {
            return;
        }
        self.rearm();
    }
}

/// The object forms: decode what the byte form received.
#[cfg(feature = "serde")]
impl Connection {
    fn decode<T: serde::de::DeserializeOwned, E>(
        bytes: Result<Vec<u8>, E>,
    ) -> Result<T, super::RecvObjError<E>> {
        let bytes = bytes.map_err(super::RecvObjError::Recv)?;
        postcard::from_bytes(&bytes).map_err(super::RecvObjError::Decode)
    }

    /// Receives an object sent with [`send_obj`](Self::send_obj).
    ///
    /// # Errors
    /// [`RecvObjError::Decode`](super::RecvObjError::Decode) (the message is
    /// consumed), [`RecvObjError::Recv`](super::RecvObjError::Recv) with the
    /// errors of [`recv_bytes`](Self::recv_bytes).
    pub fn recv_obj<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, super::RecvObjError> {
        Self::decode(self.recv_bytes())
    }

    /// [`recv_obj`](Self::recv_obj) if a message is waiting.
    ///
    /// # Errors
    /// As [`recv_obj`](Self::recv_obj), with [`try_recv_bytes`](Self::try_recv_bytes)'s errors.
    pub fn try_recv_obj<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<T, super::RecvObjError<TryRecvError>> {
        Self::decode(self.try_recv_bytes())
    }

    /// [`recv_obj`](Self::recv_obj), waiting at most `timeout` for a message.
    ///
    /// # Errors
    /// As [`recv_obj`](Self::recv_obj), with [`recv_bytes_timeout`](Self::recv_bytes_timeout)'s errors.
    pub fn recv_obj_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, super::RecvObjError<RecvTimeoutError>> {
        Self::decode(self.recv_bytes_timeout(timeout))
    }

    /// [`recv_obj`](Self::recv_obj), waiting until `deadline` for a message.
    ///
    /// # Errors
    /// As [`recv_obj_timeout`](Self::recv_obj_timeout).
    pub fn recv_obj_deadline<T: serde::de::DeserializeOwned>(
        &mut self,
        deadline: Instant,
    ) -> Result<T, super::RecvObjError<RecvTimeoutError>> {
        Self::decode(self.recv_bytes_deadline(deadline))
    }
}

#[derive(Debug)]
enum Body {
    InPlace { ptr: *const u8, len: usize },
    Owned(Vec<u8>),
}

/// A received message ([`Connection::recv_bytes_ref`]): borrowed in place in
/// the ring (or owned, for a message longer than the ring). Consumed when
/// dropped.
///
/// The in-place bytes are published and sit between the reader's head and
/// the writer's tail, which a writer following the protocol never writes;
/// a misbehaving writer could change them while borrowed (never out of
/// bounds: the range is inside the ring). See the crate's
/// [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
#[derive(Debug)]
pub struct RecvGuard<'a> {
    conn: &'a mut Connection,
    body: Body,
    span: u64,
}

impl std::ops::Deref for RecvGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.body {
            // SAFETY: see the type's docs: `ptr..ptr + len` is inside the
            // data area (the record does not wrap) and published.
            Body::InPlace { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Body::Owned(v) => v,
        }
    }
}

impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        if self.span > 0 {
            let c = &mut *self.conn;
            c.rx_head = c.rx_head.wrapping_add(self.span);
            c.publish_head();
            c.after_recv();
        }
    }
}
