//! Entry points for the loom models (`tests/loom.rs`; `cfg(shmproc_loom)`
//! only): a put and a get composed as `Queue::put` and `Queue::get`
//! compose them (the leased fast path, else a claim of the CAS protocol,
//! inside [`Ring::block`]), with the crash points where `queue.rs` has them,
//! so a model drives the production code, leases and sleepers included.

use shmproc_shm::sync::Ordering;
use shmproc_sync::futex::Deadline;

use super::lease::Fast;
use super::mpmc::{Pop, Push};
use super::{Ring, Side, Storage};
use crate::crash;
use crate::error::Corrupt;

impl<S: Storage> Ring<S> {
    /// One attempt to put `v` (8 bytes), as `Queue::attempt_put`:
    /// `Ok(true)` sent, `Ok(false)` no room now.
    ///
    /// # Errors
    /// [`Corrupt`] from the CAS protocol.
    pub fn model_try_put(&self, v: u64, check_dead: bool, again: bool) -> Result<bool, Corrupt> {
        let bytes = v.to_le_bytes();
        // Relaxed: only read when this thread holds the lease, when only it
        // moves the tail.
        let p = self.header().tail.value.load(Ordering::Relaxed);
        let fast = self.fast_push(|_| {
            self.storage.write_payload(p, 0, &bytes);
            crash::point("put-claimed");
        });
        match fast {
            Fast::Done(()) => return Ok(true),
            Fast::Idle => return Ok(false),
            Fast::Other => {}
        }
        let push = if again {
            self.try_claim_push_again(check_dead)
        } else {
            self.try_claim_push(check_dead)
        }?;
        match push {
            Push::Full => Ok(false),
            Push::Claimed(c) => {
                self.write(&c, 0, &bytes);
                crash::point("put-claimed");
                Ok(self.publish(c))
            }
        }
    }

    /// One attempt to get a message, as `Queue::attempt_get`.
    ///
    /// # Errors
    /// [`Corrupt`] from the CAS protocol, or a slot taken while read.
    pub fn model_try_get(&self, check_dead: bool, again: bool) -> Result<Option<u64>, Corrupt> {
        let mut b = [0u8; 8];
        // Relaxed: as the tail in `model_try_put`.
        let p = self.header().head.value.load(Ordering::Relaxed);
        let fast = self.fast_pop(|_| {
            self.storage.read_payload(p, 0, &mut b);
            crash::point("get-claimed");
        });
        match fast {
            Fast::Done(()) => return Ok(Some(u64::from_le_bytes(b))),
            Fast::Idle => return Ok(None),
            Fast::Other => {}
        }
        match self.claim_pop_waiting(check_dead, again)? {
            Pop::Empty | Pop::Busy => Ok(None),
            Pop::Claimed(c) => {
                self.read(&c, 0, &mut b);
                crash::point("get-claimed");
                if self.release(c) {
                    Ok(Some(u64::from_le_bytes(b)))
                } else {
                    Err(Corrupt::new("slot taken while being read", c.pos()))
                }
            }
        }
    }

    /// A blocking put of `v`, as `Queue::put` (spin, register, fence,
    /// sleep on the futex, retry).
    ///
    /// # Errors
    /// As [`model_try_put`](Self::model_try_put).
    pub fn model_put(&self, v: u64) -> Result<(), Corrupt> {
        if self.model_try_put(v, false, false)? {
            return Ok(());
        }
        self.block(Side::Put, Deadline::NEVER, |cd| {
            Ok(self.model_try_put(v, cd, true)?.then_some(()))
        })
        .map(|_| ())
    }

    /// A blocking get, as `Queue::get`.
    ///
    /// # Errors
    /// As [`model_try_get`](Self::model_try_get).
    pub fn model_get(&self) -> Result<u64, Corrupt> {
        if let Some(v) = self.model_try_get(false, false)? {
            return Ok(v);
        }
        let got = self.block(Side::Get, Deadline::NEVER, |cd| {
            self.model_try_get(cd, true)
        })?;
        Ok(got.unwrap_or_default())
    }

    /// The consumers' (`get == true`) or producers' sleepers, as the
    /// waiters word counts them.
    pub fn model_sleepers(&self, get: bool) -> u32 {
        self.sleepers(if get { Side::Get } else { Side::Put })
    }

    /// [`repair_sleepers`](Self::repair_sleepers) of the consumers'
    /// (`get == true`) or producers' side.
    pub fn model_repair_sleepers(&self, get: bool) {
        self.repair_sleepers(if get { Side::Get } else { Side::Put });
    }

    /// Registers this thread as a consumer sleeper (record, then bit), as
    /// `block` does before its re-check, and keeps it registered (a sleeper
    /// killed while asleep never unregisters).
    pub fn model_register_get_sleeper(&self) {
        std::mem::forget(self.register(Side::Get));
    }
}
