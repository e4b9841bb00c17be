//! Manager synchronisation proxies across processes: `RLock`, `Condition`,
//! `Semaphore`/`BoundedSemaphore`, `Barrier`; blocking calls answered by
//! the server once (no client polling) while the process's other proxies
//! go on; a waiter's death releases what it held or breaks the barrier.

use std::time::Duration;

use shmproc_manager::{
    BarrierProxy, ConditionProxy, DictProxy, Manager, ProxyError, RLockProxy, RemoteError,
    SemaphoreProxy,
};
use shmproc_process::Process;
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

fn holds_rlock((l, d): (RLockProxy, DictProxy<String, u64>)) {
    l.acquire().expect("acquire");
    l.acquire().expect("again: reentrant");
    d.set(&"child".into(), &1).expect("set");
    // Released once of twice: still held by this thread.
    l.release().expect("release");
    // Wait for the parent to see that it cannot take it.
    while d.get(&"parent_tried".into()).expect("get").is_none() {
        std::thread::yield_now();
    }
    l.release().expect("release");
}

#[test]
fn rlock_is_reentrant_per_thread_and_exclusive_across_processes() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let m = Manager::start().expect("start");
    let l = m.rlock().expect("rlock");
    let d = m.dict::<String, u64>().expect("dict");
    let p = Process::new(
        holds_rlock,
        (l.try_clone().expect("clone"), d.try_clone().expect("clone")),
    );
    p.start().expect("start");
    while d.get(&"child".into()).expect("get").is_none() {
        std::thread::yield_now();
    }
    assert!(!l.try_acquire().expect("try"), "held by the child");
    // Another thread of this process is not the owner either.
    assert!(matches!(
        l.release(),
        Err(ProxyError::Remote(RemoteError::NotHeld))
    ));
    d.set(&"parent_tried".into(), &1).expect("set");
    // Blocks in the server until the child's last release (no polling).
    l.acquire_timeout(TIMEOUT).expect("acquire after the child");
    // Meanwhile-style check: another thread of this process is refused.
    let l2 = l.try_clone().expect("clone");
    let other = std::thread::spawn(move || l2.try_acquire().expect("try"));
    assert!(!other.join().expect("thread"), "owned by this thread only");
    l.release().expect("release");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    m.shutdown().expect("shutdown");
    assert!(t.leftovers().is_empty());
}

fn consumer((c, d): (ConditionProxy, DictProxy<String, u64>)) {
    c.acquire().expect("acquire");
    let ok = c
        .wait_for(|| Ok(d.get(&"ready".into())?.is_some()), Some(TIMEOUT))
        .expect("wait_for");
    assert!(ok);
    d.update_with(&"seen".into(), |v| v.unwrap_or(0) + 1)
        .expect("update");
    c.release().expect("release");
}

#[test]
fn condition_wakes_waiters_in_other_processes() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let m = Manager::start().expect("start");
    let c = m.condition().expect("condition");
    let d = m.dict::<String, u64>().expect("dict");
    assert!(matches!(
        c.notify(1),
        Err(ProxyError::Remote(RemoteError::NotHeld))
    ));
    c.acquire().expect("acquire");
    assert!(
        !c.wait_timeout(Duration::from_millis(20)).expect("wait"),
        "nobody notified: timed out, and the lock is held again"
    );
    c.notify_all().expect("held: may notify");
    c.release().expect("release");
    let procs: Vec<Process> = (0..2)
        .map(|_| {
            let p = Process::new(
                consumer,
                (c.try_clone().expect("clone"), d.try_clone().expect("clone")),
            );
            p.start().expect("start");
            p
        })
        .collect();
    c.acquire().expect("acquire");
    d.set(&"ready".into(), &1).expect("set");
    c.notify_all().expect("notify_all");
    c.release().expect("release");
    for p in &procs {
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    }
    assert_eq!(d.get(&"seen".into()).expect("get"), Some(2));
    m.shutdown().expect("shutdown");
    assert!(t.leftovers().is_empty());
}

fn take_permit((s, d): (SemaphoreProxy, DictProxy<String, u64>)) {
    s.acquire().expect("acquire");
    let now = d
        .update_with(&"inside".into(), |v| v.unwrap_or(0) + 1)
        .expect("update");
    d.update_with(&"max".into(), |v| v.unwrap_or(0).max(now))
        .expect("update");
    d.update_with(&"inside".into(), |v| v.unwrap_or(1) - 1)
        .expect("update");
    s.release(1).expect("release");
}

#[test]
fn semaphore_bounds_processes_inside_and_bounded_refuses_extra_releases() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let m = Manager::start().expect("start");
    let s = m.semaphore(2).expect("semaphore");
    let d = m.dict::<String, u64>().expect("dict");
    let procs: Vec<Process> = (0..4)
        .map(|_| {
            let p = Process::new(
                take_permit,
                (s.try_clone().expect("clone"), d.try_clone().expect("clone")),
            );
            p.start().expect("start");
            p
        })
        .collect();
    for p in &procs {
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    }
    assert!(d.get(&"max".into()).expect("get").expect("set") <= 2);
    assert_eq!(s.value().expect("value"), 2);

    let b = m.bounded_semaphore(1).expect("bounded");
    assert!(b.try_acquire().expect("try"));
    assert!(!b.try_acquire().expect("try"));
    assert!(matches!(
        b.acquire_timeout(Duration::from_millis(20)),
        Err(ProxyError::Timeout)
    ));
    b.release(1).expect("release");
    assert!(matches!(
        b.release(1),
        Err(ProxyError::Remote(RemoteError::TooManyReleases))
    ));
    // An unbounded one may go above its start.
    s.release(1).expect("release");
    assert_eq!(s.value().expect("value"), 3);
    m.shutdown().expect("shutdown");
    assert!(t.leftovers().is_empty());
}

fn party((b, d): (BarrierProxy, DictProxy<String, u64>)) {
    let i = b.wait_timeout(TIMEOUT).expect("wait");
    d.set(&format!("index{i}"), &1).expect("set");
}

fn waits_then_dies((b,): (BarrierProxy,)) {
    let _ = b.wait();
}

#[test]
fn barrier_releases_all_parties_and_breaks_on_timeout_abort_or_death() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let m = Manager::start().expect("start");
    let b = m.barrier(3).expect("barrier");
    assert_eq!(b.parties().expect("parties"), 3);
    let d = m.dict::<String, u64>().expect("dict");
    let procs: Vec<Process> = (0..2)
        .map(|_| {
            let p = Process::new(
                party,
                (b.try_clone().expect("clone"), d.try_clone().expect("clone")),
            );
            p.start().expect("start");
            p
        })
        .collect();
    let mine = b.wait_timeout(TIMEOUT).expect("wait");
    d.set(&format!("index{mine}"), &1).expect("set");
    for p in &procs {
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    }
    for i in 0..3 {
        assert_eq!(d.get(&format!("index{i}")).expect("get"), Some(1));
    }
    // A timeout breaks it, for everyone, until reset.
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(20)),
        Err(ProxyError::Remote(RemoteError::BrokenBarrier))
    ));
    assert!(b.broken().expect("broken"));
    b.reset().expect("reset");
    assert!(!b.broken().expect("broken"));
    // A party whose process dies while it waits breaks it too.
    let p = Process::new(waits_then_dies, (b.try_clone().expect("clone"),));
    p.start().expect("start");
    while b.n_waiting().expect("n_waiting") == 0 {
        std::thread::yield_now();
    }
    p.kill().expect("kill");
    p.join_timeout(TIMEOUT).expect("join");
    assert!(matches!(
        b.wait_timeout(TIMEOUT),
        Err(ProxyError::Remote(RemoteError::BrokenBarrier))
    ));
    b.reset().expect("reset");
    b.abort().expect("abort");
    assert!(b.broken().expect("broken"));
    assert!(matches!(
        m.barrier(0),
        Err(ProxyError::Remote(RemoteError::BadRequest(_)))
    ));
    m.shutdown().expect("shutdown");
    assert!(t.leftovers().is_empty());
}

#[test]
fn a_blocked_call_does_not_hold_up_the_process_other_proxies() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let q = m.queue::<u64>(0).expect("queue");
    let q2 = q.try_clone().expect("clone");
    // This thread waits in the server for an item...
    let getter = std::thread::spawn(move || q2.get_timeout(TIMEOUT).expect("get"));
    // ...while this one, same process, same manager, puts it (whether the
    // getter is waiting yet or not: the put must not queue behind it).
    q.put(&7).expect("put");
    assert_eq!(getter.join().expect("thread"), 7);
    m.shutdown().expect("shutdown");
}
