//! The system at large: kernel randomness (`getrandom`), CPU counts,
//! prefaulting pages (`madvise`), and raw writes to standard error.
#![allow(unsafe_code)] // Syscall fence: write, getrandom, sysconf and madvise through libc.

use std::io;

use super::cvt;

/// Writes `bytes` to fd 2 with plain `write(2)` calls: no lock, no
/// buffering, so it is safe in a forked child of a multi-threaded process.
/// Errors are ignored (there is nowhere left to report them).
///
/// # References
/// `man 2 write`
pub fn write_stderr_raw(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length for the whole call.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => bytes = bytes.get(n..).unwrap_or_default(),
            _ => return,
        }
    }
}

/// Eight random bytes from the kernel (`getrandom`), for unique names.
///
/// # References
/// `man 2 getrandom`
#[doc(alias = "getrandom")]
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its full length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    // Entropy pool not ready (very early boot): fall back to time, pid and a counter.
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Fills `buf` with random bytes from the kernel (`getrandom`, waiting for
/// the entropy pool at early boot): one system call for up to 256 bytes.
/// For secrets (authentication challenges); no fallback.
///
/// # Errors
/// The OS error of `getrandom`.
///
/// # References
/// `man 2 getrandom`
#[doc(alias = "getrandom")]
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        // SAFETY: `rest` is valid for writes of its full length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => done += n,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Number of CPUs this process may run on (`sched_getaffinity`), falling back
/// to the number online.
///
/// # References
/// `man 2 sched_getaffinity`
pub fn affinity_cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Number of CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), as Python's
/// `os.cpu_count()`.
pub fn online_cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// `madvise(MADV_POPULATE_READ)` over the pages that hold `[start, end)`:
/// maps them now, as reading each would (file pages from the page cache),
/// so that code later running there takes no page faults. Changes no
/// memory contents. `EINVAL` before Linux 5.14; `ENOMEM` if part of the
/// range is not mapped.
///
/// # References
/// `man 2 madvise` (`MADV_POPULATE_READ`)
pub fn populate_read(start: usize, end: usize) -> io::Result<()> {
    madvise_range(start, end, libc::MADV_POPULATE_READ)
}

/// `madvise(MADV_POPULATE_WRITE)` over the pages that hold `[start, end)`:
/// maps them writable now, as a write to each would (without writing), so
/// that code later writing there takes no page faults. Changes no memory
/// contents. `EINVAL` before Linux 5.14; `ENOMEM` if part of the range is
/// not mapped; `EFAULT` if it is mapped read-only.
///
/// # References
/// `man 2 madvise` (`MADV_POPULATE_WRITE`)
pub fn populate_write(start: usize, end: usize) -> io::Result<()> {
    madvise_range(start, end, libc::MADV_POPULATE_WRITE)
}

fn madvise_range(start: usize, end: usize, advice: libc::c_int) -> io::Result<()> {
    const PAGE: usize = 4096;
    let first = start & !(PAGE - 1);
    let len = end.saturating_sub(first);
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the populate advices only fault pages in; they never change
    // what any byte of the range holds, and unmapped ranges are an error.
    let ret = unsafe { libc::madvise(std::ptr::without_provenance_mut(first), len, advice) };
    cvt(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
