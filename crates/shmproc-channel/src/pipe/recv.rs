//! Receiving: [`recv_bytes`](Connection::recv_bytes) and its variants, `recv`,
//! `recv_obj`, the in-place [`RecvGuard`], and what they share: waiting
//! for data, the next record (skipping pads), copying a body out (whole or
//! streamed) and giving space back (`publish_head`).
// Raw copies out of the ring, `Vec::set_len` after them, and the borrowed
// message; every block justified.
#![allow(unsafe_code)]

use std::mem::size_of;
use std::time::Duration;

use bytemuck::Pod;
use shmproc_shm::sync::real::Ordering;
use shmproc_sync::futex::{self, Deadline, Spin, Wake};

use super::layout::{
    BUSY_SPIN_LIMIT, INLINE, INLINE_MAX, LINE, MAX_PIPE_MESSAGE_LEN, READER_WAITING, Rec, TAG_MSG,
    TAG_PAD, WRITER_WAITING, copy_small, parse_header, record_shape,
};
use super::{Connection, ConnectionError, Result};
use crate::error::Corrupt;

impl Connection {
    pub(super) fn check_read(&mut self) -> Result<()> {
        if !self.can_read {
            return Err(ConnectionError::WrongDirection("receive"));
        }
        self.claim()
    }

    /// Bytes available to read (refreshing the cached tail when needed).
    pub(super) fn rx_avail(&mut self, need: u64) -> Result<u64> {
        let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
        if avail >= need && avail <= self.rx.cap {
            return Ok(avail);
        }
        // Acquire: pairs with the writer's Release store of `tail` in `publish_tail`.
        let tail = self.rx.ctl().tail.value.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.rx_head);
        if avail > self.rx.cap {
            return Err(Corrupt::new("pipe tail", tail).into());
        }
        self.rx_cached_tail = tail;
        Ok(avail)
    }

    #[inline]
    pub(super) fn publish_head(&mut self) {
        // Release: pairs with the writer's Acquire load of `head` in `tx_free`.
        self.rx
            .ctl()
            .head
            .value
            .store(self.rx_head, Ordering::Release);
        // The light fence: pairs with the writer's heavy fence in
        // `wait_space` (Dekker).
        self.rx.light_fence(self.light);
        self.rx.wake(WRITER_WAITING);
    }

    /// Waits until at least `need` bytes are readable. `Ok(false)`: the
    /// peer is gone and they will never come; `Err(Timeout)` at the deadline.
    fn wait_data(&mut self, need: u64, deadline: Deadline) -> Result<bool> {
        let mut spin = Spin::new();
        let mut light = true;
        // Without a deadline, keep spinning while the writer is filling a
        // large record (`busy`, bounded by BUSY_SPIN_LIMIT): it is about to
        // be published, and sleeping would cost both sides a futex call.
        let patient = deadline.slice(Duration::MAX) == Some(Duration::MAX);
        loop {
            if self.rx_avail(need)? >= need {
                return Ok(true);
            }
            if self.peer_gone(false) {
                return Ok(self.rx_avail(need)? >= need);
            }
            if (spin.more() && !deadline.expired())
                || (patient
                    && spin.count() < BUSY_SPIN_LIMIT
                    && self.rx.ctl().wake.busy.load(Ordering::Relaxed) != 0)
            {
                std::hint::spin_loop();
                continue;
            }
            if deadline.expired() {
                return Err(ConnectionError::Timeout);
            }
            let ring = self.rx;
            let w = &ring.ctl().wake;
            // Acquire: pairs with the writer's Release `fetch_add` in `Ring::wake`.
            let seq = w.wake.load(Ordering::Acquire);
            w.waiters.fetch_or(READER_WAITING, Ordering::Relaxed);
            // The heavy fence (after a light first sleep): pairs with the
            // writer's light fence in `publish` (Dekker).
            let cap = ring.sleep_fence(light);
            if self.rx_avail(need)? >= need {
                return Ok(true);
            }
            if self.peer_closed() {
                return Ok(self.rx_avail(need)? >= need);
            }
            let Some(slice) = deadline.slice(cap) else {
                return Err(ConnectionError::Timeout);
            };
            let woke = futex::wait(&w.wake, seq, slice);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return Ok(self.rx_avail(need)? >= need);
            }
        }
    }

    /// The next message's header, skipping pad records. Waits up to `deadline`.
    pub(super) fn next_record(&mut self, deadline: Deadline) -> Result<Rec> {
        loop {
            if !self.wait_data(LINE, deadline)? {
                if self.rx_avail(1)? > 0 {
                    return Err(Corrupt::new("pipe record cut short", self.rx_head).into());
                }
                return Err(ConnectionError::Eof);
            }
            let (tag, len) = self.rx.read_header(self.rx_head);
            match tag {
                TAG_PAD => {
                    let room = self.rx.cap - (self.rx_head & self.rx.mask);
                    if len != room {
                        return Err(Corrupt::new("pipe pad length", len).into());
                    }
                    if !self.wait_data(len, deadline)? {
                        return Err(Corrupt::new("pipe pad cut short", len).into());
                    }
                    self.rx_head = self.rx_head.wrapping_add(len);
                    self.publish_head();
                }
                TAG_MSG => {
                    if len > MAX_PIPE_MESSAGE_LEN {
                        return Err(Corrupt::new("pipe message length", len).into());
                    }
                    let (payload, span) = record_shape(len);
                    let streamed = span > self.rx.cap;
                    if !streamed && (self.rx_head & self.rx.mask) + span > self.rx.cap {
                        return Err(Corrupt::new("pipe record wraps", len).into());
                    }
                    return Ok(Rec {
                        len,
                        payload,
                        span,
                        streamed,
                    });
                }
                other => return Err(Corrupt::new("pipe record tag", u64::from(other)).into()),
            }
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
        let at = self.rx.data.as_ptr().wrapping_add(off as usize);
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
            unsafe {
                std::ptr::copy_nonoverlapping(at.wrapping_add(LINE as usize), dst.as_mut_ptr(), n)
            };
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
    /// `rec.len` bytes) and consumes the record.
    fn take_body(&mut self, rec: Rec, dst: *mut u8) -> Result<()> {
        if !rec.streamed {
            if !self.wait_data(rec.span, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            self.rx
                .copy_out(self.rx_head.wrapping_add(rec.payload), dst, rec.len);
            self.rx_head = self.rx_head.wrapping_add(rec.span);
            self.publish_head();
            self.after_recv();
            return Ok(());
        }
        self.rx_head = self.rx_head.wrapping_add(LINE);
        self.publish_head();
        let mut done = 0u64;
        while done < rec.len {
            if !self.wait_data(1, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
            let n = avail.min(rec.len - done);
            // SAFETY: `done + n <= rec.len`, inside `dst` (caller's contract).
            let at = unsafe { dst.add(done as usize) };
            self.rx.copy_out(self.rx_head, at, n);
            self.rx_head = self.rx_head.wrapping_add(n);
            self.publish_head();
            done += n;
        }
        let pad = self.rx_head.wrapping_neg() & (LINE - 1);
        if pad > 0 {
            if !self.wait_data(pad, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            self.rx_head = self.rx_head.wrapping_add(pad);
            self.publish_head();
        }
        self.after_recv();
        Ok(())
    }

    fn recv_vec(&mut self, max: u64, deadline: Deadline) -> Result<Vec<u8>> {
        self.check_read()?;
        let rec = self.next_record(deadline)?;
        if rec.len > max {
            return Err(ConnectionError::TooLong { len: rec.len, max });
        }
        let n = usize::try_from(rec.len).map_err(|_| ConnectionError::TooLong {
            len: rec.len,
            max: usize::MAX as u64,
        })?;
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| ConnectionError::TooLong {
                len: rec.len,
                max: 0,
            })?;
        self.take_body(rec, v.as_mut_ptr())?;
        // SAFETY: `take_body` initialised all `n` bytes of the reserved capacity.
        unsafe { v.set_len(n) };
        Ok(v)
    }

    /// Receives the next byte message (Python's `recv_bytes`). Blocks until
    /// one arrives or the peer is gone.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] when the peer closed (or died) and every
    /// message was received; [`Truncated`](ConnectionError::Truncated),
    /// [`Closed`](ConnectionError::Closed), [`NotOwner`](ConnectionError::NotOwner),
    /// [`WrongDirection`](ConnectionError::WrongDirection), [`Corrupt`](ConnectionError::Corrupt).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_vec(MAX_PIPE_MESSAGE_LEN, Deadline::NEVER)
    }

    /// As [`recv_bytes`](Self::recv_bytes), giving up after `timeout` when no
    /// message has started (a message that has started is received whole).
    ///
    /// # Errors
    /// [`ConnectionError::Timeout`], and as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_vec(MAX_PIPE_MESSAGE_LEN, Deadline::after(timeout))
    }

    /// Receives the next message if it is at most `max` bytes (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// # Errors
    /// [`ConnectionError::TooLong`] (the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_max(&mut self, max: usize) -> Result<Vec<u8>> {
        self.recv_vec(max as u64, Deadline::NEVER)
    }

    /// Receives the next message into `buf`, returning its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`ConnectionError::BufferTooShort`] with the length needed (the
    /// message stays readable), and as [`recv_bytes`](Self::recv_bytes).
    #[inline]
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        if let Some(n) = self.try_recv_fast(buf, false) {
            return Ok(n);
        }
        self.recv_bytes_into_slow(buf)
    }

    #[inline(never)]
    fn recv_bytes_into_slow(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        if rec.len > buf.len() as u64 {
            return Err(ConnectionError::BufferTooShort { needed: rec.len });
        }
        self.take_body(rec, buf.as_mut_ptr())?;
        Ok(rec.len as usize)
    }

    /// Receives a `Pod` value sent with [`send`](Self::send).
    ///
    /// # Errors
    /// [`ConnectionError::WrongSize`] (the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv<T: Pod>(&mut self) -> Result<T> {
        let mut v = T::zeroed();
        if self
            .try_recv_fast(bytemuck::bytes_of_mut(&mut v), true)
            .is_some()
        {
            return Ok(v);
        }
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        let expected = size_of::<T>() as u64;
        if rec.len != expected {
            return Err(ConnectionError::WrongSize {
                expected,
                found: rec.len,
            });
        }
        self.take_body(rec, bytemuck::bytes_of_mut(&mut v).as_mut_ptr())?;
        Ok(v)
    }

    /// Receives the next message, borrowed in place in the ring when it fits
    /// (copied when it streamed). The message is consumed when the guard drops.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_ref(&mut self) -> Result<RecvGuard<'_>> {
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        if rec.streamed {
            let mut v: Vec<u8> = Vec::new();
            let n = rec.len as usize;
            v.try_reserve_exact(n)
                .map_err(|_| ConnectionError::TooLong {
                    len: rec.len,
                    max: 0,
                })?;
            self.take_body(rec, v.as_mut_ptr())?;
            // SAFETY: `take_body` initialised all `n` bytes.
            unsafe { v.set_len(n) };
            return Ok(RecvGuard {
                conn: self,
                body: Body::Owned(v),
                span: 0,
            });
        }
        if !self.wait_data(rec.span, Deadline::NEVER)? {
            return Err(ConnectionError::Truncated);
        }
        let off = (self.rx_head.wrapping_add(rec.payload) & self.rx.mask) as usize;
        // SAFETY: the record does not wrap (checked in `next_record`), so the
        // payload is inside the data area.
        let ptr = unsafe { self.rx.data.as_ptr().add(off) };
        Ok(RecvGuard {
            span: rec.span,
            body: Body::InPlace {
                ptr,
                len: rec.len as usize,
            },
            conn: self,
        })
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

    /// Receives an object sent with [`send_obj`](Self::send_obj).
    ///
    /// # Errors
    /// [`ConnectionError::Decode`], and as [`recv_bytes`](Self::recv_bytes).
    #[cfg(feature = "serde")]
    pub fn recv_obj<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes()?;
        postcard::from_bytes(&bytes).map_err(ConnectionError::Decode)
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
/// bounds: the range is inside the ring).
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
