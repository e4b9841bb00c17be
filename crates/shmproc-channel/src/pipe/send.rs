//! Sending: [`send_bytes`](Connection::send_bytes) with its fast, whole-record
//! and streaming paths, `send`, `send_obj`, the in-place [`SendGuard`]
//! reservation, and publishing (the writer's `tail` store, seal, fence,
//! wake and sentinel signal).
// Raw copies into free ring space, and the reservation's slice; every block
// justified.
#![allow(unsafe_code)]

use bytemuck::Pod;
use shmproc_shm::sync::real::Ordering;
use shmproc_sync::futex::{self, Spin, Wake};

use super::layout::{
    BUSY_MIN, HDR, INLINE, INLINE_MAX, LINE, MAX_PIPE_MESSAGE_LEN, READER_WAITING, TAG_MSG,
    TAG_PAD, WRITER_WAITING, copy_small, header_bytes, record_shape,
};
use super::poll::signal;
use super::{Connection, ConnectionError, Result};
use crate::error::Corrupt;

impl Connection {
    fn check_write(&mut self) -> Result<()> {
        if !self.can_write {
            return Err(ConnectionError::WrongDirection("send"));
        }
        self.claim()?;
        // One Acquire load; a dead (not closed) peer is noticed when the
        // ring fills and the writer sleeps.
        if self.peer_gone(false) {
            return Err(ConnectionError::BrokenPipe);
        }
        Ok(())
    }

    #[inline]
    fn tx_free(&mut self, need: u64) -> Result<bool> {
        let used = self.tx_tail.wrapping_sub(self.tx_cached_head);
        if self.tx.cap.saturating_sub(used) >= need && used <= self.tx.cap {
            return Ok(true);
        }
        // Acquire: pairs with the reader's Release store of `head`, so its
        // copies out of the freed bytes are done before we overwrite them.
        let head = self.tx.ctl().head.value.load(Ordering::Acquire);
        let used = self.tx_tail.wrapping_sub(head);
        if used > self.tx.cap {
            return Err(Corrupt::new("pipe head", head).into());
        }
        self.tx_cached_head = head;
        Ok(self.tx.cap - used >= need)
    }

    /// Waits until `need` bytes are free in the sending ring.
    fn wait_space(&mut self, need: u64) -> Result<()> {
        let mut spin = Spin::new();
        let mut light = true;
        loop {
            if self.tx_free(need)? {
                return Ok(());
            }
            if self.peer_gone(false) {
                return Err(ConnectionError::BrokenPipe);
            }
            if spin.more() {
                std::hint::spin_loop();
                continue;
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
                return Ok(());
            }
            if self.peer_closed() {
                return Err(ConnectionError::BrokenPipe);
            }
            let woke = futex::wait(&w.wake, seq, cap);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return Err(ConnectionError::BrokenPipe);
            }
        }
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

    /// Pads the sending ring to its end when `span` bytes would wrap.
    fn pad_for(&mut self, span: u64) -> Result<()> {
        let off = self.tx_tail & self.tx.mask;
        let room = self.tx.cap - off;
        if span > room {
            self.wait_space(room)?;
            let pos = self.tx_tail;
            self.tx.write_header(pos, TAG_PAD, room);
            self.tx_tail = pos.wrapping_add(room);
            self.publish_record(pos);
        }
        Ok(())
    }

    /// Sends one byte message (Python's `send_bytes`), of any length up to
    /// [`MAX_PIPE_MESSAGE_LEN`]. A message longer than the ring streams
    /// through while the reader drains it. Blocks while the ring is full.
    ///
    /// # Errors
    /// [`ConnectionError::BrokenPipe`] when the peer closed or died;
    /// [`Closed`](ConnectionError::Closed), [`NotOwner`](ConnectionError::NotOwner),
    /// [`WrongDirection`](ConnectionError::WrongDirection), [`Corrupt`](ConnectionError::Corrupt).
    #[inline]
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<()> {
        if self.try_send_fast(buf) {
            return Ok(());
        }
        self.send_bytes_slow(buf)
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
        let at = self.tx.data.as_ptr().wrapping_add(off as usize);
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
            unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), at, h.len()) };
            // SAFETY: `off + INLINE + INLINE_MAX = off + LINE <= cap`, free
            // space as above.
            unsafe {
                std::ptr::copy_nonoverlapping(p.as_ptr(), at.wrapping_add(INLINE as usize), p.len())
            };
        } else {
            let busy = len >= BUSY_MIN;
            if busy {
                self.set_busy(true);
            }
            // SAFETY: `off + LINE + len <= off + span <= cap`: inside the data
            // area, free space as above; `buf` is local memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buf.as_ptr(),
                    at.wrapping_add(LINE as usize),
                    buf.len(),
                )
            };
            let h = header_bytes(TAG_MSG, len);
            // SAFETY: `off + HDR <= off + span <= cap`, free space as above.
            unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), at, h.len()) };
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
    fn send_bytes_slow(&mut self, buf: &[u8]) -> Result<()> {
        self.check_write()?;
        let len = buf.len() as u64;
        if len > MAX_PIPE_MESSAGE_LEN {
            return Err(ConnectionError::TooLong {
                len,
                max: MAX_PIPE_MESSAGE_LEN,
            });
        }
        let (payload, span) = record_shape(len);
        if span <= self.tx.cap {
            self.pad_for(span)?;
            self.wait_space(span)?;
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
            return Ok(());
        }
        // Streamed: the header line, then chunks as space frees up.
        self.wait_space(LINE)?;
        let pos = self.tx_tail;
        self.tx.write_header(pos, TAG_MSG, len);
        self.tx_tail = pos.wrapping_add(LINE);
        self.publish_record(pos);
        let mut rest = buf;
        while !rest.is_empty() {
            self.wait_space(LINE.min(rest.len() as u64))?;
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
            self.wait_space(pad)?;
            self.tx_tail = self.tx_tail.wrapping_add(pad);
            self.publish_tail();
        }
        Ok(())
    }

    /// Sends `buf[offset..offset + size]` (Python's `send_bytes(buf, offset, size)`).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_range(&mut self, buf: &[u8], offset: usize, size: usize) -> Result<()> {
        let end = offset.checked_add(size).expect("offset + size overflows");
        let part = buf
            .get(offset..end)
            .expect("offset + size must be within the buffer");
        self.send_bytes(part)
    }

    /// Sends a `Pod` value as a message of `size_of::<T>()` bytes.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.send_bytes(bytemuck::bytes_of(value))
    }

    /// Reserves `len` bytes in the sending ring, to be written in place and
    /// sent with [`SendGuard::commit`] (dropping the guard sends nothing).
    /// At most the ring size minus one line.
    ///
    /// # Errors
    /// [`ConnectionError::TooLarge`], and as [`send_bytes`](Self::send_bytes).
    pub fn reserve(&mut self, len: usize) -> Result<SendGuard<'_>> {
        self.check_write()?;
        let len64 = len as u64;
        let (payload, span) = record_shape(len64);
        if span > self.tx.cap {
            return Err(ConnectionError::TooLarge {
                len: len64,
                max: self.tx.cap - LINE,
            });
        }
        self.pad_for(span)?;
        self.wait_space(span)?;
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
        Ok(SendGuard {
            conn: self,
            ptr,
            len,
            busy,
        })
    }

    /// Sends any `Serialize` object, encoded with postcard.
    ///
    /// # Errors
    /// [`ConnectionError::Encode`], and as [`send_bytes`](Self::send_bytes).
    #[cfg(feature = "serde")]
    pub fn send_obj<T: serde::Serialize + ?Sized>(&mut self, obj: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(obj).map_err(ConnectionError::Encode)?;
        self.send_bytes(&bytes)
    }
}

/// A reservation in the sending ring ([`Connection::reserve`]): write the
/// message in place, then [`commit`](Self::commit).
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
