//! Manager: a dict and a list shared by 4 processes, proxies passed to
//! children, a manager reached over TCP and over its Unix socket by
//! processes that did not start it, every object kind, bad input, a dead
//! client's lock released, the server SIGKILLed mid-call.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shmproc_channel::{Connection, Pipe};
use shmproc_manager::manager::wire::{Hello, Kind, Op, Reply, Request, Welcome};
use shmproc_manager::{
    Address, Client, ConnError, DictProxy, EventProxy, ListProxy, LockProxy, Manager, ProxyError,
    QueueProxy, RemoteError,
};
use shmproc_process::{Process, Serde};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

const PER_PROCESS: u64 = 50;

fn fill((i, d, l): (u64, DictProxy<String, u64>, ListProxy<String>)) {
    for k in 0..PER_PROCESS {
        let key = format!("p{i}-{k}");
        d.set(&key, &(i * 1000 + k)).expect("set");
        l.append(&key).expect("append");
        // Read-modify-write from 4 processes at once: none may be lost.
        d.update_with(&"total".to_owned(), |v| v.unwrap_or(0) + 1)
            .expect("update_with");
    }
}

#[test]
fn four_processes_fill_a_dict_and_a_list() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let m = Manager::start().expect("start");
    let d = m.dict::<String, u64>().expect("dict");
    let l = m.list::<String>().expect("list");
    let procs: Vec<Process> = (0..4)
        .map(|i| {
            let p = Process::new(
                fill,
                (
                    i,
                    d.try_clone().expect("clone"),
                    l.try_clone().expect("clone"),
                ),
            );
            p.start().expect("start");
            p
        })
        .collect();
    for p in &procs {
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    }
    assert_eq!(
        d.get(&"total".to_owned()).expect("get"),
        Some(4 * PER_PROCESS)
    );
    assert_eq!(d.len().expect("len"), 4 * PER_PROCESS as usize + 1);
    for i in 0..4 {
        for k in 0..PER_PROCESS {
            assert_eq!(
                d.get(&format!("p{i}-{k}")).expect("get"),
                Some(i * 1000 + k)
            );
        }
    }
    let items = l.to_vec().expect("to_vec");
    let unique: HashSet<&String> = items.iter().collect();
    assert_eq!(items.len(), 4 * PER_PROCESS as usize);
    assert_eq!(unique.len(), items.len(), "every key exactly once");
    m.shutdown().expect("shutdown");
    assert!(t.leftovers().is_empty());
}

fn remote_client((addr, key, what): (Serde<Address>, Vec<u8>, String)) {
    let m = Manager::connect(&addr.0, &key).expect("connect");
    let d = m
        .dict_named::<String, String>("results")
        .expect("dict_named");
    d.set(&what, &format!("hello over {what}")).expect("set");
    let ns = m.namespace_named("settings").expect("namespace");
    assert_eq!(ns.get::<u32>("workers").expect("get"), Some(4));
}

#[test]
fn reached_over_tcp_and_unix_by_processes_that_did_not_start_it() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .start()
        .expect("start");
    let d = m
        .dict_named::<String, String>("results")
        .expect("dict_named");
    m.namespace_named("settings")
        .expect("ns")
        .set("workers", &4u32)
        .expect("set");
    let tcp = m.tcp_address().expect("tcp").clone();
    for (addr, what) in [(tcp, "tcp"), (m.address().clone(), "unix")] {
        let p = Process::new(
            remote_client,
            (Serde(addr), m.authkey().to_vec(), what.to_owned()),
        );
        p.start().expect("start");
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{what}");
    }
    assert_eq!(
        d.get(&"tcp".into()).expect("get").as_deref(),
        Some("hello over tcp")
    );
    assert_eq!(
        d.get(&"unix".into()).expect("get").as_deref(),
        Some("hello over unix")
    );
    // A wrong key is refused, and the manager goes on.
    assert!(matches!(
        Manager::connect_timeout(m.tcp_address().expect("tcp"), b"wrong", TIMEOUT),
        Err(shmproc_manager::ManagerError::Connect(ConnError::Auth(_)))
    ));
    assert_eq!(d.len().expect("len"), 2);
}

fn consumer((q, done, lock): (QueueProxy<Vec<u32>>, EventProxy, LockProxy)) {
    let mut sum = 0u32;
    loop {
        let v = q.get_timeout(TIMEOUT).expect("get");
        if v.is_empty() {
            break;
        }
        sum += v.iter().sum::<u32>();
    }
    lock.acquire_timeout(TIMEOUT).expect("acquire");
    q.put(&vec![sum]).expect("put");
    lock.release().expect("release");
    done.set().expect("set");
}

#[test]
fn namespace_value_queue_lock_event_and_registered_types() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    // Namespace: attributes of any type; another type is a typed error.
    let ns = m.namespace().expect("namespace");
    ns.set("name", &"run-1").expect("set");
    ns.set("threshold", &0.5f64).expect("set");
    assert_eq!(
        ns.get::<String>("name").expect("get").as_deref(),
        Some("run-1")
    );
    // Read as another type: a typed decode error.
    assert!(matches!(
        ns.get::<Vec<u64>>("threshold"),
        Err(ProxyError::Decode { .. })
    ));
    ns.set("level", &255u8).expect("set");
    assert!(matches!(
        ns.get::<bool>("level"),
        Err(ProxyError::Decode { .. })
    ));
    assert!(ns.remove("name").expect("remove"));
    assert_eq!(ns.get::<String>("name").expect("get"), None);
    // Value and a registered user type, updated in place.
    let v = m.value(&10i64).expect("value");
    v.set(&11).expect("set");
    assert_eq!(
        v.update_with(|x| {
            *x *= 2;
            *x
        })
        .expect("update"),
        22
    );
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Default)]
    struct Stats {
        seen: Vec<String>,
        count: u64,
    }
    let s = m.register("stats", &Stats::default()).expect("register");
    s.update_with(|st| {
        st.seen.push("a".into());
        st.count += 1;
    })
    .expect("call");
    let again = m
        .register("stats", &Stats::default())
        .expect("found by name");
    assert_eq!(again.get().expect("get").count, 1);
    assert!(matches!(
        m.register("stats", &0u8),
        Err(ProxyError::Remote(RemoteError::WrongType { .. }))
    ));
    // List operations and Python's index rules.
    let l = m.list::<i32>().expect("list");
    l.extend(&[1, 2, 3]).expect("extend");
    assert_eq!(l.get(-1).expect("get"), 3);
    l.set(0, &10).expect("set");
    assert_eq!(l.update_with(1, |x| x + 100).expect("update"), 102);
    assert_eq!(l.pop(None).expect("pop"), 3);
    assert!(matches!(
        l.get(5),
        Err(ProxyError::Remote(RemoteError::IndexError {
            index: 5,
            len: 2
        }))
    ));
    // Queue, Event and Lock with a child.
    let q = m.queue::<Vec<u32>>(2).expect("queue");
    let done = m.event().expect("event");
    let lock = m.lock().expect("lock");
    assert!(matches!(q.try_get(), Err(ProxyError::Empty)));
    assert!(matches!(
        done.wait_timeout(Duration::from_millis(20)),
        Err(ProxyError::Timeout)
    ));
    let p = Process::new(
        consumer,
        (
            q.try_clone().expect("c"),
            done.try_clone().expect("c"),
            lock.try_clone().expect("c"),
        ),
    );
    p.start().expect("start");
    for i in 0..10u32 {
        q.put_timeout(&vec![i, i], TIMEOUT).expect("put");
    }
    q.put_timeout(&vec![], TIMEOUT).expect("put");
    done.wait_timeout(TIMEOUT).expect("wait");
    assert!(done.is_set().expect("is_set"));
    assert_eq!(q.get_timeout(TIMEOUT).expect("get"), vec![90]);
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    // A bounded queue refuses a third item.
    q.try_put(&vec![1]).expect("put");
    q.try_put(&vec![2]).expect("put");
    assert!(matches!(q.try_put(&vec![3]), Err(ProxyError::Full)));
    assert_eq!(q.qsize().expect("qsize"), 2);
    assert!(lock.try_acquire().expect("try"));
    assert!(!lock.try_acquire().expect("try"), "not reentrant");
    lock.release().expect("release");
    assert!(matches!(
        lock.release(),
        Err(ProxyError::Remote(RemoteError::NotHeld))
    ));
    m.shutdown().expect("shutdown");
    // Proxies outliving the server get errors, not hangs.
    assert!(v.get().expect_err("server gone").is_disconnected());
}

fn raw_session(addr: &Address, key: &[u8]) -> shmproc_manager::SocketConnection {
    let mut c = Client::connect_timeout(addr, key, TIMEOUT).expect("connect");
    c.send_obj(&Hello::Socket { client: 1 }).expect("hello");
    assert!(matches!(
        c.recv_obj_timeout::<Welcome>(TIMEOUT).expect("welcome"),
        Welcome::Socket { .. }
    ));
    c
}

fn ask(c: &mut shmproc_manager::SocketConnection, bytes: &[u8]) -> Reply {
    c.send_bytes(bytes).expect("send");
    c.recv_obj_timeout(TIMEOUT).expect("reply")
}

#[test]
fn bad_input_is_a_typed_error_and_others_are_served() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .handshake_timeout(Duration::from_secs(2))
        .start()
        .expect("start");
    let tcp = m.tcp_address().expect("tcp").clone();
    let d = m.dict_named::<String, u64>("d").expect("dict");
    d.set(&"k".into(), &1).expect("set");
    // A silent client (no handshake) sits there while others are served.
    let Address::Tcp(sa) = tcp else {
        unreachable!()
    };
    let _silent = std::net::TcpStream::connect(sa).expect("connect");

    let mut c = raw_session(&tcp, m.authkey());
    let enc = |r: &Request| postcard::to_allocvec(r).expect("encode");
    assert!(matches!(
        ask(&mut c, b"\xff\xff\xff\xff garbage"),
        Reply::Err(RemoteError::BadRequest(_))
    ));
    assert!(matches!(
        ask(
            &mut c,
            &enc(&Request::Call {
                id: 999,
                op: Op::Len
            })
        ),
        Reply::Err(RemoteError::NoSuchObject(999))
    ));
    assert!(matches!(
        ask(
            &mut c,
            &enc(&Request::Call {
                id: d.id(),
                op: Op::Append(vec![1].into())
            })
        ),
        Reply::Err(RemoteError::UnknownMethod { .. })
    ));
    assert!(matches!(
        ask(
            &mut c,
            &enc(&Request::Attach {
                id: d.id(),
                kind: Kind::List,
                ty: "x".into()
            })
        ),
        Reply::Err(RemoteError::WrongType { .. })
    ));
    assert!(
        matches!(
            ask(&mut c, &enc(&Request::Release { id: d.id() })),
            Reply::Err(RemoteError::NoSuchObject(_))
        ),
        "a client cannot release references it does not hold"
    );
    // A value of another type through the typed API.
    assert!(matches!(
        m.dict_named::<u64, u64>("d"),
        Err(ProxyError::Remote(RemoteError::WrongType { .. }))
    ));
    // An authenticated client announcing a frame over the limit (16 MiB):
    // refused from its length; that session ends, the others go on.
    let mut h = raw_session(&tcp, m.authkey());
    let _ = h.send_bytes(&vec![0u8; (16 << 20) + 1]);
    assert!(matches!(h.recv_bytes_timeout(TIMEOUT), Err(ConnError::Eof)));
    // Unauthenticated garbage on another connection.
    {
        use std::io::Write;
        let mut junk = std::net::TcpStream::connect(sa).expect("connect");
        junk.write_all(&[0xff; 64]).expect("write");
    }
    // The good session and the typed proxies still work.
    assert_eq!(
        ask(
            &mut c,
            &enc(&Request::Call {
                id: d.id(),
                op: Op::Len
            })
        ),
        Reply::U64(1)
    );
    assert_eq!(d.get(&"k".into()).expect("get"), Some(1));
    let other = Manager::connect(&tcp, m.authkey()).expect("connect");
    assert_eq!(
        other
            .dict_named::<String, u64>("d")
            .expect("d")
            .len()
            .expect("len"),
        1
    );
}

fn hold_lock_then_wait((lock, mut conn): (LockProxy, Connection)) {
    lock.acquire_timeout(TIMEOUT).expect("acquire");
    conn.send(&1u8).expect("report");
    // Killed while holding it.
    let _ = conn.recv_bytes_timeout(TIMEOUT);
}

#[test]
fn a_dead_clients_lock_is_released() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let lock = m.lock().expect("lock");
    let (mut ours, theirs) = Pipe::new().expect("pipe");
    let p = Process::new(
        hold_lock_then_wait,
        (lock.try_clone().expect("clone"), theirs),
    );
    p.start().expect("start");
    assert_eq!(ours.recv_timeout::<u8>(TIMEOUT).expect("acquired"), 1);
    assert!(!lock.try_acquire().expect("try"), "held by the child");
    p.kill().expect("kill");
    lock.acquire_timeout(TIMEOUT)
        .expect("released when the child died");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), -9);
}

fn blocked_get((q, timeout_ms, mut ready): (QueueProxy<u64>, u64, Connection)) {
    ready.send(&1u8).expect("ready");
    let t0 = Instant::now();
    let e = q.get().expect_err("the server dies");
    assert!(e.is_disconnected(), "{e:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(timeout_ms),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn server_sigkilled_mid_call_every_client_errors_within_its_timeout() {
    let _w = Watchdog::new(TIMEOUT);
    let timeout = Duration::from_secs(10);
    let m = Manager::builder().timeout(timeout).start().expect("start");
    let q = m.queue::<u64>(0).expect("queue");
    let d = m.dict::<u64, u64>().expect("dict");
    let children: Vec<Process> = (0..2)
        .map(|_| {
            let (mut ours, theirs) = Pipe::new().expect("pipe");
            let p = Process::new(blocked_get, (&q, timeout.as_millis() as u64, theirs));
            p.start().expect("start");
            // Connected (the proxy unpacked) and about to call `get`.
            assert_eq!(ours.recv_timeout::<u8>(TIMEOUT).expect("ready"), 1);
            p
        })
        .collect();
    // This process's calls go over its pipe by now (the children's over
    // their sockets): both see the server die.
    for _ in 0..shmproc_manager::manager::wire::PIPE_AFTER {
        d.len().expect("len");
    }
    assert!(m.served_over_pipe());
    // Whether or not a child is already inside `get` when the server dies,
    // its call errors: EOF while blocked, a broken pipe when sent after.
    let t0 = Instant::now();
    m.server_process().expect("server").kill().expect("kill");
    let e = q.get().expect_err("server gone");
    assert!(e.is_disconnected(), "{e:?}");
    assert!(d.len().expect_err("server gone").is_disconnected());
    assert!(t0.elapsed() < timeout, "{:?}", t0.elapsed());
    for c in &children {
        assert_eq!(c.join_timeout(TIMEOUT).expect("join"), 0);
    }
    drop(m);
}

#[test]
fn a_pipe_is_refused_over_tcp_and_the_server_serves_on() {
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .start()
        .expect("start");
    let tcp = m.tcp_address().expect("tcp").clone();
    let mut c = Client::connect_timeout(&tcp, m.authkey(), TIMEOUT).expect("connect");
    c.send_obj(&Hello::Pipe { client: 7 }).expect("hello");
    assert!(matches!(
        c.recv_obj_timeout::<Welcome>(TIMEOUT).expect("welcome"),
        Welcome::Refused(_)
    ));
    let d = Manager::connect(&tcp, m.authkey())
        .expect("connect")
        .dict::<u8, u8>()
        .expect("dict");
    d.set(&1, &2).expect("set");
    assert_eq!(d.get(&1).expect("get"), Some(2));
    drop(d);
    m.shutdown().expect("shutdown");
}

#[test]
fn a_local_client_moves_to_a_pipe_after_its_first_calls() {
    use shmproc_manager::manager::wire::PIPE_AFTER;
    let _w = Watchdog::new(TIMEOUT);
    let m = Manager::start().expect("start");
    let c = Manager::connect(m.address(), m.authkey()).expect("connect");
    assert!(!c.served_over_pipe(), "a new connection uses its socket");
    let d = c.dict::<u64, u64>().expect("dict");
    for i in 1..u64::from(PIPE_AFTER) {
        assert!(!c.served_over_pipe(), "call {i}");
        d.set(&i, &(i * 10)).expect("set");
    }
    assert!(c.served_over_pipe(), "the pipe came with a reply");
    // Values larger than a request or reply encoded on the stack, and than
    // the pipe (they stream through).
    let big = m.dict::<u64, Vec<u8>>().expect("dict");
    for len in [200, 300, 5000, 100_000] {
        let v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        big.set(&(len as u64), &v).expect("set");
        assert_eq!(big.get(&(len as u64)).expect("get"), Some(v));
    }
    drop(big);
    for i in 1..20 {
        d.set(&(100 + i), &i).expect("set over the pipe");
    }
    for i in 1..u64::from(PIPE_AFTER) {
        assert_eq!(d.get(&i).expect("get"), Some(i * 10));
    }
    assert_eq!(d.len().expect("len"), PIPE_AFTER as usize - 1 + 19);
    drop(d);
    drop(c);
    // A short-lived client's objects are released too.
    let c = Manager::connect(m.address(), m.authkey()).expect("connect");
    let l = c.list::<u8>().expect("list");
    l.append(&1).expect("append");
    assert!(!c.served_over_pipe());
    drop((l, c));
    assert!(shmproc_testing::wait_until(TIMEOUT, || m
        .object_count()
        .expect("count")
        == 0));
    m.shutdown().expect("shutdown");
}
