//! The `shmproc` binary against real segments: made here (a queue with
//! messages, a pipe, a held lock), by a child process that is then killed,
//! and written by hand (corrupt files named like segments).
//!
//! Every segment name comes from a `TestShm` (or is removed by a guard),
//! so nothing is left in `/dev/shm`; every `ls` and `clean` is limited to
//! this test's names with `--prefix`, so tests of other crates running at
//! the same time keep their orphans. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value as Json;
use shmproc_channel::{Pipe, Queue};
use shmproc_shm::os::{self, SIGKILL};
use shmproc_shm::{DATA_OFFSET, Segment};
use shmproc_sync::{Event, Lock};
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `shmproc args...` in `dir` (a watchdog fails the test if it hangs).
fn shmproc_in(dir: &Path, args: &[&str]) -> Output {
    let _watchdog = Watchdog::named(TIMEOUT, &format!("shmproc {}", args.join(" ")));
    let out = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the shmproc binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "shmproc {args:?} panicked: {stderr}"
    );
    out
}

fn shmproc(args: &[&str]) -> Output {
    shmproc_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `shmproc ls --json --prefix prefix`, parsed.
fn ls_json(prefix: &str) -> Vec<Json> {
    let out = shmproc(&["ls", "--json", "--prefix", prefix]);
    assert!(out.status.success(), "{}", stderr(&out));
    match serde_json::from_slice(&out.stdout).expect("ls --json prints JSON") {
        Json::Array(rows) => rows,
        other => panic!("ls --json printed {other}"),
    }
}

fn row<'a>(rows: &'a [Json], name: &str) -> &'a Json {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed in {rows:?}"))
}

fn inspect_json(name: &str) -> (bool, Json) {
    let out = shmproc(&["inspect", "--json", name]);
    let json = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    (out.status.success(), json)
}

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Removes a file in /dev/shm when dropped (names outside a `TestShm`).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn ls_inspect_and_clean_judge_a_killed_creator() {
    if role().as_deref() == Some("creator") {
        // A queue with three messages, one persisted queue, the parent's lock
        // held: then wait to be killed (at most TIMEOUT).
        let q = Queue::<u64>::create(&arg("queue").expect("queue"), 8).expect("create queue");
        for i in 1..=3 {
            q.put(i).expect("put");
        }
        let mut kept = Queue::<u32>::create(&arg("kept").expect("kept"), 4).expect("create kept");
        kept.segment_mut().persist();
        let lock = Lock::open(&arg("lock").expect("lock")).expect("open lock");
        let _held = lock.lock().expect("lock");
        Event::open(&arg("ready").expect("ready"))
            .expect("open ready")
            .set();
        let _ = Event::open(&arg("never").expect("never"))
            .expect("open never")
            .wait_timeout(TIMEOUT);
        return;
    }

    let shm = TestShm::new();
    let (queue, kept, lock_name, ready_name, never_name, live) = (
        shm.name("queue"),
        shm.name("kept"),
        shm.name("lock"),
        shm.name("ready"),
        shm.name("never"),
        shm.name("live"),
    );
    let lock = Lock::create(&lock_name).expect("create lock");
    let ready = Event::create(&ready_name).expect("create ready");
    let _never = Event::create(&never_name).expect("create never");
    let live_q = Queue::<u16>::create(&live, 2).expect("create live");
    live_q.put(7).expect("put");

    let mut child = Child::spawn(
        current_test!(),
        "creator",
        &[
            ("queue", &queue),
            ("kept", &kept),
            ("lock", &lock_name),
            ("ready", &ready_name),
            ("never", &never_name),
        ],
    )
    .expect("spawn the creator");
    ready
        .wait_timeout(TIMEOUT)
        .expect("the creator made its segments");
    let pid = child.pid().as_u32();

    // Alive: its queue is listed with its fill level; nothing is an orphan.
    let rows = ls_json(shm.prefix());
    let q = row(&rows, &queue);
    assert_eq!(q["kind"], "Queue");
    assert_eq!(q["element_type"], "u64");
    assert_eq!(q["creator_pid"], pid);
    assert_eq!(q["creator_alive"], true);
    assert_eq!(q["persistent"], false);
    assert_eq!(q["fill"]["used"], 3);
    assert_eq!(q["fill"]["capacity"], 8);
    assert_eq!(q["orphan"], false);
    assert_eq!(q["queue"]["head"], 0);
    assert_eq!(q["queue"]["tail"], 3);
    assert_eq!(q["queue"]["producer_lease"]["state"], "held");
    assert_eq!(row(&rows, &kept)["persistent"], true);
    let table = stdout(&shmproc(&["ls", "--prefix", shm.prefix()]));
    let line = table
        .lines()
        .find(|l| l.starts_with(&queue))
        .unwrap_or_else(|| panic!("{queue} not in\n{table}"));
    for word in ["Queue", "u64", &pid.to_string(), "yes", "ok", "3/8"] {
        assert!(
            line.split_whitespace().any(|w| w == word),
            "{word:?} not in {line:?}"
        );
    }
    let (ok, l) = inspect_json(&lock_name);
    assert!(ok);
    assert_eq!(l["lock"]["owner_pid"], pid);
    assert_eq!(l["lock"]["owner_died"], false);

    child.kill();
    let st = child.wait_timeout(TIMEOUT);
    assert_eq!(st.code(), -SIGKILL, "killed");

    // Dead: the unpersisted queue is an orphan, the persisted one is not;
    // the lock it held is reported as held by a dead process.
    let rows = ls_json(shm.prefix());
    let q = row(&rows, &queue);
    assert_eq!(q["creator_alive"], false);
    assert_eq!(q["orphan"], true);
    assert_eq!(q["fill"]["used"], 3, "messages stay until removed");
    let k = row(&rows, &kept);
    assert_eq!(
        (k["creator_alive"].clone(), k["orphan"].clone()),
        (false.into(), false.into())
    );
    assert_eq!(row(&rows, &live)["orphan"], false);
    let out = shmproc(&["inspect", &lock_name]);
    assert!(
        out.status.success(),
        "a lock whose holder died is not corrupt"
    );
    assert!(
        stdout(&out).contains(&format!("process {pid} (DIED holding it")),
        "{}",
        stdout(&out)
    );
    assert!(lock.try_lock().is_err(), "the next acquirer learns it died");

    let dry = stdout(&shmproc(&["clean", "--dry-run", "--prefix", shm.prefix()]));
    assert!(
        dry.contains(&format!(
            "would remove /dev/shm/{queue} (Queue, creator {pid} dead)"
        )),
        "{dry}"
    );
    assert!(dry.contains("1 segment(s) would be removed"), "{dry}");
    assert!(exists(&queue), "a dry run removes nothing");

    let out = shmproc(&["clean", "--prefix", shm.prefix()]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("removed /dev/shm/{queue}")),
        "{text}"
    );
    assert!(text.contains("1 segment(s) removed"), "{text}");
    assert!(!exists(&queue));
    assert!(exists(&kept), "persisted: kept");
    assert!(exists(&live) && exists(&lock_name), "live creator: kept");
    let again = stdout(&shmproc(&["clean", "--prefix", shm.prefix()]));
    assert!(again.contains("nothing to clean"), "{again}");

    Segment::remove(&kept).expect("remove the persisted queue");
}

#[test]
fn inspect_shows_live_state_of_a_queue_a_pipe_and_a_lock() {
    let shm = TestShm::new();
    let (qn, pn, ln) = (shm.name("queue"), shm.name("pipe"), shm.name("lock"));
    let q = Queue::<[u32; 4]>::create(&qn, 5).expect("create queue");
    for i in 0..4 {
        q.put([i; 4]).expect("put");
    }
    q.get().expect("get");
    let (mut a, _b) = Pipe::create(&pn).expect("create pipe");
    a.send_bytes(&[7u8; 100]).expect("send");
    let lock = Lock::create(&ln).expect("create lock");
    let _held = lock.lock().expect("lock");
    let me = std::process::id();

    let out = shmproc(&["inspect", &format!("/{qn}")]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    for want in [
        "kind            48 (Queue)",
        "state           2 (ready)",
        &format!("creator_pid     {me} (alive)"),
        "type name       [u32; 4]",
        "messages        3/5 (8 slots of 16 bytes, stride 64)",
        "head            1 (next to get)",
        "tail            4 (next to put)",
        "producer lease  held by thread",
        "asleep in get   0",
        "problems: none",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }

    let (ok, p) = inspect_json(&format!("/dev/shm/{pn}"));
    assert!(ok, "{p}");
    assert_eq!(p["kind"], "Pipe");
    assert_eq!(p["pipe"]["mode"], "duplex");
    assert_eq!(p["pipe"]["ends"][0]["owner_pid"], me);
    // End 0 wrote 100 bytes into ring 1: a 64-byte header line and 128 payload bytes.
    assert_eq!(p["pipe"]["rings"][1]["used"], 192);
    assert_eq!(p["pipe"]["rings"][0]["used"], 0);
    assert_eq!(p["fill"]["rings"], serde_json::json!([0, 192]));
    assert_eq!(p["header"]["creator_pid"], me);

    let out = shmproc(&["inspect", &ln]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains(&format!("holder          process {me} (alive)")),
        "{}",
        stdout(&out)
    );
    let table = stdout(&shmproc(&["ls", "--prefix", shm.prefix()]));
    assert!(table.contains(&format!("held by {me}")), "{table}");
    assert!(table.contains("0 B + 192 B of 1.0 MiB"), "{table}");
}

#[test]
fn corrupt_segments_are_reported_field_by_field_and_exit_1() {
    let shm = TestShm::new();
    let real = shm.name("real");
    let q = Queue::<u64>::create(&real, 4).expect("create");
    q.put(1).expect("put");
    let bytes = std::fs::read(Path::new("/dev/shm").join(&real)).expect("read the queue");
    let write = |tag: &str, b: &[u8]| {
        let name = shm.name(tag);
        std::fs::write(Path::new("/dev/shm").join(&name), b).expect("write /dev/shm");
        name
    };
    let patch = |b: &mut Vec<u8>, at: usize, v: &[u8]| {
        b.splice(at..at + v.len(), v.iter().copied());
    };

    // Truncated: shorter than a header.
    let truncated = write("trunc", bytes.get(..20).expect("20 bytes"));
    // Scribbled header: magic, version and length wrong.
    let mut b = bytes.clone();
    patch(&mut b, 0, b"SCRIBBLE");
    patch(&mut b, 8, &77u32.to_ne_bytes());
    patch(&mut b, 16, &12345u64.to_ne_bytes());
    let scribbled = write("scrib", &b);
    // A valid header over a ring whose sizes are out of range.
    let mut b = bytes.clone();
    patch(&mut b, DATA_OFFSET + 8, &3u64.to_ne_bytes()); // ring capacity
    patch(&mut b, DATA_OFFSET + 24, &7u64.to_ne_bytes()); // stride
    let bad_ring = write("ring", &b);
    // Noise.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let noisy = write("noise", &noise);

    let cases: [(&str, &[&str]); 4] = [
        (&truncated, &["file length", "(past the end of the file)"]),
        (
            &scribbled,
            &[
                "magic           0x454c424249524353  <- CORRUPT",
                "layout_version  77  <- CORRUPT: expected 1",
                "segment_len     12345  <- CORRUPT",
                "magic: found 0x454c424249524353 (\"SCRIBBLE\")",
            ],
        ),
        (
            &bad_ring,
            &[
                "ring capacity: found 3, expected a power of two",
                "ring capacity: found 3, expected 4 (the segment header's capacity)",
                "stride: found 7, expected 64",
            ],
        ),
        (&noisy, &["magic"]),
    ];
    for (name, wants) in cases {
        let out = shmproc(&["inspect", name]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains("CORRUPT: "), "{name}: {text}");
        for want in wants {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let (ok, j) = inspect_json(name);
        assert!(!ok);
        assert_eq!(j["corrupt"], true);
    }

    // Listed as corrupt; never cleaned, not even with --all (no pid in
    // their names, so nobody to judge).
    let rows = ls_json(shm.prefix());
    assert_eq!(row(&rows, &scribbled)["corrupt"], true);
    assert_eq!(row(&rows, &real)["corrupt"], false);
    let table = stdout(&shmproc(&["ls", "--prefix", shm.prefix()]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&truncated) && l.contains("corrupt")),
        "{table}"
    );
    let out = stdout(&shmproc(&["clean", "--all", "--prefix", shm.prefix()]));
    assert!(out.contains("nothing to clean"), "{out}");
    for name in [&truncated, &scribbled, &bad_ring, &noisy] {
        std::fs::remove_file(Path::new("/dev/shm").join(name)).expect("remove");
    }
}

#[test]
fn clean_all_removes_unreadable_leftovers_of_a_dead_pid() {
    // A pid that is dead: a child that ran and was reaped.
    let mut done = Command::new("true").spawn().expect("spawn true");
    let dead = done.id();
    done.wait().expect("reap");
    let name = format!(
        "shmproc-{dead:x}-{:012x}-clitest",
        os::random_u64() & 0xffff_ffff_ffff
    );
    let path = Path::new("/dev/shm").join(&name);
    let _guard = RemoveOnDrop(path.clone());
    std::fs::write(&path, b"half").expect("write /dev/shm");

    let plain = stdout(&shmproc(&["clean", "--dry-run", "--prefix", &name]));
    assert!(plain.contains("nothing to clean"), "{plain}");
    let dry = stdout(&shmproc(&[
        "clean",
        "--all",
        "--dry-run",
        "--prefix",
        &name,
    ]));
    assert!(
        dry.contains(&format!(
            "would remove /dev/shm/{name} (unreadable, pid {dead} in its name dead)"
        )),
        "{dry}"
    );
    assert!(path.exists());
    let out = stdout(&shmproc(&["clean", "--all", "--prefix", &name]));
    assert!(out.contains(&format!("removed /dev/shm/{name}")), "{out}");
    assert!(!path.exists());
}

#[test]
fn inspect_of_a_missing_segment_fails_cleanly() {
    let shm = TestShm::new();
    let out = shmproc(&["inspect", &shm.name("missing")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("UNREADABLE"), "{}", stdout(&out));
    assert!(stdout(&out).contains("does not exist"), "{}", stdout(&out));
    let out = shmproc(&["inspect", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("invalid segment name"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bench_lists_its_groups_and_refuses_an_unknown_one() {
    let out = shmproc(&["bench", "--list"]);
    assert!(out.status.success());
    let names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        ["queue", "pipe", "value", "process", "pool", "manager"]
    );
    let out = shmproc(&["bench", "no_such_group"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("queue"), "{}", stderr(&out));
}

/// A real (quick) run of one group, from any directory: the table, a JSON
/// file with every sample and ratio, an SVG chart.
#[test]
fn bench_quick_writes_json_and_an_svg_chart() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = std::env::temp_dir().join(format!("shmproc-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, svg) = (dir.join("out.json"), dir.join("out.svg"));
    let out = shmproc_in(
        Path::new("/"),
        &[
            "bench",
            "--quick",
            "--no-python",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--plot",
            svg.to_str().expect("utf-8 path"),
            "process",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("process / start + join of one process"),
        "{table}"
    );
    assert!(
        table.contains("shmproc_forkserver vs fork_exit_waitpid"),
        "{table}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    assert_eq!(v["quick"], true);
    let ms = v["measurements"].as_array().expect("measurements");
    let names: Vec<&str> = ms.iter().filter_map(|m| m["contestant"].as_str()).collect();
    for want in [
        "fork_exit_waitpid",
        "shmproc_fork",
        "shmproc_forkserver",
        "shmproc_spawn",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    for m in ms {
        assert_eq!(m["samples"].as_array().map(Vec::len), Some(3), "{m}");
        assert!(m["median"].as_f64().is_some_and(|x| x > 0.0), "{m}");
    }
    assert_eq!(v["ratios"].as_array().map(Vec::len), Some(3));

    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        svg_text.starts_with("<svg "),
        "{}",
        &svg_text[..80.min(svg_text.len())]
    );
    assert!(svg_text.trim_end().ends_with("</svg>"));
    assert!(svg_text.contains("start + join of one process"));
    assert_eq!(
        svg_text.matches("<text").count(),
        svg_text.matches("</text>").count()
    );
    assert!(svg_text.contains("<rect"));
    // A browser draws it: headless Chromium's screenshot, where installed
    // (CI installs it).
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    match chromium {
        Some(c) => {
            let png = dir.join("out.png");
            let _w = Watchdog::new(Duration::from_secs(90));
            let shot = Command::new(c)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1000,400",
                ])
                .arg(format!("--screenshot={}", png.display()))
                .arg(format!("file://{}", svg.display()))
                .output()
                .expect("run chromium");
            assert!(
                shot.status.success(),
                "{}",
                String::from_utf8_lossy(&shot.stderr)
            );
            let bytes = std::fs::read(&png).expect("screenshot written");
            assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
            assert!(
                bytes.len() > 5_000,
                "an empty picture: {} bytes",
                bytes.len()
            );
        }
        None => eprintln!("no chromium on PATH: the SVG render check is skipped"),
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
