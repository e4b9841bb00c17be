//! What `/proc` tells about processes: whether one is alive, its state and
//! start time, how many threads the calling process has, and which
//! `/dev/shm` entries processes map or hold open.
#![allow(unsafe_code)] // Syscall fence: `pid_alive` backs its /proc read with kill(pid, 0).

use std::collections::HashSet;
use std::io;

use super::{Pid, identity};

/// Whether process `pid` is alive: it exists and is not a zombie.
///
/// `kill(pid, 0)` alone reports a zombie (dead, not yet reaped) as alive, and
/// a holder that died is exactly such a zombie until its parent reaps it, so
/// the process state in `/proc/<pid>/stat` is checked as well.
///
/// This is a building block: whether an *owner* (of a lock, a claim, a
/// segment) is alive is judged by
/// [`OwnerRecord::is_alive`](crate::OwnerRecord::is_alive), the one rule,
/// which also catches a reused pid when a start time was recorded.
///
/// # References
/// `man 2 kill`, `man 5 proc` (`/proc/pid/stat`, field 3)
pub fn pid_alive(pid: Pid) -> bool {
    #[cfg(fuzzing)]
    return fuzz_memo::ALIVE.with(|m| fuzz_memo::get(m, pid, || pid_alive_now(pid)));
    #[cfg(not(fuzzing))]
    pid_alive_now(pid)
}

/// Fuzz builds (`cfg(fuzzing)`) memoise what `/proc` says about each pid:
/// a fuzz target runs in one process, where every pid it checks, other than
/// its own, was read from bytes the harness scribbled, and asking `/proc`
/// about each of them again (tens of microseconds) was most of an input's
/// time. A memoised answer is one `/proc` gave; both answers stay reachable
/// (scribbled pids name live processes, such as 1, and dead ones); the memo
/// is bounded and starts over when full.
#[cfg(fuzzing)]
mod fuzz_memo {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::Pid;

    type Memo<T> = RefCell<HashMap<Pid, T>>;

    thread_local! {
        pub(super) static ALIVE: Memo<bool> = RefCell::new(HashMap::new());
        pub(super) static START: Memo<Option<u64>> = RefCell::new(HashMap::new());
    }

    pub(super) fn get<T: Copy>(memo: &Memo<T>, pid: Pid, ask: impl FnOnce() -> T) -> T {
        if let Some(&v) = memo.borrow().get(&pid) {
            return v;
        }
        let v = ask();
        let mut m = memo.borrow_mut();
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(pid, v);
        v
    }
}

fn pid_alive_now(pid: Pid) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check;
    // `pid` is positive (a `Pid`), so it names one process.
    let ret = unsafe { libc::kill(pid.as_raw(), 0) };
    if ret == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match process_state(pid) {
        Some(b'Z' | b'X') => false,
        Some(_) => true,
        // No /proc entry: either /proc is not mounted (trust `kill`) or the
        // process went away between the two checks (ask `kill` again).
        None => {
            // SAFETY: signal 0 performs only the existence and permission check.
            let again = unsafe { libc::kill(pid.as_raw(), 0) };
            again == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
        }
    }
}

/// The one-letter state of process `pid` from `/proc/<pid>/stat`
/// (`R`, `S`, `D`, `Z`, ...), or `None` when there is no such process.
pub fn process_state(pid: Pid) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ": the
    // state follows the *last* closing parenthesis.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The start time of process `pid` in clock ticks since boot
/// (`/proc/<pid>/stat`, field 22): with the pid it names one process even
/// after the pid is reused.
pub fn process_start_time(pid: Pid) -> Option<u64> {
    #[cfg(fuzzing)]
    return fuzz_memo::START.with(|m| fuzz_memo::get(m, pid, || process_start_time_now(pid)));
    #[cfg(not(fuzzing))]
    process_start_time_now(pid)
}

fn process_start_time_now(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    // Fields after the command: state is field 3, starttime is field 22.
    stat.get(close + 2..)?
        .split_ascii_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// The names (without the leading `/`, as `/dev/shm` lists them) of the
/// `/dev/shm` entries that some process maps (`/proc/<pid>/maps`) or holds
/// open (`/proc/<pid>/fd`), unlinked ones included.
///
/// Only the processes whose `/proc` entries this process may read are seen
/// (its own user's, or all of them for root); a segment is mode `0600`, so
/// only those can have opened it in the first place. A process that is
/// about to open a name, but has not yet, cannot be seen.
///
/// # References
/// `man 5 proc` (`/proc/pid/maps`, `/proc/pid/fd`)
pub fn shm_in_use() -> HashSet<String> {
    const SHM: &str = "/dev/shm/";
    let bare = |rest: &str| rest.trim_end_matches(" (deleted)").to_owned();
    let mut used = HashSet::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return used;
    };
    for p in proc_dir.flatten() {
        let fname = p.file_name();
        let Some(pid) = fname.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) {
            for line in maps.lines() {
                if let Some(rest) = line.find(SHM).and_then(|i| line.get(i + SHM.len()..)) {
                    used.insert(bare(rest));
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    if let Some(rest) = target.to_str().and_then(|t| t.strip_prefix(SHM)) {
                        used.insert(bare(rest));
                    }
                }
            }
        }
    }
    used
}

/// Whether process `pid` maps the file with device `dev` and inode `ino`
/// (as `stat` gives them) anywhere in its address space; `None` when its
/// `/proc/<pid>/maps` cannot be read (gone, or not ours to read).
///
/// # References
/// `man 5 proc` (`/proc/pid/maps`: `address perms offset dev inode path`,
/// `dev` as hexadecimal `major:minor`)
pub fn maps_file(pid: Pid, dev: u64, ino: u64) -> Option<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", pid.as_raw())).ok()?;
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Some(maps.lines().any(|line| {
        let mut f = line.split_ascii_whitespace().skip(3);
        let (Some(d), Some(i)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((ma, mi)) = d.split_once(':') else {
            return false;
        };
        i.parse::<u64>() == Ok(ino)
            && u32::from_str_radix(ma, 16) == Ok(major)
            && u32::from_str_radix(mi, 16) == Ok(minor)
    }))
}

/// Number of threads of the calling process, or `None` when `/proc` cannot
/// tell.
///
/// One `statx` of `/proc/self/task`, whose link count Linux reports as
/// 2 + the number of threads (`proc_task_getattr`, the same count as field
/// 20 of `/proc/self/stat`): about 1.5 µs, no heap, against about 6 µs (and
/// a 32 KiB buffer) to list the directory, which remains the fallback when
/// the link count does not look like that (a count below 3 cannot be right:
/// the caller is a thread).
///
/// # References
/// `man 5 proc` (`/proc/pid/task`, `/proc/pid/stat` field 20)
pub fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata("/proc/self/task") {
        if let Some(n) = m.nlink().checked_sub(2).filter(|&n| n >= 1) {
            return usize::try_from(n).ok();
        }
    }
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// [`thread_count`] from a descriptor of `/proc/self/task` that stays open
/// (close-on-exec) after the first call: one `fstat` instead of a path
/// lookup through `/proc/self` (about a third of the cost). A forked child
/// closes the copy it inherited (its parent's directory) and opens its own.
/// Falls back to [`thread_count`] when the descriptor cannot be opened, or
/// while another thread holds the cache (a fork may have copied it locked).
///
/// # References
/// `man 5 proc` (`/proc/pid/task`)
pub fn thread_count_cached() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    static TASK_DIR: std::sync::Mutex<Option<(Pid, std::fs::File)>> = std::sync::Mutex::new(None);
    let Ok(mut g) = TASK_DIR.try_lock() else {
        return thread_count();
    };
    let me = identity::pid();
    if g.as_ref().is_none_or(|(owner, _)| *owner != me) {
        // None yet, or inherited through fork: that names the parent's threads.
        *g = std::fs::File::open("/proc/self/task").ok().map(|f| (me, f));
    }
    let n = g
        .as_ref()
        .and_then(|(_, f)| f.metadata().ok())
        .and_then(|m| m.nlink().checked_sub(2).filter(|&n| n >= 1));
    match n {
        Some(n) => usize::try_from(n).ok(),
        None => thread_count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::getpid;

    #[test]
    fn maps_file_sees_a_mapping_and_not_after_it_is_gone() {
        use std::os::unix::fs::MetadataExt;
        let slice = crate::ShmSlice::new(1 << 16, 0u64).expect("slice");
        let fd = slice.segment().fd().try_clone_to_owned().expect("dup");
        let m = std::fs::File::from(fd).metadata().expect("stat");
        assert_eq!(maps_file(getpid(), m.dev(), m.ino()), Some(true));
        drop(slice);
        assert_eq!(maps_file(getpid(), m.dev(), m.ino()), Some(false));
        assert_eq!(maps_file(getpid(), m.dev(), u64::MAX), Some(false));
    }

    #[test]
    fn own_process_is_alive_and_has_a_start_time() {
        assert!(pid_alive(getpid()));
        assert!(process_start_time(getpid()).is_some());
        // 0 and negative ids are not pids at all: no `kill(0|-5, 0)`.
        assert!(super::Pid::from_raw(0).is_none());
        assert!(super::Pid::from_raw(-5).is_none());
    }

    #[test]
    fn a_mapped_segment_is_in_use() {
        let name = format!("shmproc-test-procfs-{:x}", crate::os::random_u64());
        let path = std::path::Path::new("/dev/shm").join(&name);
        let file = std::fs::File::create(&path).expect("create in /dev/shm");
        let used = shm_in_use();
        let _ = std::fs::remove_file(&path);
        assert!(used.contains(&name), "{name} held open, not in {used:?}");
        drop(file);
        assert!(!shm_in_use().contains(&name));
    }

    #[test]
    fn thread_count_matches_the_task_directory() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // Other tests' threads come and go (libtest runs tests in parallel):
        // compare against a listing that did not change around the call.
        let listed = || std::fs::read_dir("/proc/self/task").expect("/proc").count();
        let agreed = (0..1000).any(|_| {
            let before = listed();
            let counted = super::thread_count();
            before >= 2 && counted == Some(before) && listed() == before
        });
        assert!(
            agreed,
            "thread_count never matched a stable /proc/self/task"
        );
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn thread_count_cached_counts_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // Other tests' threads come and go: only a lower bound is certain.
        assert!(super::thread_count_cached().is_some_and(|n| n >= 2));
        assert!(super::thread_count_cached().is_some_and(|n| n >= 2));
        drop(tx);
        let _ = t.join();
    }
}
