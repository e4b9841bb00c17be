//! The per-child report segment: an anonymous segment shared by the parent
//! and one child, holding the child's boot record (what to run, with which
//! arguments), its panic message, and (fork server children) its exit status.
//!
//! Layer 0 (foundations): uses `error`.
//!
//! ```text
//! payload offset  size   field
//!      0            4    state     0 running, 1 exited: `status` is valid (futex word)
//!      4            4    status    exit code, Python convention (-N: signal N)
//!      8            4    msg_len   bytes of the panic message
//!     12            4    boot_len  bytes of the boot record
//!     16            4    claim     fork server children: who may still write `status` (below)
//!     20           44    reserved
//!     64         4096    panic message (UTF-8, truncated to fit)
//!   4160            …    boot record, in 1 KiB chunks
//! ```
//!
//! Every field is an atomic `u32` (bytes are packed four to a word), so the
//! segment needs no `unsafe` here: [`Segment::get`] hands out `&[AtomicU32; N]`
//! after its bounds and alignment checks. Lengths read back are capped by the
//! local sizes before use (the other side may be corrupt or hostile).
//!
//! # Reuse under the fork server
//! Reports are pooled and reused once their child is reaped. A fork-server
//! child writes its own status before it exits, and the server writes it
//! again after `waitpid` (the only writer when the child was killed), so the
//! server's write may come after the parent has already read the status and
//! reused the segment for another child. The `claim` word settles it: every
//! `take` stores a fresh even token there, sent to the server with the
//! request; the server writes the status only if it turns `token` into
//! [`CLAIM_SERVER`] first, and the parent reuses the segment only if it turns
//! `token` into [`CLAIM_PARENT`] first (otherwise it unmaps it). A late server
//! holds an old token and can never touch a reused segment.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use shmproc_shm::sync::real::{AtomicU32, Ordering};
use shmproc_shm::{Offset, OpenOptions, Segment, SegmentKind, SegmentLayout, TypeSpec, os};

use crate::error::ProcessError;

/// The segment kind of a report ("process report").
pub(crate) const REPORT_KIND: SegmentKind = SegmentKind(0x50);

const HEAD_WORDS: usize = 16;
const MSG_BYTES: usize = 4096;
const MSG_WORDS: usize = MSG_BYTES / 4;
const CHUNK_WORDS: usize = 256;
const CHUNK_BYTES: usize = CHUNK_WORDS * 4;
const MSG_OFFSET: u64 = (HEAD_WORDS * 4) as u64;
const BOOT_OFFSET: u64 = MSG_OFFSET + MSG_BYTES as u64;

const STATE_RUNNING: u32 = 0;
/// `claim` once the parent has taken the report back (see the module docs).
const CLAIM_PARENT: u32 = 1;
/// `claim` once the fork server may write the status.
const CLAIM_SERVER: u32 = 3;

/// A fresh, even, nonzero token for the `claim` word.
fn next_token() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(2);
    // Relaxed: only uniqueness matters (wraps after 2^31 uses; 0 is skipped).
    match NEXT.fetch_add(2, Ordering::Relaxed) {
        0 => NEXT.fetch_add(2, Ordering::Relaxed),
        t => t,
    }
}
/// Total length of a pooled report segment.
const DATA_LEN_POOLED: usize = shmproc_shm::DATA_OFFSET + BOOT_OFFSET as usize + POOLED_BOOT;
const STATE_EXITED: u32 = 1;

/// Largest boot record (arguments included): 64 MiB.
pub(crate) const MAX_BOOT: usize = 64 << 20;

/// A mapped report segment (`None`: a placeholder left behind by `recycle`).
#[derive(Debug)]
pub(crate) struct Report {
    seg: Option<Segment>,
}

/// Boot records up to this size reuse pooled report segments.
const POOLED_BOOT: usize = 4 * CHUNK_BYTES;
const POOL_MAX: usize = 64;

struct Pool {
    /// The raw pid of the process the pool belongs to (0: none yet).
    owner: i32,
    free: Vec<Segment>,
}

static POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool {
    owner: 0,
    free: Vec::new(),
});

fn with_pool<R>(f: impl FnOnce(&mut Vec<Segment>) -> R) -> R {
    let mut g = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let me = os::identity::pid();
    if g.owner != me.as_raw() {
        // Inherited through fork: the parent may reuse these; never touch them.
        std::mem::forget(std::mem::take(&mut g.free));
        g.owner = me.as_raw();
    }
    f(&mut g.free)
}

type Head = [AtomicU32; HEAD_WORDS];
type Msg = [AtomicU32; MSG_WORDS];
type Chunk = [AtomicU32; CHUNK_WORDS];

fn options() -> OpenOptions {
    OpenOptions::new(REPORT_KIND, TypeSpec::bytes())
}

impl Report {
    /// A report holding `boot`: a recycled one when it fits, else a new one.
    pub(crate) fn take(boot: &[u8]) -> Result<Report, ProcessError> {
        if boot.len() <= POOLED_BOOT {
            if let Some(seg) = with_pool(Vec::pop) {
                let r = Report { seg: Some(seg) };
                let h = r.head();
                // Relaxed: the segment is private to this process until the
                // child is created (fork/exec/sendmsg order these stores).
                for w in h {
                    w.store(0, Ordering::Relaxed);
                }
                r.write_bytes(BOOT_OFFSET, boot);
                h[3].store(boot.len() as u32, Ordering::Relaxed);
                h[4].store(next_token(), Ordering::Relaxed);
                return Ok(r);
            }
            return Self::create_sized(boot, POOLED_BOOT);
        }
        Self::create_sized(boot, boot.len())
    }

    /// Gives a report whose child has been reaped back to the pool.
    pub(crate) fn recycle(self) {
        if let Some(seg) = self.seg {
            if seg.len() >= DATA_LEN_POOLED {
                with_pool(|p| {
                    if p.len() < POOL_MAX {
                        p.push(seg);
                    }
                });
            }
        }
    }

    /// An empty stand-in (never used to read or write).
    pub(crate) fn placeholder() -> Report {
        Report { seg: None }
    }

    /// Creates a report holding `boot`.
    #[cfg(test)]
    pub(crate) fn create(boot: &[u8]) -> Result<Report, ProcessError> {
        Self::create_sized(boot, boot.len())
    }

    fn create_sized(boot: &[u8], room: usize) -> Result<Report, ProcessError> {
        if boot.len() > MAX_BOOT {
            return Err(ProcessError::args(
                "arguments",
                format!(
                    "{} bytes, more than the {MAX_BOOT} a child accepts",
                    boot.len()
                ),
            ));
        }
        let chunks = room.max(boot.len()).div_ceil(CHUNK_BYTES);
        let payload = BOOT_OFFSET + (chunks * CHUNK_BYTES) as u64;
        let layout = SegmentLayout::new(REPORT_KIND, TypeSpec::bytes(), payload);
        let pending = Segment::create_anonymous(&layout)?;
        let r = Report {
            seg: Some(pending.publish()),
        };
        r.write_bytes(BOOT_OFFSET, boot);
        // Relaxed: the child reads the record after fork/exec (or after the
        // fork server's recvmsg), each of which orders these stores before it.
        r.head()[3].store(boot.len() as u32, Ordering::Relaxed);
        r.head()[4].store(next_token(), Ordering::Relaxed);
        Ok(r)
    }

    /// Maps a report received as a descriptor.
    pub(crate) fn open(fd: OwnedFd) -> Result<Report, ProcessError> {
        let seg = options().open_fd(fd)?;
        seg.get::<Msg>(Offset::in_payload(MSG_OFFSET))
            .map_err(|e| ProcessError::BadBoot(format!("report segment too short: {e}")))?;
        Ok(Report { seg: Some(seg) })
    }

    fn seg(&self) -> &Segment {
        self.seg.as_ref().expect("a live report, not a placeholder")
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.seg().fd()
    }

    fn head(&self) -> &Head {
        self.seg()
            .get::<Head>(Offset::in_payload(0))
            .expect("report head checked at create/open")
    }

    fn msg(&self) -> &Msg {
        self.seg()
            .get::<Msg>(Offset::in_payload(MSG_OFFSET))
            .expect("report message area checked at create/open")
    }

    fn chunk_checked(&self, i: usize) -> Result<&Chunk, ProcessError> {
        self.seg()
            .get::<Chunk>(Offset::in_payload(BOOT_OFFSET + (i * CHUNK_BYTES) as u64))
            .map_err(|e| ProcessError::BadBoot(format!("boot record out of bounds: {e}")))
    }

    fn write_bytes(&self, at: u64, bytes: &[u8]) {
        for (ci, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let words = self
                .seg()
                .get::<Chunk>(Offset::in_payload(at + (ci * CHUNK_BYTES) as u64))
                .expect("sized at create");
            store_packed(words, chunk);
        }
    }

    /// The boot record, copied out and length-checked.
    pub(crate) fn boot(&self) -> Result<Vec<u8>, ProcessError> {
        // Relaxed: see `create`.
        let len = self.head()[3].load(Ordering::Relaxed) as usize;
        if len > MAX_BOOT {
            return Err(ProcessError::BadBoot(format!("length {len}")));
        }
        let mut out = Vec::with_capacity(len);
        let mut ci = 0;
        while out.len() < len {
            let words = self.chunk_checked(ci)?;
            let want = (len - out.len()).min(CHUNK_BYTES);
            load_packed(words, want, &mut out);
            ci += 1;
        }
        Ok(out)
    }

    /// Records a panic message (truncated to 4 KiB on a char boundary).
    pub(crate) fn set_message(&self, msg: &str) {
        let mut end = msg.len().min(MSG_BYTES);
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = msg.as_bytes().get(..end).unwrap_or_default();
        store_packed(self.msg(), bytes);
        // Release: pairs with the Acquire load in `message`, after the child's exit.
        self.head()[2].store(end as u32, Ordering::Release);
    }

    /// The panic message recorded by the child, if any.
    pub(crate) fn message(&self) -> Option<String> {
        // Acquire: pairs with the Release store in `set_message`.
        let len = (self.head()[2].load(Ordering::Acquire) as usize).min(MSG_BYTES);
        if len == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        load_packed(self.msg(), len, &mut out);
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// The token of this use of the report (sent to the fork server).
    pub(crate) fn token(&self) -> u32 {
        // Relaxed: written by this process in `take`.
        self.head()[4].load(Ordering::Relaxed)
    }

    /// The parent, after reading the exit status of a fork-server child:
    /// whether it may reuse the report (the server will not write to it).
    pub(crate) fn release_from_server(&self) -> bool {
        let token = self.token();
        // AcqRel: orders against the server's claim (see the module docs).
        self.head()[4]
            .compare_exchange(token, CLAIM_PARENT, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The fork server, after reaping a child: publishes `code` unless the
    /// parent has taken the report back (`token` no longer there).
    pub(crate) fn set_status_claimed(&self, token: u32, code: i32) {
        let h = self.head();
        // The child wrote its own status before `_exit`: nothing to add, and
        // leaving the claim alone lets the parent reuse the report. (A reused
        // report has another token, and then nothing is written either.)
        // Acquire: pairs with the Release stores of `set_status` and `take`.
        if h[4].load(Ordering::Acquire) == token && h[0].load(Ordering::Acquire) == STATE_EXITED {
            return;
        }
        // AcqRel: orders against the parent's release (see the module docs).
        let claimed = self.head()[4]
            .compare_exchange(token, CLAIM_SERVER, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if claimed {
            self.set_status(code);
        }
    }

    /// Publishes the exit status (a fork-server child just before it exits,
    /// or the server after reaping it: see [`set_status_claimed`](Self::set_status_claimed)).
    pub(crate) fn set_status(&self, code: i32) {
        let h = self.head();
        h[1].store(code as u32, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `status`.
        h[0].store(STATE_EXITED, Ordering::Release);
        os::futex_wake(&h[0], u32::MAX);
    }

    /// The exit status published with [`set_status`](Self::set_status).
    pub(crate) fn status(&self) -> Option<i32> {
        let h = self.head();
        // Acquire: pairs with the Release store in `set_status`.
        if h[0].load(Ordering::Acquire) == STATE_EXITED {
            Some(h[1].load(Ordering::Relaxed) as i32)
        } else {
            None
        }
    }

    /// Waits at most `timeout` for a status to be published.
    pub(crate) fn wait_status(&self, timeout: Duration) -> Option<i32> {
        if let Some(s) = self.status() {
            return Some(s);
        }
        os::futex_wait(&self.head()[0], STATE_RUNNING, Some(timeout));
        self.status()
    }
}

fn store_packed(words: &[AtomicU32], bytes: &[u8]) {
    for (w, quad) in words.iter().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b.get_mut(..quad.len())
            .expect("chunks of at most 4")
            .copy_from_slice(quad);
        // Relaxed: published by a later Release store or by fork/exec.
        w.store(u32::from_le_bytes(b), Ordering::Relaxed);
    }
}

fn load_packed(words: &[AtomicU32], n: usize, out: &mut Vec<u8>) {
    let mut left = n;
    for w in words {
        if left == 0 {
            break;
        }
        // Relaxed: ordered by the caller's Acquire load or by fork/exec.
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        let take = left.min(4);
        out.extend_from_slice(b.get(..take).expect("at most 4"));
        left -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_message_and_status_roundtrip() {
        let boot: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let r = Report::create(&boot).expect("create");
        let other = Report::open(r.fd().try_clone_to_owned().expect("dup")).expect("open");
        assert_eq!(other.boot().expect("boot"), boot);
        assert_eq!(r.message(), None);
        other.set_message("panicked at x.rs:1:1:\nbö");
        assert_eq!(r.message().as_deref(), Some("panicked at x.rs:1:1:\nbö"));
        assert_eq!(r.status(), None);
        assert_eq!(r.wait_status(Duration::from_millis(1)), None);
        other.set_status(-9);
        assert_eq!(r.wait_status(Duration::from_secs(1)), Some(-9));
        let long = "é".repeat(MSG_BYTES);
        r.set_message(&long);
        assert!(r.message().expect("message").len() <= MSG_BYTES);
    }

    #[test]
    fn empty_boot_record() {
        let r = Report::create(&[]).expect("create");
        assert_eq!(r.boot().expect("boot"), Vec::<u8>::new());
    }
}
