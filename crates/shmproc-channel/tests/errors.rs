//! The queue errors' shapes: one enum per form, `'static + Send + Sync`,
//! `Debug` without `T: Debug`, a cause shown once, and the `_deadline`
//! forms.

use std::error::Error;
use std::time::{Duration, Instant};

use shmproc_channel::{
    ByteQueue, CommitError, GetError, GetTimeoutError, JoinTimeoutError, JoinableQueue,
    PutBytesError, PutBytesTimeoutError, PutError, PutTimeoutError, Queue, QueueError, SimpleQueue,
    TaskDoneError, TryGetError, TryPutBytesError, TryPutError,
};

fn is_error<E: Error + Send + Sync + 'static>() {}

#[test]
fn every_queue_error_is_a_static_send_sync_error() {
    is_error::<QueueError>();
    is_error::<PutError<u64>>();
    is_error::<TryPutError<[u8; 64]>>();
    is_error::<PutTimeoutError<u64>>();
    is_error::<GetError>();
    is_error::<TryGetError>();
    is_error::<GetTimeoutError>();
    is_error::<PutBytesError>();
    is_error::<TryPutBytesError>();
    is_error::<PutBytesTimeoutError>();
    is_error::<CommitError>();
    is_error::<TaskDoneError>();
    is_error::<JoinTimeoutError>();
    #[cfg(feature = "serde")]
    {
        is_error::<shmproc_channel::PutObjError>();
        is_error::<shmproc_channel::TryPutObjError>();
        is_error::<shmproc_channel::PutObjTimeoutError>();
        is_error::<shmproc_channel::GetObjError>();
        is_error::<shmproc_channel::TryGetObjError>();
        is_error::<shmproc_channel::GetObjTimeoutError>();
    }
}

#[test]
fn question_mark_works_into_a_boxed_error() {
    fn run() -> Result<u32, Box<dyn Error + Send + Sync>> {
        let q = Queue::<u32>::new(1)?;
        q.put(1)?;
        q.try_put(2)
            .or_else(|e| if e.is_full() { Ok(()) } else { Err(e) })?;
        q.put_timeout(3, Duration::ZERO)
            .or_else(|e| if e.is_timeout() { Ok(()) } else { Err(e) })?;
        let v = q.get()?;
        q.try_get()
            .or_else(|e| if e.is_empty() { Ok(0) } else { Err(e) })?;
        Ok(v + q.get_timeout(Duration::ZERO).unwrap_or(0))
    }
    assert_eq!(run().expect("run"), 1);
}

#[test]
fn debug_does_not_need_the_value_to_be_debug() {
    struct Opaque;
    assert_eq!(format!("{:?}", TryPutError::Full(Opaque)), "Full(..)");
    assert_eq!(format!("{:?}", PutError::Closed(Opaque)), "Closed(..)");
    assert_eq!(
        format!("{:?}", PutTimeoutError::Timeout(Opaque)),
        "Timeout(..)"
    );
    assert_eq!(TryPutError::Full(7u8).into_inner(), Some(7));
    assert_eq!(PutTimeoutError::Closed(8u8).into_inner(), Some(8));
}

#[test]
fn a_wrapped_cause_is_shown_once() {
    let e = Queue::<u8>::open("/shmproc-test-no-such-queue").expect_err("missing");
    // What failed and why in the message; the OS error once, as the source.
    let source = e.source().expect("the OS error is the source").to_string();
    assert!(!e.to_string().contains(&source), "{e} repeats {source}");
    assert_eq!(
        e.to_string(),
        "cannot open queue: segment /shmproc-test-no-such-queue does not exist"
    );
    assert!(e.source().and_then(|s| s.source()).is_none(), "said once");
}

#[test]
fn deadline_forms_wait_until_the_instant() {
    let q = Queue::<u32>::new(1).expect("create");
    let past = Instant::now();
    assert_eq!(q.get_deadline(past), Err(GetTimeoutError::Timeout));
    q.put_deadline(1, past)
        .expect("one attempt even past the deadline");
    let d = Duration::from_millis(20);
    let t0 = Instant::now();
    assert_eq!(q.put_deadline(2, t0 + d), Err(PutTimeoutError::Timeout(2)));
    assert!(t0.elapsed() >= d);
    assert_eq!(q.get_deadline(past), Ok(1));
    let t0 = Instant::now();
    assert!(matches!(
        q.get_ref_deadline(t0 + d),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t0.elapsed() >= d);
    // A timeout too large for an Instant waits as long as it takes.
    q.put_timeout(3, Duration::MAX).expect("room");
    assert_eq!(q.get_timeout(Duration::MAX), Ok(3));

    let s = SimpleQueue::<u32>::with_capacity(1).expect("create");
    assert_eq!(s.get_deadline(past), Err(GetTimeoutError::Timeout));

    let j = JoinableQueue::<u32>::new(2).expect("create");
    j.put_deadline(5, past).expect("room");
    assert_eq!(
        j.join_deadline(past),
        Err(JoinTimeoutError { unfinished: 1 })
    );
    assert_eq!(j.try_get(), Ok(5));
    j.task_done().expect("one task");
    j.join_deadline(past).expect("none left");

    let b = ByteQueue::new(1, 64).expect("create");
    b.put_bytes_deadline(b"x", past).expect("room");
    assert!(matches!(
        b.put_bytes_deadline(b"y", past),
        Err(PutBytesTimeoutError::Timeout)
    ));
    assert!(matches!(
        b.reserve_deadline(1, past),
        Err(PutBytesTimeoutError::Timeout)
    ));
    assert_eq!(b.get_bytes_deadline(past).expect("message"), b"x");
    assert_eq!(b.get_bytes_deadline(past), Err(GetTimeoutError::Timeout));
    assert!(matches!(
        b.get_bytes_ref_deadline(past),
        Err(GetTimeoutError::Timeout)
    ));
}

#[test]
fn plain_forms_report_only_what_can_happen() {
    let q = Queue::<u32>::new(2).expect("create");
    q.close();
    // `put` and `get` have no Full, Empty or Timeout to match.
    match q.put(1) {
        Err(PutError::Closed(v)) => assert_eq!(v, 1),
        other => panic!("{other:?}"),
    }
    match q.get() {
        Err(e) => assert!(e.is_closed()),
        Ok(v) => panic!("{v}"),
    }
    assert_eq!(q.put_many(&[1, 2]), Err(PutError::Closed(())));
    assert_eq!(q.get_many(&mut Vec::new(), 2), Err(GetError::Closed));
    let b = ByteQueue::new(1, 64).expect("create");
    b.close();
    assert!(b.put_bytes(b"x").is_err_and(|e| e.is_closed()));
    assert!(b.try_put_bytes(b"x").is_err_and(|e| e.is_closed()));
}
