//! Start-method selection, `fork` refusal with threads, identity helpers.

mod common;

use shmproc_process::{
    Process, ProcessError, Shareable, StartMethod, current_process, get_all_start_methods,
    get_context, get_start_method, parent_process, set_start_method,
};
use shmproc_shm::os;
use shmproc_sync::{Array, RawValue};
use shmproc_testing::{TIMEOUT, Watchdog};

#[test]
fn set_start_method_once_unless_forced() {
    assert_eq!(get_all_start_methods().len(), 3);
    assert_eq!(get_all_start_methods()[0], get_start_method());
    set_start_method(StartMethod::Spawn, false).expect("first set");
    assert!(matches!(
        set_start_method(StartMethod::Fork, false),
        Err(ProcessError::StartMethodAlreadySet {
            current: StartMethod::Spawn
        })
    ));
    set_start_method(StartMethod::ForkServer, true).expect("forced");
    assert_eq!(get_start_method(), StartMethod::ForkServer);
    assert_eq!(
        StartMethod::from_name("forkserver"),
        Some(StartMethod::ForkServer)
    );
    assert_eq!(StartMethod::Spawn.to_string(), "spawn");
}

fn noop(_: ()) {}

#[test]
fn fork_is_refused_in_a_multi_threaded_parent() {
    // libtest runs this on a thread of its own: the process has several.
    let p = get_context(StartMethod::Fork)
        .builder()
        .target(noop, ())
        .start();
    assert!(
        matches!(p, Err(ProcessError::ForkWithThreads { threads }) if threads > 1),
        "{p:?}"
    );
}

/// Writes its pid, its parent's pid and its name's length into `out`.
fn identity(out: Array<i64>) {
    let me = current_process();
    let parent = parent_process().expect("a child has a parent");
    assert!(parent.is_alive());
    out.store(&[
        i64::from(me.pid.as_raw()),
        i64::from(parent.pid.as_raw()),
        me.name.len() as i64,
        i64::from(me.daemon),
    ])
    .expect("store");
}

#[test]
fn current_and_parent_process_in_children() {
    let _w = Watchdog::named(TIMEOUT, "identity");
    let me = current_process();
    assert_eq!(me.name, "MainProcess");
    assert!(parent_process().is_none());
    for ctx in common::contexts() {
        let out = Array::new(4, 0i64).expect("array");
        let p = ctx
            .builder()
            .name("the-child")
            .target(identity, out.try_clone().expect("h"))
            .start()
            .expect("start");
        assert_eq!(p.name(), "the-child");
        assert_eq!(
            p.join_timeout(TIMEOUT).expect("join"),
            0,
            "{}",
            ctx.start_method()
        );
        let v = out.to_vec().expect("read");
        assert_eq!(v[0], i64::from(p.pid().expect("pid")));
        assert_eq!(v[1], i64::from(os::getpid()));
        assert_eq!(v[2], "the-child".len() as i64);
        assert_eq!(p.start_method(), Some(ctx.start_method()));
    }
}

#[test]
fn default_names_and_cpu_counts() {
    let a = Process::new(noop, ());
    let b = Process::new(noop, ());
    assert!(a.name().starts_with("Process-") && b.name().starts_with("Process-"));
    assert_ne!(a.name(), b.name());
    assert!(shmproc_process::cpu_count() >= 1);
    assert!(shmproc_process::available_cpu_count() >= 1);
    assert!(shmproc_process::available_cpu_count() <= shmproc_process::cpu_count());
}

type PodSerde = (
    shmproc_process::PodArg<[u32; 3]>,
    shmproc_process::Serde<Vec<(String, u8)>>,
);

fn pod_and_serde((a, b): PodSerde) {
    assert_eq!(a.0, [1, 2, 3]);
    assert_eq!(b.0, vec![("x".to_string(), 9)]);
}

#[test]
fn pod_and_serde_arguments() {
    let _w = Watchdog::named(TIMEOUT, "args");
    for ctx in common::contexts() {
        let args = (
            shmproc_process::PodArg([1u32, 2, 3]),
            shmproc_process::Serde(vec![("x".to_string(), 9u8)]),
        );
        let p = ctx
            .builder()
            .target(pod_and_serde, args)
            .start()
            .expect("start");
        assert_eq!(
            p.join_timeout(TIMEOUT).expect("join"),
            0,
            "{}",
            ctx.start_method()
        );
    }
}

fn stores(v: RawValue<u64>) {
    v.store(99);
}

#[test]
fn no_death_signal_runs_on_the_calling_thread() {
    let _w = Watchdog::named(TIMEOUT, "no pdeathsig");
    for ctx in common::contexts() {
        let v = RawValue::new(0u64).expect("value");
        let p = ctx
            .parent_death_signal(None)
            .builder()
            .target(stores, v.try_clone().expect("h"))
            .start()
            .expect("start");
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
        assert_eq!(v.load(), 99);
    }
}
