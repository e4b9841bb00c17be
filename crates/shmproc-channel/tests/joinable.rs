//! JoinableQueue: task_done bookkeeping and join, in one process and across
//! processes.
#![cfg(not(shmproc_loom))]

use std::time::Duration;

use shmproc_channel::{JoinTimeoutError, JoinableQueue, TaskDoneError};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role};

#[test]
fn task_done_more_than_put_is_an_error() {
    let q = JoinableQueue::<u8>::new(4).expect("create");
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put(1).expect("put");
    q.try_put(2).expect("put");
    assert_eq!(q.unfinished_tasks(), 2);
    assert_eq!(
        q.join_timeout(Duration::from_millis(10)),
        Err(JoinTimeoutError { unfinished: 2 })
    );
    q.get().expect("get");
    q.task_done().expect("one done");
    q.get().expect("get");
    q.task_done().expect("two done");
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.join_timeout(Duration::ZERO).expect("nothing unfinished");
    q.join();
}

#[test]
fn failed_puts_are_not_counted() {
    let q = JoinableQueue::<u8>::new(1).expect("create");
    q.put(1).expect("put");
    assert!(q.try_put(2).is_err());
    assert!(q.put_timeout(2, Duration::from_millis(1)).is_err());
    assert_eq!(q.unfinished_tasks(), 1);
}

#[test]
fn join_waits_for_workers_in_other_processes() {
    if role().is_some() {
        let q = JoinableQueue::<u32>::open(&arg("q").expect("q")).expect("open");
        // Work until the parent closes the queue (then gets report Closed).
        while let Ok(_job) = q.get_timeout(TIMEOUT) {
            q.task_done().expect("task_done");
        }
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("jq");
    let q = JoinableQueue::<u32>::create(&name, 8).expect("create");
    let workers: Vec<_> = (0..2)
        .map(|_| Child::spawn(current_test!(), "worker", &[("q", &name)]).expect("spawn"))
        .collect();
    for i in 0..200 {
        q.put(i).expect("put");
    }
    q.join_timeout(TIMEOUT).expect("every task done");
    assert_eq!(q.unfinished_tasks(), 0);
    q.close();
    for w in workers {
        w.expect_success(TIMEOUT);
    }
}
