//! Sending: [`send_bytes`](Connection::send_bytes) with its fast, whole-record
//! and streaming paths, `send`, `send_obj`, the in-place [`SendGuard`]
//! reservation, and publishing (the writer's `tail` store, seal, fence,
//! wake and sentinel signal).
//!
//! Each send is written once, as an `_until` method over an [`Until`]; its
//! blocking, `try_`, `_timeout` and `_deadline` forms are one-liners over
//! it. The deadline bounds the wait for room to *start* the message: a
//! message that fits in the ring is written whole once its room is free
//! (never half-sent); one longer than the ring, once its header is
//! published, streams to its end whatever the deadline.
// Raw copies into free ring space, and the reservation's slice; every block
// justified.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::sync::Ordering;
use shmproc_sync::futex::{self, Spin, Wake};

use super::layout::{
    BUSY_MIN, HDR, INLINE, INLINE_MAX, LINE, MAX_PIPE_MESSAGE_LEN, READER_WAITING, TAG_MSG,
    TAG_PAD, WRITER_WAITING, copy_small, header_bytes, record_shape,
};
use super::poll::signal;
use super::{Connection, SendError, SendTimeoutError, TrySendError, Until, forever, gave_up};
use crate::error::Corrupt;

impl Connection {
    fn check_write(&mut self) -> Result<(), SendError> {
        if !self.can_write {
            return Err(SendError::WrongDirection);
        }
        self.claim()?;
        // One Acquire load; a dead (not closed) peer is noticed when the
        // ring fills and the writer sleeps.
        if self.peer_gone(false) {
            return Err(SendError::BrokenPipe);
        }
        Ok(())
    }

    #[inline]
    fn tx_free(&mut self, need: u64) -> Result<bool, Corrupt> {
        let used = self.tx_tail.wrapping_sub(self.tx_cached_head);
        if self.tx.cap.saturating_sub(used) >= need && used <= self.tx.cap {
            return Ok(true);
        }
        // Acquire: pairs with the reader's Release store of `head`, so its
        // copies out of the freed bytes are done before we overwrite them.
        let head = self.tx.ctl().head.value.load(Ordering::Acquire);
        let used = self.tx_tail.wrapping_sub(head);
        if used > self.tx.cap {
            return Err(Corrupt::new("pipe head", head));
        }
        self.tx_cached_head = head;
        Ok(self.tx.cap - used >= need)
    }

    /// Waits until `need` bytes are free in the sending ring: `false` when
    /// `until` passed first. `Until::Now` checks once: no spin, no clock.
    fn wait_space(&mut self, need: u64, until: &mut Until) -> Result<bool, SendError> {
        if until.is_now() {
            return self.wait_space_spun(need, until, &mut Spin::new(), &mut None);
        }
        let mut spin = if cfg!(shmproc_loom) {
            Spin::new()
        } else {
            self.spin_budget[1].spin()
        };
        let mut slept = None;
        let r = self.wait_space_spun(need, until, &mut spin, &mut slept);
        if !cfg!(shmproc_loom) {
            let budget = &self.spin_budget[1];
            match slept {
                Some(began) => budget.slept(began.elapsed()),
                // Caught while spinning (a wait that found it ready at
                // once, such as a message's body after its header, says
                // nothing about spinning).
                None if spin.count() > 0 && matches!(r, Ok(true)) => budget.caught(),
                None => {}
            }
        }
        r
    }

    /// [`wait_space`](Self::wait_space) with its spinning phase `spin`;
    /// `slept` is set to when the wait began if it slept.
    fn wait_space_spun(
        &mut self,
        need: u64,
        until: &mut Until,
        spin: &mut Spin,
        slept: &mut Option<std::time::Instant>,
    ) -> Result<bool, SendError> {
        let mut light = true;
        loop {
            if self.tx_free(need)? {
                return Ok(true);
            }
            if self.peer_gone(false) {
                return Err(SendError::BrokenPipe);
            }
            if spin.more() && !until.expired() {
                // `core::hint::spin_loop` (a loom yield under the model).
                shmproc_shm::sync::spin_loop();
                continue;
            }
            if until.expired() {
                return Ok(false);
            }
            let ring = self.tx;
            let w = &ring.ctl().wake;
            // Acquire: pairs with the reader's Release `fetch_add` in `Ring::wake`.
            let seq = w.wake.load(Ordering::Acquire);
            w.waiters.fetch_or(WRITER_WAITING, Ordering::Relaxed);
            // The heavy fence (after a light first sleep): pairs with the
            // reader's light fence between its store of `head` and its load
            // of `waiters` (Dekker: one of us sees the other).
            let cap = ring.sleep_fence(light);
            if self.tx_free(need)? {
                return Ok(true);
            }
            if self.peer_closed() {
                return Err(SendError::BrokenPipe);
            }
            let Some(slice) = until.slice(cap) else {
                return Ok(false);
            };
            slept.get_or_insert_with(|| spin.since().unwrap_or_else(std::time::Instant::now));
            let woke = futex::wait(&w.wake, seq, slice);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return Err(SendError::BrokenPipe);
            }
        }
    }

    /// [`wait_space`](Self::wait_space) with no deadline, inside a message
    /// that has started.
    fn wait_space_forever(&mut self, need: u64) -> Result<(), SendError> {
        // No deadline: `false` never comes; it would only mean "wait again".
        while !self.wait_space(need, &mut Until::Never)? {}
        Ok(())
    }

    /// Publishes bytes up to `tx_tail` that start no record (chunks of a
    /// streamed message).
    #[inline]
    fn publish_tail(&mut self) {
        self.publish(None);
    }

    /// Publishes up to `tx_tail`, sealing the record that starts at `pos`.
    #[inline]
    fn publish_record(&mut self, pos: u64) {
        self.publish(Some(pos));
    }

    #[inline]
    fn publish(&mut self, record: Option<u64>) {
        let ctl = self.tx.ctl();
        // Release: pairs with the reader's Acquire load of `tail`: the
        // record's bytes are visible before the index that covers them.
        ctl.tail.value.store(self.tx_tail, Ordering::Release);
        if let Some(pos) = record {
            // After `tail`: a reader that sees the seal sees `tail` cover
            // the record.
            self.tx.seal(pos, self.seal_key);
        }
        // The light fence: pairs with the reader's heavy fence after it sets
        // `waiters` / clears `signalled` (Dekker).
        self.tx.light_fence(self.light);
        self.tx.wake(READER_WAITING);
        if ctl.wake.armed.load(Ordering::Relaxed) != 0 {
            signal(
                &ctl.wake.signalled,
                self.sentinels.as_ref().map(|s| &s.peer),
            );
        }
    }

    /// Sets or clears the `busy` hint of the sending ring: while it is set,
    /// a reader waiting for data keeps spinning instead of sleeping (a large
    /// record is being filled and will be published soon), so neither side
    /// pays a futex wake per record. Only a hint: a reader spins at most
    /// [`BUSY_SPIN_LIMIT`](super::layout::BUSY_SPIN_LIMIT) rounds on it, whatever its value.
    #[inline]
    fn set_busy(&self, busy: bool) {
        self.tx
            .ctl()
            .wake
            .busy
            .store(u32::from(busy), Ordering::Relaxed);
    }

    /// Pads the sending ring to its end when `span` bytes would wrap;
    /// `false` when `until` passed first. (A pad is invisible to the
    /// reader: one published before a deadline passes sends nothing.)
    fn pad_for(&mut self, span: u64, until: &mut Until) -> Result<bool, SendError> {
        let off = self.tx_tail & self.tx.mask;
        let room = self.tx.cap - off;
        if span > room {
            if !self.wait_space(room, until)? {
                return Ok(false);
            }
            let pos = self.tx_tail;
            self.tx.write_header(pos, TAG_PAD, room);
            self.tx_tail = pos.wrapping_add(room);
            self.publish_record(pos);
        }
        Ok(true)
    }

    /// Waits for room for a whole record of `span` bytes at the tail
    /// (padding the ring's end first when it would wrap); `false` when
    /// `until` passed first.
    fn room_for(&mut self, span: u64, until: &mut Until) -> Result<bool, SendError> {
        Ok(self.pad_for(span, until)? && self.wait_space(span, until)?)
    }

    // ---- send_bytes, send_bytes_range, send

    /// `send_bytes(buf)` over a deadline: the fast path, then the general
    /// one. `None`: `until` passed before the message started (nothing sent).
    #[inline]
    fn send_until(&mut self, buf: &[u8], until: Until) -> Result<Option<()>, SendError> {
        if self.try_send_fast(buf) {
            return Ok(Some(()));
        }
        self.send_slow(buf, until)
    }

    /// The fast path of [`send_bytes`](Self::send_bytes): a record that fits
    /// before the ring's end, in space known to be free, on an end this
    /// process holds, the peer open. `false`: nothing was written, and the
    /// general path (which waits, pads, streams and reports errors) runs.
    #[inline]
    fn try_send_fast(&mut self, buf: &[u8]) -> bool {
        let len = buf.len() as u64;
        let (_, span) = record_shape(len);
        let off = self.tx_tail & self.tx.mask;
        if !self.can_write
            || span > self.tx.cap - off
            || !self.holds_end()
            || self.peer_closed()
            || !matches!(self.tx_free(span), Ok(true))
        {
            return false;
        }
        if len <= INLINE_MAX {
            // Header and payload at once; the seal word is left alone (a
            // reader may be watching it) and stored last.
            let mut line = [0u8; LINE as usize];
            let (h, rest) = line.split_at_mut(HDR as usize);
            h.copy_from_slice(&header_bytes(TAG_MSG, len));
            copy_small(
                rest.get_mut((INLINE - HDR) as usize..).unwrap_or_default(),
                buf,
            );
            let (h, p) = line.split_at(HDR as usize);
            let p = p.get((INLINE - HDR) as usize..).unwrap_or_default();
            // SAFETY: `off + HDR <= off + span <= cap`: inside the data area;
            // the line is free space (`tx_free`) beyond the published tail,
            // which the reader does not touch (SPSC protocol).
            unsafe { self.tx.write_at(off, h) };
            // SAFETY: `off + INLINE + INLINE_MAX = off + LINE <= cap`, free
            // space as above.
            unsafe { self.tx.write_at(off + INLINE, p) };
        } else {
            let busy = len >= BUSY_MIN;
            if busy {
                self.set_busy(true);
            }
            // SAFETY: `off + LINE + len <= off + span <= cap`: inside the data
            // area, free space as above; `buf` is local memory.
            unsafe { self.tx.write_at(off + LINE, buf) };
            let h = header_bytes(TAG_MSG, len);
            // SAFETY: `off + HDR <= off + span <= cap`, free space as above.
            unsafe { self.tx.write_at(off, &h) };
        }
        let pos = self.tx_tail;
        self.tx_tail = pos.wrapping_add(span);
        self.publish_record(pos);
        if len >= BUSY_MIN {
            self.set_busy(false);
        }
        true
    }

    #[inline(never)]
    fn send_slow(&mut self, buf: &[u8], mut until: Until) -> Result<Option<()>, SendError> {
        self.check_write()?;
        let len = buf.len() as u64;
        if len > MAX_PIPE_MESSAGE_LEN {
            return Err(SendError::TooLong {
                len,
                max: MAX_PIPE_MESSAGE_LEN,
            });
        }
        let (payload, span) = record_shape(len);
        if span <= self.tx.cap {
            if !self.room_for(span, &mut until)? {
                return Ok(None);
            }
            let pos = self.tx_tail;
            let busy = len >= BUSY_MIN;
            if busy {
                self.set_busy(true);
            }
            self.tx.copy_in(pos.wrapping_add(payload), buf);
            self.tx.write_header(pos, TAG_MSG, len);
            self.tx_tail = pos.wrapping_add(span);
            self.publish_record(pos);
            if busy {
                self.set_busy(false);
            }
            return Ok(Some(()));
        }
        // Streamed: the header line (the message starts), then chunks as
        // space frees up, whatever the deadline.
        if !self.wait_space(LINE, &mut until)? {
            return Ok(None);
        }
        let pos = self.tx_tail;
        self.tx.write_header(pos, TAG_MSG, len);
        self.tx_tail = pos.wrapping_add(LINE);
        self.publish_record(pos);
        let mut rest = buf;
        while !rest.is_empty() {
            self.wait_space_forever(LINE.min(rest.len() as u64))?;
            let free = self.tx.cap - self.tx_tail.wrapping_sub(self.tx_cached_head);
            let n = free.min(rest.len() as u64) as usize;
            let (now, later) = rest.split_at(n);
            self.tx.copy_in(self.tx_tail, now);
            self.tx_tail = self.tx_tail.wrapping_add(n as u64);
            self.publish_tail();
            rest = later;
        }
        let pad = self.tx_tail.wrapping_neg() & (LINE - 1);
        if pad > 0 {
            self.wait_space_forever(pad)?;
            self.tx_tail = self.tx_tail.wrapping_add(pad);
            self.publish_tail();
        }
        Ok(Some(()))
    }

    /// Sends one byte message (Python's `send_bytes`), of any length up to
    /// [`MAX_PIPE_MESSAGE_LEN`]. A message longer than the ring streams
    /// through while the reader drains it. Blocks while the ring is full.
    ///
    /// # Errors
    /// [`SendError::BrokenPipe`] when the peer closed or died;
    /// [`TooLong`](SendError::TooLong), [`Closed`](SendError::Closed),
    /// [`NotOwner`](SendError::NotOwner),
    /// [`WrongDirection`](SendError::WrongDirection), [`Corrupt`](SendError::Corrupt).
    #[inline]
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<(), SendError> {
        forever(|| self.send_until(buf, Until::Never))
    }

    /// [`send_bytes`](Self::send_bytes) if the ring has room for the message
    /// now; nothing is sent otherwise. A message longer than the ring starts
    /// if its header line fits, and then streams to its end (waiting for the
    /// reader).
    ///
    /// # Errors
    /// [`TrySendError::Full`], and as [`send_bytes`](Self::send_bytes).
    #[inline]
    pub fn try_send_bytes(&mut self, buf: &[u8]) -> Result<(), TrySendError> {
        gave_up(self.send_until(buf, Until::Now))
    }

    /// [`send_bytes`](Self::send_bytes), waiting at most `timeout` for room;
    /// nothing is sent when it passes (see [`try_send_bytes`](Self::try_send_bytes)
    /// for a message longer than the ring).
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], and as [`send_bytes`](Self::send_bytes).
    #[inline]
    pub fn send_bytes_timeout(
        &mut self,
        buf: &[u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        gave_up(self.send_until(buf, Until::within(timeout)))
    }

    /// [`send_bytes`](Self::send_bytes), waiting until `deadline` for room
    /// (one that has passed: as [`try_send_bytes`](Self::try_send_bytes)).
    ///
    /// # Errors
    /// As [`send_bytes_timeout`](Self::send_bytes_timeout).
    #[inline]
    pub fn send_bytes_deadline(
        &mut self,
        buf: &[u8],
        deadline: Instant,
    ) -> Result<(), SendTimeoutError> {
        gave_up(self.send_until(buf, Until::At(deadline)))
    }

    /// `buf[offset..offset + size]`.
    fn range(buf: &[u8], offset: usize, size: usize) -> &[u8] {
        let end = offset.checked_add(size).expect("offset + size overflows");
        buf.get(offset..end)
            .expect("offset + size must be within the buffer")
    }

    /// Sends `buf[offset..offset + size]` (Python's `send_bytes(buf, offset, size)`).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_range(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: usize,
    ) -> Result<(), SendError> {
        self.send_bytes(Self::range(buf, offset, size))
    }

    /// [`send_bytes_range`](Self::send_bytes_range) as [`try_send_bytes`](Self::try_send_bytes).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`try_send_bytes`](Self::try_send_bytes).
    pub fn try_send_bytes_range(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: usize,
    ) -> Result<(), TrySendError> {
        self.try_send_bytes(Self::range(buf, offset, size))
    }

    /// [`send_bytes_range`](Self::send_bytes_range) as [`send_bytes_timeout`](Self::send_bytes_timeout).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`send_bytes_timeout`](Self::send_bytes_timeout).
    pub fn send_bytes_range_timeout(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: usize,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_timeout(Self::range(buf, offset, size), timeout)
    }

    /// [`send_bytes_range`](Self::send_bytes_range) as [`send_bytes_deadline`](Self::send_bytes_deadline).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`send_bytes_timeout`](Self::send_bytes_timeout).
    pub fn send_bytes_range_deadline(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: usize,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_deadline(Self::range(buf, offset, size), deadline)
    }

    /// Sends a `Pod` value as a message of `size_of::<T>()` bytes.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes) but `TooLong`.
    pub fn send<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send_bytes(bytemuck::bytes_of(value))
    }

    /// [`send`](Self::send) if the ring has room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`], and as [`send`](Self::send).
    pub fn try_send<T: Pod>(&mut self, value: &T) -> Result<(), TrySendError> {
        self.try_send_bytes(bytemuck::bytes_of(value))
    }

    /// [`send`](Self::send), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], and as [`send`](Self::send).
    pub fn send_timeout<T: Pod>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// [`send`](Self::send), waiting until `deadline` for room.
    ///
    /// # Errors
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline<T: Pod>(
        &mut self,
        value: &T,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_deadline(bytemuck::bytes_of(value), deadline)
    }

    // ---- reserve

    /// `reserve(len)` over a deadline, up to the guard: the reservation's
    /// start and whether it set the `busy` hint.
    fn reserve_until(
        &mut self,
        len: usize,
        mut until: Until,
    ) -> Result<Option<(*mut u8, bool)>, SendError> {
        self.check_write()?;
        let len64 = len as u64;
        let (payload, span) = record_shape(len64);
        if span > self.tx.cap {
            return Err(SendError::TooLong {
                len: len64,
                max: self.tx.cap - LINE,
            });
        }
        if !self.room_for(span, &mut until)? {
            return Ok(None);
        }
        let off = (self.tx_tail.wrapping_add(payload) & self.tx.mask) as usize;
        // SAFETY: the record does not wrap (`pad_for`), so `off + len <= cap`,
        // inside the data area.
        let ptr = unsafe { self.tx.data.as_ptr().add(off) };
        // The caller fills the reservation next: a large one is `busy`
        // until committed or dropped.
        let busy = len64 >= BUSY_MIN;
        if busy {
            self.set_busy(true);
        }
        Ok(Some((ptr, busy)))
    }

    fn send_guard(&mut self, len: usize, (ptr, busy): (*mut u8, bool)) -> SendGuard<'_> {
        SendGuard {
            conn: self,
            ptr,
            len,
            busy,
        }
    }

    /// Reserves `len` bytes in the sending ring, to be written in place and
    /// sent with [`SendGuard::commit`] (dropping the guard sends nothing).
    /// At most the ring size minus one line. Blocks while the ring is full.
    ///
    /// # Errors
    /// [`SendError::TooLong`] when `len` is more than the ring minus one
    /// line, and as [`send_bytes`](Self::send_bytes).
    pub fn reserve(&mut self, len: usize) -> Result<SendGuard<'_>, SendError> {
        let at = forever(|| self.reserve_until(len, Until::Never))?;
        Ok(self.send_guard(len, at))
    }

    /// [`reserve`](Self::reserve) if the ring has room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`], and as [`reserve`](Self::reserve).
    pub fn try_reserve(&mut self, len: usize) -> Result<SendGuard<'_>, TrySendError> {
        let at = gave_up::<_, _, TrySendError>(self.reserve_until(len, Until::Now))?;
        Ok(self.send_guard(len, at))
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], and as [`reserve`](Self::reserve).
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendGuard<'_>, SendTimeoutError> {
        let at =
            gave_up::<_, _, SendTimeoutError>(self.reserve_until(len, Until::within(timeout)))?;
        Ok(self.send_guard(len, at))
    }

    /// [`reserve`](Self::reserve), waiting until `deadline` for room.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout).
    pub fn reserve_deadline(
        &mut self,
        len: usize,
        deadline: Instant,
    ) -> Result<SendGuard<'_>, SendTimeoutError> {
        let at = gave_up::<_, _, SendTimeoutError>(self.reserve_until(len, Until::At(deadline)))?;
        Ok(self.send_guard(len, at))
    }
}

/// The object forms: encode, then the byte form.
#[cfg(feature = "serde")]
impl Connection {
    fn encode<T: serde::Serialize + ?Sized, E>(obj: &T) -> Result<Vec<u8>, super::SendObjError<E>> {
        postcard::to_allocvec(obj).map_err(super::SendObjError::Encode)
    }

    /// Sends any `Serialize` object, encoded with postcard.
    ///
    /// # Errors
    /// [`SendObjError::Encode`](super::SendObjError::Encode) (nothing sent),
    /// [`SendObjError::Send`](super::SendObjError::Send) with the errors of
    /// [`send_bytes`](Self::send_bytes).
    pub fn send_obj<T: serde::Serialize + ?Sized>(
        &mut self,
        obj: &T,
    ) -> Result<(), super::SendObjError> {
        let bytes = Self::encode(obj)?;
        self.send_bytes(&bytes).map_err(super::SendObjError::Send)
    }

    /// [`send_obj`](Self::send_obj) if the ring has room now.
    ///
    /// # Errors
    /// As [`send_obj`](Self::send_obj), with [`try_send_bytes`](Self::try_send_bytes)'s errors.
    pub fn try_send_obj<T: serde::Serialize + ?Sized>(
        &mut self,
        obj: &T,
    ) -> Result<(), super::SendObjError<TrySendError>> {
        let bytes = Self::encode(obj)?;
        self.try_send_bytes(&bytes)
            .map_err(super::SendObjError::Send)
    }

    /// [`send_obj`](Self::send_obj), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`send_obj`](Self::send_obj), with [`send_bytes_timeout`](Self::send_bytes_timeout)'s errors.
    pub fn send_obj_timeout<T: serde::Serialize + ?Sized>(
        &mut self,
        obj: &T,
        timeout: Duration,
    ) -> Result<(), super::SendObjError<SendTimeoutError>> {
        let bytes = Self::encode(obj)?;
        self.send_bytes_timeout(&bytes, timeout)
            .map_err(super::SendObjError::Send)
    }

    /// [`send_obj`](Self::send_obj), waiting until `deadline` for room.
    ///
    /// # Errors
    /// As [`send_obj_timeout`](Self::send_obj_timeout).
    pub fn send_obj_deadline<T: serde::Serialize + ?Sized>(
        &mut self,
        obj: &T,
        deadline: Instant,
    ) -> Result<(), super::SendObjError<SendTimeoutError>> {
        let bytes = Self::encode(obj)?;
        self.send_bytes_deadline(&bytes, deadline)
            .map_err(super::SendObjError::Send)
    }
}

/// A reservation in the sending ring ([`Connection::reserve`]): write the
/// message in place, then [`commit`](Self::commit). See the crate's
/// [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
#[derive(Debug)]
pub struct SendGuard<'a> {
    conn: &'a mut Connection,
    ptr: *mut u8,
    len: usize,
    /// Whether the reservation set the `busy` hint (cleared on drop).
    busy: bool,
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        if self.busy {
            self.conn.set_busy(false);
        }
    }
}

impl SendGuard<'_> {
    /// Sends the message.
    pub fn commit(self) {
        let len = self.len as u64;
        let c = &mut *self.conn;
        let (_, span) = record_shape(len);
        let pos = c.tx_tail;
        c.tx.write_header(pos, TAG_MSG, len);
        c.tx_tail = pos.wrapping_add(span);
        c.publish_record(pos);
    }
}

impl std::ops::Deref for SendGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is free space of the sending ring beyond
        // the published tail: the reader never reads it and we are its only
        // writer (we hold `&mut Connection`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for SendGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
