//! Property test: random operation sequences on one process agree with a
//! `VecDeque` of the same capacity.
#![cfg(not(shmproc_loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use shmproc_channel::{Queue, TryGetError, TryPutError};

#[derive(Debug, Clone)]
enum Op {
    Put(u32),
    Get,
    GetRef,
    PutMany(Vec<u32>),
    GetMany(usize),
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u32>().prop_map(Op::Put),
        3 => Just(Op::Get),
        1 => Just(Op::GetRef),
        1 => prop::collection::vec(any::<u32>(), 0..6).prop_map(Op::PutMany),
        1 => (0usize..6).prop_map(Op::GetMany),
        1 => Just(Op::Check),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn queue_matches_vecdeque(cap_log in 0u32..5, ops in prop::collection::vec(op(), 0..200)) {
        let cap = 1usize << cap_log;
        let q = Queue::<u32>::new(cap).expect("create");
        let mut m = VecDeque::new();
        for op in ops {
            match op {
                Op::Put(v) => match q.try_put(v) {
                    Ok(()) => { prop_assert!(m.len() < cap); m.push_back(v); }
                    Err(TryPutError::Full(x)) => prop_assert!(x == v && m.len() == cap),
                    Err(e) => prop_assert!(false, "{e:?}"),
                },
                Op::Get => match q.try_get() {
                    Ok(v) => prop_assert_eq!(Some(v), m.pop_front()),
                    Err(TryGetError::Empty) => prop_assert!(m.is_empty()),
                    Err(e) => prop_assert!(false, "{e:?}"),
                },
                Op::GetRef => match q.try_get_ref() {
                    Ok(g) => prop_assert_eq!(Some(*g), m.pop_front()),
                    Err(TryGetError::Empty) => prop_assert!(m.is_empty()),
                    Err(e) => prop_assert!(false, "{e:?}"),
                },
                Op::PutMany(vs) => {
                    let k = q.put_many(&vs).expect("open queue");
                    prop_assert_eq!(k, vs.len().min(cap - m.len()));
                    m.extend(vs.iter().take(k));
                }
                Op::GetMany(n) => {
                    let mut out = Vec::new();
                    let k = q.get_many(&mut out, n).expect("open queue");
                    prop_assert_eq!(k, n.min(m.len()));
                    let want: Vec<u32> = m.drain(..k).collect();
                    prop_assert_eq!(out, want);
                }
                Op::Check => {
                    prop_assert_eq!(q.qsize(), m.len());
                    prop_assert_eq!(q.empty(), m.is_empty());
                    prop_assert_eq!(q.full(), m.len() == cap);
                }
            }
        }
    }
}
