//! Value, Array, RawValue and RawArray: named sharing across processes, a
//! byte Array as a string buffer, and sharing an anonymous one by fd.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.
#![allow(unsafe_code)] // The child adopts an inherited fd (`os::adopt_fd` is unsafe by contract).

use std::os::fd::AsRawFd;
use std::time::Duration;

use shmproc_sync::{Array, RawArray, RawValue, SetStrError, Value};
use shmproc_testing::{Child, TestShm, Watchdog, arg, arg_parsed, current_test, role};

const T: Duration = Duration::from_secs(20);

#[test]
fn child_writes_by_name_parent_reads() {
    if role().is_some() {
        let s = Array::<u8>::open(&arg("str").expect("str")).expect("open array");
        s.set_str("hello from the child").expect("fits");
        let v = Value::<f64>::open(&arg("value").expect("value")).expect("open value");
        v.store(v.load().expect("clean") * 2.0).expect("clean");
        let r = RawArray::<u32>::open_with_len(&arg("raw").expect("raw"), 4).expect("open raw");
        r.write_from(1, &[7, 8, 9]).expect("in bounds");
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let (sn, vn, rn) = (shm.name("str"), shm.name("value"), shm.name("raw"));
    let s = Array::create(&sn, 32, 0u8).expect("array");
    let v = Value::create(&vn, 1.25f64).expect("value");
    let r = RawArray::create(&rn, 4, 0u32).expect("raw array");
    Child::spawn(
        current_test!(),
        "writer",
        &[("str", &sn), ("value", &vn), ("raw", &rn)],
    )
    .expect("spawn")
    .expect_success(T);
    assert_eq!(s.to_string_lossy().expect("clean"), "hello from the child");
    assert_eq!(v.load().expect("clean"), 2.5);
    assert_eq!(r.to_vec(), [0, 7, 8, 9]);
}

#[test]
fn byte_array_string_rules() {
    let s = Array::<u8>::new(5, b'x').expect("array");
    assert_eq!(s.to_string_lossy().expect("clean"), "xxxxx");
    s.set_str("abc").expect("fits");
    assert_eq!(s.to_bytes().expect("clean"), b"abc");
    s.set_str("abcde").expect("fits exactly, no NUL");
    assert_eq!(s.to_string_lossy().expect("clean"), "abcde");
    assert!(matches!(
        s.set_str("abcdef"),
        Err(SetStrError::TooLong {
            len: 6,
            capacity: 5
        })
    ));
    assert_eq!(s.to_string_lossy().expect("clean"), "abcde", "unchanged");
    s.store(&[0xff, b'a', 0, b'b', b'c']).expect("clean");
    assert_eq!(s.to_string_lossy().expect("clean"), "\u{fffd}a");
}

#[test]
fn raw_value_and_array_in_process() {
    let v = RawValue::new([1u8, 2, 3]).expect("raw value");
    v.store([4, 5, 6]);
    assert_eq!(v.load(), [4, 5, 6]);
    let a = RawArray::from_slice(&[1i64, 2, 3]).expect("raw array");
    assert_eq!(a.len(), 3);
    assert_eq!(a.get(3), None);
    assert!(a.set(3, 0).is_err());
    let mut out = [0i64; 2];
    a.read_into(1, &mut out).expect("in bounds");
    assert_eq!(out, [2, 3]);
    assert!(a.read_into(2, &mut out).is_err());
}

#[test]
fn anonymous_value_shared_by_fd() {
    if role().is_some() {
        let raw: i32 = arg_parsed("fd");
        // SAFETY: the parent passed this inherited descriptor to us alone.
        let fd = unsafe { shmproc_shm::os::adopt_fd(raw) }.expect("inherited fd");
        let v = Value::<u32>::open_fd(fd).expect("open by fd");
        *v.lock_timeout(T).expect("clean") += 41;
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let v = Value::new(1u32).expect("anonymous value");
    assert!(v.name().is_none());
    let fd = v.inheritable_fd().expect("dup");
    let n = fd.as_raw_fd().to_string();
    let child = Child::spawn(current_test!(), "adder", &[("fd", &n)]).expect("spawn");
    drop(fd);
    child.expect_success(T);
    assert_eq!(v.load().expect("clean"), 42);
}
