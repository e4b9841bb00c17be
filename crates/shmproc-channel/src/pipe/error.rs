//! The pipe's errors: [`ConnectionError`] for making and opening a pipe,
//! and one family per operation in crossbeam's shape (see
//! `notes/error-shapes.md`): the blocking form's error (`RecvError`,
//! `SendError`, `PollError`), the `try_` form's, which adds "not now"
//! (`TryRecvError::Empty`, `TrySendError::Full`), and the `_timeout` /
//! `_deadline` forms', which adds `Timeout`. A caller of a blocking form
//! never matches `Empty`, `Full` or `Timeout`.
//!
//! Every enum is `#[non_exhaustive]`, `Copy` where it can be, and
//! `Send + Sync + 'static`. The serde forms wrap the byte form's error with
//! the encode or decode error ([`SendObjError`], [`RecvObjError`]), so
//! turning the feature on adds types, never variants.

use shmproc_shm::SetupError;

use crate::error::Corrupt;

/// Creating or opening a pipe failed (setup only: each operation has its
/// own error): the workspace's one setup error, [`SetupError`], under this
/// crate's name.
pub type ConnectionError = SetupError;

/// A passed connection could not be claimed in the receiving process.
impl From<ClaimError> for SetupError {
    fn from(e: ClaimError) -> Self {
        SetupError::Unavailable {
            what: "Connection",
            source: Box::new(e),
        }
    }
}

/// [`Connection::claim_now`](super::Connection::claim_now) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// This end was closed.
    #[error("this end of the pipe is closed")]
    Closed,
    /// Another process took this end over (one end, one process at a time).
    #[error("this end of the pipe is now used by process {owner}")]
    NotOwner {
        /// The pid of the process that uses the end now.
        owner: u32,
    },
}

// ---- recv

/// Generates `RecvError`, `TryRecvError` and `RecvTimeoutError` with the
/// same shared variants (hand-written `From<RecvError>` below).
macro_rules! recv_errors {
    ($( $(#[$meta:meta])* $name:ident { $($(#[$xmeta:meta])* $extra:ident,)* } )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$xmeta])* $extra, )*
            /// Nothing more to read: the peer closed its end (or its
            /// process died) and every message it sent was received
            /// (Python's `EOFError`).
            #[error("end of file: the peer closed the pipe")]
            Eof,
            /// The peer died in the middle of a message longer than the
            /// ring; the part received is dropped and the end cannot be
            /// read further.
            #[error("the peer died in the middle of a message")]
            Truncated,
            /// This end was closed.
            #[error("this end of the pipe is closed")]
            Closed,
            /// Another process took this end over (one end, one process at
            /// a time).
            #[error("this end of the pipe is now used by process {owner}")]
            NotOwner {
                /// The pid of the process that uses the end now.
                owner: u32,
            },
            /// This is the sending end of a one-way pipe.
            #[error("this end of a one-way pipe only sends")]
            WrongDirection,
            /// The next message is longer than the limit asked for
            /// (`recv_bytes_max`) or the buffer (`recv_bytes_into`,
            /// Python's `BufferTooShort`); it stays readable.
            #[error("the message is {len} bytes, more than the {max} allowed")]
            TooLong {
                /// The message's length.
                len: u64,
                /// The limit, or the buffer's length.
                max: u64,
            },
            /// The next message does not have the size of the `Pod` value
            /// asked for (`recv`); it stays readable.
            #[error("the message is {found} bytes, the value {expected}")]
            WrongSize {
                /// `size_of` the value.
                expected: u64,
                /// The message's length.
                found: u64,
            },
            /// No memory for the next message (the forms that return a
            /// `Vec`). One that fits the ring stays readable; a longer one
            /// (streamed: its `Vec` grows as its bytes arrive, never ahead
            /// of them) is consumed.
            #[error("cannot allocate {len} bytes for the message")]
            NoMemory {
                /// The message's length.
                len: u64,
            },
            /// The pipe's memory is inconsistent (see [`Corrupt`]).
            #[error(transparent)]
            Corrupt(#[from] Corrupt),
        }

        impl From<ClaimError> for $name {
            fn from(e: ClaimError) -> Self {
                match e {
                    ClaimError::Closed => Self::Closed,
                    ClaimError::NotOwner { owner } => Self::NotOwner { owner },
                }
            }
        }

        impl $name {
            /// Whether this is the end of the stream ([`Eof`](Self::Eof)).
            pub fn is_eof(&self) -> bool {
                matches!(self, Self::Eof)
            }
        }
    )*};
}

recv_errors! {
    /// A blocking receive failed (`recv_bytes`, `recv_bytes_max`,
    /// `recv_bytes_into`, `recv_bytes_ref`, `recv`): nothing was received.
    /// Which variants each method returns is in its `# Errors`.
    RecvError {}

    /// A `try_recv*` call received nothing.
    TryRecvError {
        /// No message is waiting (and the peer is open).
        #[error("no message is waiting")]
        Empty,
    }

    /// A `recv*_timeout` or `recv*_deadline` call received nothing.
    RecvTimeoutError {
        /// No message started before the deadline.
        #[error("timed out waiting for a message")]
        Timeout,
    }
}

impl TryRecvError {
    /// Whether no message was waiting ([`Empty`](Self::Empty)).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }
}

impl RecvTimeoutError {
    /// Whether the deadline passed ([`Timeout`](Self::Timeout)).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

macro_rules! from_recv_error {
    ($($name:ident),*) => {$(
        impl From<RecvError> for $name {
            fn from(e: RecvError) -> Self {
                match e {
                    RecvError::Eof => Self::Eof,
                    RecvError::Truncated => Self::Truncated,
                    RecvError::Closed => Self::Closed,
                    RecvError::NotOwner { owner } => Self::NotOwner { owner },
                    RecvError::WrongDirection => Self::WrongDirection,
                    RecvError::TooLong { len, max } => Self::TooLong { len, max },
                    RecvError::WrongSize { expected, found } => Self::WrongSize { expected, found },
                    RecvError::NoMemory { len } => Self::NoMemory { len },
                    RecvError::Corrupt(c) => Self::Corrupt(c),
                }
            }
        }
    )*};
}
from_recv_error!(TryRecvError, RecvTimeoutError);

// ---- send

macro_rules! send_errors {
    ($( $(#[$meta:meta])* $name:ident { $($(#[$xmeta:meta])* $extra:ident,)* } )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$xmeta])* $extra, )*
            /// The peer closed its end or its process died: nothing can be
            /// sent (Python's `BrokenPipeError`).
            #[error("broken pipe: the peer closed the pipe")]
            BrokenPipe,
            /// This end was closed.
            #[error("this end of the pipe is closed")]
            Closed,
            /// Another process took this end over (one end, one process at
            /// a time).
            #[error("this end of the pipe is now used by process {owner}")]
            NotOwner {
                /// The pid of the process that uses the end now.
                owner: u32,
            },
            /// This is the receiving end of a one-way pipe.
            #[error("this end of a one-way pipe only receives")]
            WrongDirection,
            /// The message is longer than
            /// [`MAX_PIPE_MESSAGE_LEN`](super::MAX_PIPE_MESSAGE_LEN), or a
            /// reservation (`reserve`) longer than the ring minus one line
            /// (use `send_bytes`).
            #[error("the message is {len} bytes, more than the {max} allowed")]
            TooLong {
                /// The message's length.
                len: u64,
                /// The limit.
                max: u64,
            },
            /// The pipe's memory is inconsistent (see [`Corrupt`]).
            #[error(transparent)]
            Corrupt(#[from] Corrupt),
        }

        impl From<ClaimError> for $name {
            fn from(e: ClaimError) -> Self {
                match e {
                    ClaimError::Closed => Self::Closed,
                    ClaimError::NotOwner { owner } => Self::NotOwner { owner },
                }
            }
        }

        impl $name {
            /// Whether the peer is gone ([`BrokenPipe`](Self::BrokenPipe)).
            pub fn is_broken_pipe(&self) -> bool {
                matches!(self, Self::BrokenPipe)
            }
        }
    )*};
}

send_errors! {
    /// A blocking send failed (`send_bytes`, `send_bytes_range`, `send`,
    /// `reserve`): nothing was sent.
    SendError {}

    /// A `try_send*` (or `try_reserve`) call sent nothing.
    TrySendError {
        /// The ring has no room for the message now.
        #[error("the pipe is full")]
        Full,
    }

    /// A `send*_timeout` or `send*_deadline` (or `reserve_*`) call sent
    /// nothing.
    SendTimeoutError {
        /// The ring had no room for the message before the deadline.
        #[error("timed out waiting for room in the pipe")]
        Timeout,
    }
}

impl TrySendError {
    /// Whether the ring was full ([`Full`](Self::Full)).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }
}

impl SendTimeoutError {
    /// Whether the deadline passed ([`Timeout`](Self::Timeout)).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

macro_rules! from_send_error {
    ($($name:ident),*) => {$(
        impl From<SendError> for $name {
            fn from(e: SendError) -> Self {
                match e {
                    SendError::BrokenPipe => Self::BrokenPipe,
                    SendError::Closed => Self::Closed,
                    SendError::NotOwner { owner } => Self::NotOwner { owner },
                    SendError::WrongDirection => Self::WrongDirection,
                    SendError::TooLong { len, max } => Self::TooLong { len, max },
                    SendError::Corrupt(c) => Self::Corrupt(c),
                }
            }
        }
    )*};
}
from_send_error!(TrySendError, SendTimeoutError);

// ---- poll

/// [`Connection::poll`](super::Connection::poll) or
/// [`poll_deadline`](super::Connection::poll_deadline) failed (a message,
/// EOF and the deadline passing are `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// This end was closed.
    #[error("this end of the pipe is closed")]
    Closed,
    /// Another process took this end over.
    #[error("this end of the pipe is now used by process {owner}")]
    NotOwner {
        /// The pid of the process that uses the end now.
        owner: u32,
    },
    /// This is the sending end of a one-way pipe.
    #[error("this end of a one-way pipe only sends")]
    WrongDirection,
    /// The pipe's memory is inconsistent (see [`Corrupt`]).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

impl From<ClaimError> for PollError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Closed => Self::Closed,
            ClaimError::NotOwner { owner } => Self::NotOwner { owner },
        }
    }
}

// ---- serde

/// `send_obj`, `try_send_obj` or `send_obj_timeout`/`_deadline` sent
/// nothing (feature `serde`): the object could not be encoded, or the send
/// failed with `E` ([`SendError`], [`TrySendError`] or [`SendTimeoutError`]).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendObjError<E = SendError> {
    /// The object could not be encoded (postcard).
    #[error("cannot encode the object")]
    Encode(#[source] postcard::Error),
    /// The send failed.
    #[error(transparent)]
    Send(E),
}

/// `recv_obj`, `try_recv_obj` or `recv_obj_timeout`/`_deadline` returned no
/// object (feature `serde`): the receive failed with `E` ([`RecvError`],
/// [`TryRecvError`] or [`RecvTimeoutError`]), or the message is not a
/// valid encoding of the type asked for.
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvObjError<E = RecvError> {
    /// The message is not a valid encoding of the type asked for (postcard);
    /// it was consumed, and the pipe stays usable.
    #[error("cannot decode the message")]
    Decode(#[source] postcard::Error),
    /// The receive failed.
    #[error(transparent)]
    Recv(E),
}

#[cfg(feature = "serde")]
impl<E> SendObjError<E> {
    /// The send's error, if the encoding succeeded.
    pub fn send_error(&self) -> Option<&E> {
        match self {
            Self::Send(e) => Some(e),
            Self::Encode(_) => None,
        }
    }
}

#[cfg(feature = "serde")]
impl<E> RecvObjError<E> {
    /// The receive's error, if the failure was not a decoding one.
    pub fn recv_error(&self) -> Option<&E> {
        match self {
            Self::Recv(e) => Some(e),
            Self::Decode(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static + std::error::Error>() {}

    #[test]
    fn errors_are_send_sync_static() {
        send_sync::<ConnectionError>();
        send_sync::<ClaimError>();
        send_sync::<RecvError>();
        send_sync::<TryRecvError>();
        send_sync::<RecvTimeoutError>();
        send_sync::<SendError>();
        send_sync::<TrySendError>();
        send_sync::<SendTimeoutError>();
        send_sync::<PollError>();
        #[cfg(feature = "serde")]
        {
            send_sync::<SendObjError<TrySendError>>();
            send_sync::<RecvObjError<RecvTimeoutError>>();
        }
    }

    #[test]
    fn conversions_keep_the_variant() {
        let e = RecvError::TooLong { len: 9, max: 3 };
        assert_eq!(
            TryRecvError::from(e),
            TryRecvError::TooLong { len: 9, max: 3 }
        );
        assert_eq!(
            RecvTimeoutError::from(RecvError::Eof),
            RecvTimeoutError::Eof
        );
        assert_eq!(
            TrySendError::from(SendError::BrokenPipe),
            TrySendError::BrokenPipe
        );
        assert_eq!(
            SendTimeoutError::from(ClaimError::NotOwner { owner: 7 }),
            SendTimeoutError::NotOwner { owner: 7 }
        );
    }

    #[test]
    fn a_cause_is_printed_once() {
        use std::error::Error as _;
        let io = std::io::Error::from_raw_os_error(24);
        let e = ConnectionError::Os {
            op: "socketpair",
            source: io,
        };
        let cause = e.source().expect("a source").to_string();
        assert!(!e.to_string().contains(&cause), "{e}");
    }
}
