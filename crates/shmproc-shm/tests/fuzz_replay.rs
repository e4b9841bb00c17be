//! Replays the fuzz corpora and the saved regression inputs of `fuzz/` on
//! stable, with no fuzzer: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same library entry point as
//! the cargo-fuzz target, so a regression fails `cargo test` with its panic.
//!
//! Also holds the seed generator of `fuzz/corpus/segment_open/`:
//! `cargo test -p shmproc-shm --test fuzz_replay -- --ignored write_segment_open_seeds`.

use std::fs::File;
use std::io::Write;
use std::mem::offset_of;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use shmproc_shm::{
    HEADER_LEN, LAYOUT_VERSION, MAGIC, OpenOptions, STATE_INITIALIZING, STATE_POISONED,
    STATE_UNINIT, Segment, SegmentHeader, SegmentKind, SegmentLayout, ShmBox, ShmSlice, TypeSpec,
};
use shmproc_testing::{replay_fuzz_corpus, write_fuzz_seeds};

// ---------------------------------------------------------------------------
// Replay. One line per fuzz target.

#[test]
fn replay_segment_open() {
    replay_fuzz_corpus("segment_open", shmproc_shm::__private::segment_open);
}

// ---------------------------------------------------------------------------
// Seeds of `segment_open`. An input is one byte that picks the expectation
// (`pick % 4`: 0 `ShmSlice<u32>`, 1 `ShmBox<u64>`, 2 raw bytes, 3 kind `pick`
// of `u8` with capacity `pick`), then the segment's bytes. Valid segments are
// made by the library itself and dumped, so the fingerprints are the real
// ones; the corrupt ones patch single header fields of those.

/// Writes the seeds to `fuzz/corpus/segment_open/seed-<name>` (run by hand;
/// `cargo fuzz cmin` renames what it keeps to content hashes).
#[test]
#[ignore = "writes into fuzz/corpus/segment_open; run by hand to regenerate the seeds"]
fn write_segment_open_seeds() {
    write_fuzz_seeds(
        "segment_open",
        segment_open_seeds().into_iter().map(|s| (s.name, s.data)),
    );
}

/// Each seed opens, or fails to open, as its name says, so the corpus starts
/// on both sides of every check.
#[test]
fn segment_open_seeds_are_meaningful() {
    let seeds = segment_open_seeds();
    assert!(seeds.iter().filter(|s| s.opens).count() >= 8);
    for seed in &seeds {
        let got = open_like_segment_open(&seed.data);
        assert_eq!(
            got.is_ok(),
            seed.opens,
            "seed {}: expected {}, got {got:?}",
            seed.name,
            if seed.opens { "a handle" } else { "an error" },
        );
        shmproc_shm::__private::segment_open(&seed.data);
    }
}

/// What `shmproc_shm::__private::segment_open` opens, with a zero init timeout.
fn open_like_segment_open(data: &[u8]) -> Result<Segment, String> {
    let (&pick, bytes) = data.split_first().ok_or("empty input")?;
    let fd = memfd_with(bytes);
    let opts = match pick % 4 {
        0 => OpenOptions::new(SegmentKind::SLICE, TypeSpec::of::<u32>())
            .payload_len(|c| c.checked_mul(4)),
        1 => OpenOptions::new(SegmentKind::BOX, TypeSpec::of::<u64>()).payload_len(|_| Some(8)),
        2 => OpenOptions::new(SegmentKind::RAW, TypeSpec::bytes()),
        _ => OpenOptions::new(SegmentKind(u32::from(pick)), TypeSpec::of::<u8>())
            .capacity(u64::from(pick)),
    };
    let seg = opts
        .init_timeout(Duration::ZERO)
        .open_fd(fd)
        .map_err(|e| e.to_string())?;
    // The typed handles open too (their states are ready: no waiting).
    match pick % 4 {
        0 => drop(ShmSlice::<u32>::open_fd(seg.fd().try_clone_to_owned().unwrap()).unwrap()),
        1 => drop(ShmBox::<u64>::open_fd(seg.fd().try_clone_to_owned().unwrap()).unwrap()),
        _ => {}
    }
    Ok(seg)
}

fn memfd_with(bytes: &[u8]) -> OwnedFd {
    let fd = shmproc_shm::os::memfd_create(c"seed").expect("memfd_create");
    let mut f = File::from(fd);
    f.write_all(bytes).expect("write the segment");
    OwnedFd::from(f)
}

struct Seed {
    name: String,
    data: Vec<u8>,
    opens: bool,
}

/// The bytes of a live segment, read through its fd.
fn dump(seg: &Segment) -> Vec<u8> {
    let mut buf = vec![0; seg.len()];
    let f = File::from(seg.fd().try_clone_to_owned().expect("dup"));
    f.read_exact_at(&mut buf, 0).expect("read the segment");
    buf
}

fn with_pick(pick: u8, seg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(seg.len() + 1);
    v.push(pick);
    v.extend_from_slice(seg);
    v
}

fn put32(seg: &mut [u8], at: usize, v: u32) {
    seg[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(seg: &mut [u8], at: usize, v: u64) {
    seg[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get64(seg: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(seg[at..at + 8].try_into().unwrap())
}

const MAGIC_AT: usize = offset_of!(SegmentHeader, magic);
const VERSION_AT: usize = offset_of!(SegmentHeader, layout_version);
const HEADER_LEN_AT: usize = offset_of!(SegmentHeader, header_len);
const SEGMENT_LEN_AT: usize = offset_of!(SegmentHeader, segment_len);
const FINGERPRINT_AT: usize = offset_of!(SegmentHeader, fingerprint);
const KIND_AT: usize = offset_of!(SegmentHeader, kind);
const STATE_AT: usize = offset_of!(SegmentHeader, state);
const PID_AT: usize = offset_of!(SegmentHeader, creator_pid);
const FLAGS_AT: usize = offset_of!(SegmentHeader, flags);
const CAPACITY_AT: usize = offset_of!(SegmentHeader, capacity);
const SESSION_AT: usize = offset_of!(SegmentHeader, session);

/// A `ShmSlice<u32>` segment of `cap` elements, built by hand (for shapes the
/// library refuses to create, like capacity 0, or lies about the capacity).
fn slice_u32_by_hand(cap: u64, payload: usize) -> Vec<u8> {
    let mut s = vec![0u8; 128 + payload];
    put64(&mut s, MAGIC_AT, MAGIC);
    put32(&mut s, VERSION_AT, LAYOUT_VERSION);
    put32(&mut s, HEADER_LEN_AT, HEADER_LEN);
    let len = s.len() as u64;
    put64(&mut s, SEGMENT_LEN_AT, len);
    let fp = TypeSpec::of::<u32>().with_capacity(cap).fingerprint();
    put64(&mut s, FINGERPRINT_AT, fp);
    put32(&mut s, KIND_AT, SegmentKind::SLICE.0);
    put32(&mut s, STATE_AT, shmproc_shm::STATE_READY);
    put32(&mut s, PID_AT, 1);
    put64(&mut s, CAPACITY_AT, cap);
    s
}

fn segment_open_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |name: &str, data: Vec<u8>, opens: bool| {
        seeds.push(Seed {
            name: name.to_owned(),
            data,
            opens,
        });
    };

    // Valid segments of each expectation, made by the library.
    let slice4 = {
        let s = ShmSlice::<u32>::new(4, 0).unwrap();
        s.write_from(0, &[1, 2, 3, 0xdead_beef]).unwrap();
        dump(s.segment())
    };
    for len in [1usize, 3, 33] {
        let s = ShmSlice::<u32>::new(len, 0x0102_0304).unwrap();
        add(
            &format!("ok-slice-u32-len{len}"),
            with_pick(0, &dump(s.segment())),
            true,
        );
    }
    add("ok-slice-u32-len4", with_pick(0, &slice4), true);
    add("ok-slice-u32-len4-pick4", with_pick(4, &slice4), true);
    add(
        "ok-slice-u32-len0-by-hand",
        with_pick(0, &slice_u32_by_hand(0, 0)),
        true,
    );
    add(
        "ok-slice-u32-len2-by-hand",
        with_pick(0, &slice_u32_by_hand(2, 8)),
        true,
    );

    let box64 = dump(ShmBox::new(0x0123_4567_89ab_cdef_u64).unwrap().segment());
    add("ok-box-u64", with_pick(1, &box64), true);
    add(
        "ok-box-u64-max",
        with_pick(1, &dump(ShmBox::new(u64::MAX).unwrap().segment())),
        true,
    );

    let raw = |payload: u64| {
        let layout = SegmentLayout::new(SegmentKind::RAW, TypeSpec::bytes(), payload);
        dump(&Segment::create_anonymous(&layout).unwrap().publish())
    };
    let raw64 = raw(64);
    add("ok-raw-1", with_pick(2, &raw(1)), true);
    add("ok-raw-64", with_pick(2, &raw64), true);
    add("ok-raw-1000", with_pick(2, &raw(1000)), true);

    for pick in [3u8, 19, 35, 51, 255] {
        let k = u64::from(pick);
        let layout = SegmentLayout::new(
            SegmentKind(u32::from(pick)),
            TypeSpec::of::<u8>().with_capacity(k),
            k,
        );
        let seg = dump(&Segment::create_anonymous(&layout).unwrap().publish());
        add(
            &format!("ok-kind{pick}-u8-cap{pick}"),
            with_pick(pick, &seg),
            true,
        );
        // The same segment expected as another kind and capacity.
        add(
            &format!("err-kind{pick}-as-kind7"),
            with_pick(7, &seg),
            false,
        );
    }

    // Cross-expectation mismatches: a valid segment of one sort opened as another.
    add("err-slice-as-box", with_pick(1, &slice4), false);
    add("err-slice-as-raw", with_pick(2, &slice4), false);
    add("err-box-as-slice", with_pick(0, &box64), false);
    add("err-raw-as-slice", with_pick(0, &raw64), false);
    add("err-raw-as-kind3", with_pick(3, &raw64), false);

    // One header field of the len-4 slice corrupted at a time.
    let patched = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut s = slice4.clone();
        f(&mut s);
        with_pick(0, &s)
    };
    add("err-magic-flipped", patched(&|s| s[MAGIC_AT] ^= 1), false);
    add("err-magic-zero", patched(&|s| put64(s, MAGIC_AT, 0)), false);
    add(
        "err-magic-byteswapped",
        patched(&|s| put64(s, MAGIC_AT, MAGIC.swap_bytes())),
        false,
    );
    for v in [0u32, 2, u32::MAX] {
        add(
            &format!("err-version-{v:x}"),
            patched(&|s| put32(s, VERSION_AT, v)),
            false,
        );
    }
    for v in [0u32, 63, 65, 128, u32::MAX] {
        add(
            &format!("err-header-len-{v:x}"),
            patched(&|s| put32(s, HEADER_LEN_AT, v)),
            false,
        );
    }
    let len = slice4.len() as u64;
    for (tag, v) in [
        ("plus1", len + 1),
        ("plus4096", len + 4096),
        ("max", u64::MAX),
        ("minus1", len - 1),
        ("minus4", len - 4),
        ("128", 128),
        ("0", 0),
    ] {
        add(
            &format!("err-segment-len-{tag}"),
            patched(&|s| put64(s, SEGMENT_LEN_AT, v)),
            false,
        );
    }
    for (tag, v) in [
        ("box", SegmentKind::BOX.0),
        ("0", 0),
        ("queue", SegmentKind::QUEUE.0),
        ("max", u32::MAX),
    ] {
        add(
            &format!("err-kind-{tag}"),
            patched(&|s| put32(s, KIND_AT, v)),
            false,
        );
    }
    let fp_of = |t: TypeSpec| t.fingerprint();
    for (tag, v) in [
        ("flipped", get64(&slice4, FINGERPRINT_AT) ^ 1),
        ("f32", fp_of(TypeSpec::of::<f32>().with_capacity(4))),
        ("i32", fp_of(TypeSpec::of::<i32>().with_capacity(4))),
        ("u32-cap5", fp_of(TypeSpec::of::<u32>().with_capacity(5))),
        ("u32-cap0", fp_of(TypeSpec::of::<u32>())),
        ("0", 0),
    ] {
        add(
            &format!("err-fingerprint-{tag}"),
            patched(&|s| put64(s, FINGERPRINT_AT, v)),
            false,
        );
    }
    // Capacity changed: the fingerprint (which covers it) no longer matches.
    for v in [0u64, 5, u64::MAX] {
        add(
            &format!("err-capacity-{v:x}"),
            patched(&|s| put64(s, CAPACITY_AT, v)),
            false,
        );
    }
    // Fingerprint and capacity agree, but the payload is the wrong size
    // (or the byte count overflows).
    for (tag, cap) in [
        ("5", 5u64),
        ("3", 3),
        ("huge", 1 << 61),
        ("overflow", u64::MAX / 4 + 1),
        ("max", u64::MAX),
        ("isize-max", isize::MAX as u64),
    ] {
        let fp = fp_of(TypeSpec::of::<u32>().with_capacity(cap));
        add(
            &format!("err-capacity-{tag}-with-fingerprint"),
            patched(&|s| {
                put64(s, CAPACITY_AT, cap);
                put64(s, FINGERPRINT_AT, fp);
            }),
            false,
        );
    }
    // Fields nobody validates: still a valid segment.
    add(
        "ok-flags-set",
        patched(&|s| put32(s, FLAGS_AT, u32::MAX)),
        true,
    );
    add(
        "ok-session-set",
        patched(&|s| put64(s, SESSION_AT, u64::MAX)),
        true,
    );
    add("ok-creator-pid-0", patched(&|s| put32(s, PID_AT, 0)), true);
    add(
        "ok-spare-line-garbage",
        patched(&|s| s[64..128].fill(0xa5)),
        true,
    );

    // Publication states. The entry point must never wait on these.
    add(
        "err-state-uninit",
        patched(&|s| put32(s, STATE_AT, STATE_UNINIT)),
        false,
    );
    add(
        "err-state-poisoned",
        patched(&|s| put32(s, STATE_AT, STATE_POISONED)),
        false,
    );
    add("err-state-4", patched(&|s| put32(s, STATE_AT, 4)), false);
    add(
        "err-state-garbage",
        patched(&|s| put32(s, STATE_AT, 0x8000_0002)),
        false,
    );
    for (tag, pid) in [
        ("live-pid1", 1u32),
        ("dead-pid-i32max", i32::MAX as u32),
        ("pid0", 0),
        ("pid-negative", 0x8000_0000),
        ("pid-max", u32::MAX),
    ] {
        let data = patched(&|s| {
            put32(s, STATE_AT, STATE_INITIALIZING);
            put32(s, PID_AT, pid);
        });
        add(&format!("err-state-initialising-{tag}"), data, false);
    }
    add(
        "err-state-uninit-magic-zero",
        patched(&|s| {
            put32(s, STATE_AT, STATE_UNINIT);
            put64(s, MAGIC_AT, 0);
        }),
        false,
    );
    // A box initialising under a live creator (pick 1 path).
    let mut b = box64.clone();
    put32(&mut b, STATE_AT, STATE_INITIALIZING);
    put32(&mut b, PID_AT, 1);
    add("err-box-initialising-live-pid1", with_pick(1, &b), false);

    // Sizes: empty, shorter than the header or the data offset, extended.
    for pick in [0u8, 1, 2, 3] {
        add(&format!("err-empty-pick{pick}"), vec![pick], false);
    }
    for n in [1usize, 8, 63, 64, 127] {
        add(
            &format!("err-truncated-{n}"),
            with_pick(0, &slice4[..n]),
            false,
        );
    }
    add(
        "err-truncated-payload",
        with_pick(0, &slice4[..slice4.len() - 1]),
        false,
    );
    add("err-header-only-128", with_pick(0, &slice4[..128]), false);
    let mut longer = slice4.clone();
    longer.extend_from_slice(&[0xff; 4]);
    add("err-extended-by-4", with_pick(0, &longer), false);
    add("err-all-zero-256", vec![0; 257], false);
    add("err-all-ff-256", vec![0xff; 257], false);
    seeds
}
