//! The Manager's cases (issue 19), shared by `manager_compare` and the
//! `manager` group of `shmproc bench`: dict set and get round trips through
//! a Manager, locally (a shared-memory pipe per client) and over TCP
//! loopback, connect + handshake, and the floors of this design: a Pipe
//! round trip with a child process that waits as the Manager's sessions
//! do, and TCP loopback echoes, blocking and polling.
//!
//! Every case also records the CPU it burned per operation, both sides
//! together ([`Setup::last_cpu_us`]): the threads of this process and of
//! the peer process (the manager's server, the Pipe's echo child), from
//! `/proc/<pid>/task/*/schedstat` (nanoseconds on a CPU).

use std::cell::Cell;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shmproc_channel::{Connection, Pipe};
use shmproc_manager::manager::spin::{SpinBudget, recv_spinning};
use shmproc_manager::{Address, Client, DictProxy, Manager};
use shmproc_process::Process;

/// The authkey of the benchmark's manager.
pub const KEY: &[u8] = b"benchmark-key";
const TIMEOUT: Duration = Duration::from_secs(60);
/// The echo floors' message: about a dict set request's size.
const MSG: [u8; 24] = [7; 24];

/// CPU time (ns) every thread of process `pid` (`None`: this one) used
/// so far; 0 when `/proc` cannot tell.
pub fn process_cpu_ns(pid: Option<i32>) -> u64 {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Time per call, in µs, of `ops` calls of `f`.
pub fn per_op_us(ops: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..ops {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / ops as f64
}

/// The Manager's pipe sessions' wait (an adaptive poll, `pause` then
/// yielding, then a sleep), so that the floor and the dict round trip wait
/// alike.
fn recv_spin(c: &mut Connection, budget: &mut SpinBudget) -> Option<Vec<u8>> {
    match recv_spinning(c, budget, None) {
        Ok(Some(b)) => Some(b),
        Ok(None) => c.recv_bytes_timeout(TIMEOUT).ok(),
        Err(_) => None,
    }
}

fn echo((mut c,): (Connection,)) {
    let mut budget = SpinBudget::default();
    while let Some(b) = recv_spin(&mut c, &mut budget) {
        if c.send_bytes(&b).is_err() {
            break;
        }
    }
}

/// [`per_op_us`], recording in `last` the CPU (µs per operation) this
/// process and `peer` used together.
fn timed(last: &Cell<f64>, peer: Option<i32>, ops: usize, f: impl FnMut(usize)) -> f64 {
    let cpu = || process_cpu_ns(None) + peer.map_or(0, |p| process_cpu_ns(Some(p)));
    let c0 = cpu();
    let t = per_op_us(ops, f);
    let used = cpu().saturating_sub(c0);
    last.set(used as f64 / 1e3 / ops as f64);
    t
}

/// Reads `b` whole from a non-blocking stream, polling; `false` at EOF
/// or an error.
fn read_polling(s: &mut TcpStream, b: &mut [u8]) -> bool {
    let mut done = 0;
    while done < b.len() {
        match s.read(&mut b[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// The polling echo's read: polls up to 1 ms for the message to start
/// (a case's requests come back to back), then blocks for it (between
/// cases the echo sleeps, leaving the CPU to the other cases).
fn read_polling_then_block(s: &mut TcpStream, b: &mut [u8]) -> bool {
    let t0 = Instant::now();
    let first = loop {
        match s.read(b) {
            Ok(0) => return false,
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if t0.elapsed() < Duration::from_millis(1) {
                    std::hint::spin_loop();
                    continue;
                }
                let n = match (s.set_nonblocking(false), s.read(b)) {
                    (Ok(()), Ok(n)) if n > 0 => n,
                    _ => return false,
                };
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                break n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    };
    read_polling(s, b.get_mut(first..).unwrap_or_default())
}

/// A running manager (Unix socket and TCP), a dict through each, and the
/// two echo floors.
pub struct Setup {
    m: Option<Manager>,
    remote: Option<Manager>,
    d_local: Option<DictProxy<String, u64>>,
    d_tcp: Option<DictProxy<String, u64>>,
    keys: Vec<String>,
    local: Address,
    tcp: Address,
    pipe: Connection,
    budget: SpinBudget,
    echo_child: Process,
    tcp_c: Option<TcpStream>,
    tcp_echo: Option<std::thread::JoinHandle<()>>,
    poll_c: Option<TcpStream>,
    poll_echo: Option<std::thread::JoinHandle<()>>,
    server_pid: Option<i32>,
    echo_pid: Option<i32>,
    last_cpu: Cell<f64>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("local", &self.local)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl Setup {
    /// Starts the manager, connects over TCP, starts the echoes.
    ///
    /// # Errors
    /// What could not start, in words.
    pub fn new() -> Result<Self, String> {
        let e = |what: &str| {
            let what = what.to_owned();
            move |e: &dyn std::fmt::Display| format!("{what}: {e}")
        };
        let m = Manager::builder()
            .tcp("127.0.0.1:0".parse().expect("a socket address"))
            .authkey(KEY)
            .start()
            .map_err(|x| e("start manager")(&x))?;
        let local = m.address().clone();
        let tcp = m.tcp_address().ok_or("no tcp address")?.clone();
        let remote = Manager::connect(&tcp, KEY).map_err(|x| e("connect over tcp")(&x))?;
        let d_local = m.dict::<String, u64>().map_err(|x| e("dict")(&x))?;
        let d_tcp = remote.dict::<String, u64>().map_err(|x| e("dict")(&x))?;
        let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
        d_local.set(&keys[0], &0).map_err(|x| e("set")(&x))?;
        d_tcp.set(&keys[0], &0).map_err(|x| e("set")(&x))?;
        let (pipe, theirs) = Pipe::new().map_err(|x| e("pipe")(&x))?;
        let echo_child = Process::new(echo, (theirs,));
        echo_child.start().map_err(|x| e("start echo")(&x))?;
        // The TCP floor: a blocking echo over loopback (a thread;
        // `TCP_NODELAY` both ends), what any TCP request/reply costs here.
        let echo_l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|x| e("bind")(&x))?;
        let echo_a = echo_l.local_addr().map_err(|x| e("addr")(&x))?;
        let tcp_echo = std::thread::spawn(move || {
            let Ok((mut s, _)) = echo_l.accept() else {
                return;
            };
            let _ = s.set_nodelay(true);
            let mut b = MSG;
            while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
        });
        let tcp_c = TcpStream::connect(echo_a).map_err(|x| e("connect")(&x))?;
        let _ = tcp_c.set_nodelay(true);
        // The polling TCP floor: the same echo, both ends non-blocking and
        // polling without a bound (what a waiter that never sleeps gets).
        let poll_l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|x| e("bind")(&x))?;
        let poll_a = poll_l.local_addr().map_err(|x| e("addr")(&x))?;
        let poll_echo = std::thread::spawn(move || {
            let Ok((mut s, _)) = poll_l.accept() else {
                return;
            };
            let _ = s.set_nodelay(true);
            let _ = s.set_nonblocking(true);
            let mut b = MSG;
            while read_polling_then_block(&mut s, &mut b) && s.write_all(&b).is_ok() {}
        });
        let poll_c = TcpStream::connect(poll_a).map_err(|x| e("connect")(&x))?;
        let _ = poll_c.set_nodelay(true);
        let _ = poll_c.set_nonblocking(true);
        let server_pid = m.server_process().and_then(Process::pid).map(i32::from);
        let echo_pid = echo_child.pid().map(i32::from);
        Ok(Self {
            m: Some(m),
            remote: Some(remote),
            d_local: Some(d_local),
            d_tcp: Some(d_tcp),
            keys,
            local,
            tcp,
            pipe,
            budget: SpinBudget::default(),
            echo_child,
            tcp_c: Some(tcp_c),
            tcp_echo: Some(tcp_echo),
            poll_c: Some(poll_c),
            poll_echo: Some(poll_echo),
            server_pid,
            echo_pid,
            last_cpu: Cell::new(0.0),
        })
    }

    /// The CPU (µs per operation, this process and the peer together)
    /// of the last case run.
    pub fn last_cpu_us(&self) -> f64 {
        self.last_cpu.get()
    }

    /// The local floor: a Pipe round trip with a child, µs.
    pub fn pipe_rtt(&mut self, ops: usize) -> f64 {
        let (pipe, budget) = (&mut self.pipe, &mut self.budget);
        timed(&self.last_cpu, self.echo_pid, ops, |_| {
            pipe.send_bytes(&MSG).expect("send");
            recv_spin(pipe, budget).expect("echo");
        })
    }

    /// The TCP floor: a blocking loopback echo, µs.
    pub fn tcp_rtt(&mut self, ops: usize) -> f64 {
        let c = self.tcp_c.as_mut().expect("set up");
        timed(&self.last_cpu, None, ops, |_| {
            let mut b = MSG;
            c.write_all(&b).expect("send");
            c.read_exact(&mut b).expect("echo");
        })
    }

    /// The polling TCP floor: the loopback echo with both ends polling
    /// non-blocking sockets, never sleeping, µs.
    pub fn tcp_poll_rtt(&mut self, ops: usize) -> f64 {
        let c = self.poll_c.as_mut().expect("set up");
        timed(&self.last_cpu, None, ops, |_| {
            let mut b = MSG;
            c.write_all(&b).expect("send");
            assert!(read_polling(c, &mut b), "echo");
        })
    }

    fn dict(&self, tcp: bool) -> &DictProxy<String, u64> {
        if tcp { &self.d_tcp } else { &self.d_local }
            .as_ref()
            .expect("set up")
    }

    /// `d[k] = v`, µs per call.
    pub fn set(&self, tcp: bool, ops: usize) -> f64 {
        let d = self.dict(tcp);
        timed(&self.last_cpu, self.server_pid, ops, |i| {
            d.set(&self.keys[i % 64], &(i as u64)).expect("set");
        })
    }

    /// `d[k]`, µs per call.
    pub fn get(&self, tcp: bool, ops: usize) -> f64 {
        let d = self.dict(tcp);
        timed(&self.last_cpu, self.server_pid, ops, |i| {
            d.get(&self.keys[i % 64]).expect("get");
        })
    }

    /// `Manager::connect` (handshake and session set-up) and its drop, µs.
    pub fn connect(&self, tcp: bool, n: usize) -> f64 {
        let a = if tcp { &self.tcp } else { &self.local };
        timed(&self.last_cpu, self.server_pid, n, |_| {
            drop(Manager::connect(a, KEY).expect("connect"));
        })
    }

    /// `Manager::connect`, one call and the drop, µs: what Python's
    /// `connect()` does (its handshake, then a `dummy` request).
    pub fn connect_and_call(&self, tcp: bool, n: usize) -> f64 {
        let a = if tcp { &self.tcp } else { &self.local };
        timed(&self.last_cpu, self.server_pid, n, |_| {
            let c = Manager::connect(a, KEY).expect("connect");
            c.object_count().expect("a call");
        })
    }

    /// `Client::connect` alone (the handshake over the Unix socket), µs.
    pub fn client_connect(&self, n: usize) -> f64 {
        timed(&self.last_cpu, self.server_pid, n, |_| {
            drop(Client::connect(&self.local, KEY).expect("connect"));
        })
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.tcp_c.take());
        if let Some(t) = self.tcp_echo.take() {
            let _ = t.join();
        }
        drop(self.poll_c.take());
        if let Some(t) = self.poll_echo.take() {
            let _ = t.join();
        }
        self.pipe.close();
        let _ = self.echo_child.join_timeout(TIMEOUT);
        drop((self.d_local.take(), self.d_tcp.take(), self.remote.take()));
        if let Some(m) = self.m.take() {
            if let Err(e) = m.shutdown() {
                eprintln!("manager bench: shutdown: {e}");
            }
        }
    }
}
