//! Side leases: the first thread to put (or get) runs that side with plain
//! stores; the first other thread revokes the lease, and the side runs the
//! CAS protocol from then on. Revocations racing with a busy holder, and of
//! an idle holder in another process, lose and duplicate nothing.
#![cfg(not(shmproc_loom))]

use shmproc_channel::{GetTimeoutError, LeaseState, Queue, TryGetError};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role, stress_or};

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
/// Messages per producer: 200k under `SHMPROC_STRESS`, 20k by default.
fn n() -> u64 {
    stress_or(200_000, 20_000)
}

#[test]
fn revocations_under_load_lose_and_duplicate_nothing() {
    let _wd = Watchdog::new(TIMEOUT);
    let q = Queue::<u64>::new(64).expect("queue");
    // One thread holds both leases and is busy on both sides when the
    // others arrive and revoke them.
    let got: Vec<Vec<u64>> = std::thread::scope(|s| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = &q;
                s.spawn(move || {
                    for seq in 0..n() {
                        q.put_timeout((p << 32) | seq, TIMEOUT).expect("put");
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let q = &q;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        match q.get_timeout(TIMEOUT) {
                            Ok(m) => mine.push(m),
                            Err(GetTimeoutError::Closed) => return mine,
                            Err(e) => panic!("get: {e}"),
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer");
        }
        q.close();
        consumers
            .into_iter()
            .map(|c| c.join().expect("consumer"))
            .collect()
    });
    let mut count = vec![0u64; PRODUCERS as usize];
    for mine in &got {
        let mut next = [0u64; PRODUCERS as usize];
        for &m in mine {
            let (p, seq) = ((m >> 32) as usize, m & 0xffff_ffff);
            assert!(p < PRODUCERS as usize && seq < n(), "bad message {m:#x}");
            // Per producer, each consumer sees increasing sequence numbers.
            assert!(seq >= next[p], "producer {p}: {seq} after {}", next[p]);
            next[p] = seq + 1;
            count[p] += 1;
        }
    }
    // Increasing per consumer and N per producer in all: each exactly once.
    assert_eq!(count, vec![n(); PRODUCERS as usize]);
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    assert_eq!(q.consumer_lease(), Ok(LeaseState::Shared));
}

#[test]
fn an_idle_holder_in_another_process_gives_way() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        for i in 1..=1000 {
            q.put_timeout(i, TIMEOUT).expect("put");
        }
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 2048).expect("create");
    q.put(0).expect("put");
    assert!(matches!(q.producer_lease(), Ok(LeaseState::Held(_))));
    // We hold the producers' lease and sit idle (alive) while the child
    // puts: it revokes the lease without us.
    Child::spawn(current_test!(), "producer", &[("q", &name)])
        .expect("spawn")
        .expect_success(TIMEOUT);
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    for i in 0..=1000 {
        assert_eq!(q.try_get(), Ok(i));
    }
    // Our own puts now run the shared protocol.
    q.put(7).expect("put");
    assert_eq!(q.try_get(), Ok(7));
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
}

#[test]
fn one_thread_keeps_its_leases() {
    let q = Queue::<[u8; 64]>::new(8).expect("queue");
    assert_eq!(q.producer_lease(), Ok(LeaseState::Free));
    assert_eq!(q.consumer_lease(), Ok(LeaseState::Free));
    for i in 0..100u8 {
        q.put([i; 64]).expect("put");
        assert_eq!(q.get(), Ok([i; 64]));
        assert_eq!(q.qsize(), 0);
    }
    let (Ok(LeaseState::Held(p)), Ok(LeaseState::Held(c))) =
        (q.producer_lease(), q.consumer_lease())
    else {
        panic!("leases not held");
    };
    assert_eq!(p, c);
    // Full and empty are reported as such on the leased paths.
    for i in 0..8u8 {
        q.try_put([i; 64]).expect("room");
    }
    assert!(q.try_put([9; 64]).is_err());
    assert!(q.full());
    for i in 0..8u8 {
        assert_eq!(q.try_get(), Ok([i; 64]));
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
}
