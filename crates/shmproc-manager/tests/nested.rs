//! Nested proxies (a dict of lists, Python 3.6+): used from other
//! processes, and no leak: a nested object lives while a container or a
//! proxy in any process refers to it, and goes when the last holder drops
//! it or dies.

use shmproc_channel::{Connection, Pipe};
use shmproc_manager::manager::wire::{Hello, Op, Reply, Request, Val, Welcome};
use shmproc_manager::{
    Address, Client, DictProxy, ListProxy, Manager, ProxyError, QueueProxy, RemoteError, ValueProxy,
};
use shmproc_process::{Process, Serde};
use shmproc_testing::{TIMEOUT, Watchdog, wait_until};

type Lists = DictProxy<String, ListProxy<u64>>;

fn worker(
    (i, d, q, addr, key): (
        u64,
        Lists,
        QueueProxy<ListProxy<u64>>,
        Serde<Address>,
        Vec<u8>,
    ),
) {
    // The list the parent stored under this worker's key, through the dict.
    let mine = d.get(&format!("p{i}")).expect("get").expect("present");
    for k in 0..10 {
        mine.append(&(i * 100 + k)).expect("append");
    }
    // Lists made here, stored in the dict and sent through the queue:
    // they outlive this process.
    let m = Manager::connect(&addr.0, &key).expect("connect");
    let own = m.list::<u64>().expect("list");
    own.append(&(1000 + i)).expect("append");
    d.set(&format!("c{i}"), &own).expect("set");
    let sent = m.list::<u64>().expect("list");
    sent.append(&(2000 + i)).expect("append");
    q.put(&sent).expect("put");
}

#[test]
fn a_dict_of_lists_is_shared_by_processes_and_freed_after() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let d: Lists = m.dict().expect("dict");
    let q = m.queue::<ListProxy<u64>>(0).expect("queue");
    for i in 0..2 {
        let l = m.list::<u64>().expect("list");
        d.set(&format!("p{i}"), &l).expect("set");
        // The dict's reference keeps it.
    }
    assert_eq!(m.object_count().expect("count"), 4);
    let procs: Vec<Process> = (0..2)
        .map(|i| {
            let p = Process::new(
                worker,
                (i, &d, &q, Serde(m.address().clone()), m.authkey().to_vec()),
            );
            p.start().expect("start");
            p
        })
        .collect();
    for p in &procs {
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    }
    for i in 0..2 {
        let l = d.get(&format!("p{i}")).expect("get").expect("present");
        assert_eq!(
            l.to_vec().expect("to_vec"),
            (0..10).map(|k| i * 100 + k).collect::<Vec<_>>()
        );
        let c = d.get(&format!("c{i}")).expect("get").expect("present");
        assert_eq!(c.to_vec().expect("to_vec"), vec![1000 + i]);
    }
    let mut from_queue: Vec<u64> = (0..2)
        .map(|_| q.get_timeout(TIMEOUT).expect("get").get(0).expect("item"))
        .collect();
    from_queue.sort_unstable();
    assert_eq!(from_queue, vec![2000, 2001]);
    // d, q, 2 lists per worker in d; the queued ones went with their proxies.
    assert!(wait_until(TIMEOUT, || m.object_count().expect("count") == 6));
    // `items` hands out every nested proxy at once.
    let items = d.items().expect("items");
    assert_eq!(items.len(), 4);
    d.clear().expect("clear");
    assert_eq!(m.object_count().expect("count"), 6, "held by `items`");
    drop(items);
    assert_eq!(m.object_count().expect("count"), 2);
    drop((d, q));
    assert_eq!(m.object_count().expect("count"), 0);
    m.shutdown().expect("shutdown");
}

#[test]
fn the_last_holder_frees_a_nested_object_also_through_containers() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let d: Lists = m.dict().expect("dict");
    let l = m.list::<u64>().expect("list");
    l.append(&7).expect("append");
    d.set(&"a".into(), &l).expect("set");
    drop(l);
    assert_eq!(m.object_count().expect("count"), 2);
    let got = d.get(&"a".into()).expect("get").expect("present");
    // Overwritten in the dict: the proxy read keeps it.
    let other = m.list::<u64>().expect("list");
    d.set(&"a".into(), &other).expect("set");
    drop(other);
    assert_eq!(m.object_count().expect("count"), 3);
    assert_eq!(got.to_vec().expect("to_vec"), vec![7]);
    drop(got);
    assert_eq!(m.object_count().expect("count"), 2);
    // A dict of dicts of lists, a value holding a list: freeing the outer
    // object frees what it alone held.
    let outer = m.dict::<u8, DictProxy<u8, ListProxy<u64>>>().expect("dict");
    let inner = m.dict::<u8, ListProxy<u64>>().expect("dict");
    inner.set(&1, &m.list::<u64>().expect("list")).expect("set");
    outer.set(&1, &inner).expect("set");
    drop(inner);
    let v: ValueProxy<Option<ListProxy<u64>>> = m.value(&None).expect("value");
    v.set(&Some(m.list::<u64>().expect("list"))).expect("set");
    assert_eq!(m.object_count().expect("count"), 2 + 3 + 2);
    let deep = outer
        .get(&1)
        .expect("get")
        .expect("present")
        .get(&1)
        .expect("get")
        .expect("present");
    deep.append(&1).expect("append");
    drop((outer, v));
    assert_eq!(m.object_count().expect("count"), 2 + 1, "`deep` is held");
    drop(deep);
    // Popped out of the list, the proxy is the last holder.
    let l = m.list::<ListProxy<u64>>().expect("list");
    l.append(&m.list::<u64>().expect("list")).expect("append");
    let popped = l.pop(None).expect("pop");
    drop(l);
    assert_eq!(m.object_count().expect("count"), 3);
    drop(popped);
    assert_eq!(m.object_count().expect("count"), 2);
    drop(d);
    assert_eq!(m.object_count().expect("count"), 0);
    m.shutdown().expect("shutdown");
}

fn hold_nested((d, mut conn): (Lists, Connection)) {
    let l = d.get(&"a".into()).expect("get").expect("present");
    l.append(&1).expect("append");
    conn.send(&1u8).expect("report");
    // Killed while holding `l`.
    let _ = conn.recv_bytes_timeout(TIMEOUT);
}

#[test]
fn a_nested_object_held_by_a_dead_process_is_freed() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let d: Lists = m.dict().expect("dict");
    d.set(&"a".into(), &m.list::<u64>().expect("list"))
        .expect("set");
    let (mut ours, theirs) = Pipe::new().expect("pipe");
    let p = Process::new(hold_nested, (&d, theirs));
    p.start().expect("start");
    assert_eq!(ours.recv_timeout::<u8>(TIMEOUT).expect("holding"), 1);
    // Gone from the dict, still held by the child.
    let removed = d.remove(&"a".into()).expect("remove").expect("present");
    assert_eq!(removed.to_vec().expect("to_vec"), vec![1]);
    drop(removed);
    assert_eq!(m.object_count().expect("count"), 2);
    p.kill().expect("kill");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), -9);
    assert!(
        wait_until(TIMEOUT, || m.object_count().expect("count") == 1),
        "released when its last holder died"
    );
    m.shutdown().expect("shutdown");
}

#[test]
fn a_proxy_outside_its_manager_or_to_a_gone_object_is_an_error() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let other = Manager::start().expect("start");
    let d: Lists = m.dict().expect("dict");
    let foreign = other.list::<u64>().expect("list");
    assert!(matches!(
        d.set(&"x".into(), &foreign),
        Err(ProxyError::Encode(_))
    ));
    assert!(
        postcard::to_allocvec(&foreign).is_err(),
        "not a manager value"
    );
    // A key may not hold a proxy.
    let keyed = m.dict::<ListProxy<u64>, u8>().expect("dict");
    assert!(matches!(
        keyed.set(&m.list().expect("list"), &1),
        Err(ProxyError::Encode(_))
    ));
    // A crafted request naming an object that does not exist.
    let mut c = Client::connect_timeout(m.address(), m.authkey(), TIMEOUT).expect("connect");
    c.send_obj(&Hello::Socket { client: 9 }).expect("hello");
    assert!(matches!(
        c.recv_obj_timeout::<Welcome>(TIMEOUT).expect("welcome"),
        Welcome::Socket { .. }
    ));
    let req = Request::Call {
        id: d.id(),
        op: Op::Set(
            postcard::to_allocvec("k").expect("key"),
            Val {
                bytes: postcard::to_allocvec(&999u64).expect("value"),
                refs: vec![999],
            },
        ),
    };
    c.send_bytes(&postcard::to_allocvec(&req).expect("encode"))
        .expect("send");
    assert!(matches!(
        c.recv_obj_timeout::<Reply>(TIMEOUT).expect("reply"),
        Reply::Err(RemoteError::NoSuchObject(999))
    ));
    assert_eq!(d.len().expect("len"), 0, "nothing stored");
    drop((d, keyed, foreign));
    other.shutdown().expect("shutdown");
    m.shutdown().expect("shutdown");
}
