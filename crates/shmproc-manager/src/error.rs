//! Error types of the manager crate.

use std::io;

/// Setting up or tearing down a manager, a server or a watcher failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// A step of the setup failed; the cause is the source.
    #[error("manager setup failed")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The manager was shut down.
    #[error("the manager was shut down")]
    Closed,
    /// The server did not answer in time.
    #[error("the manager server did not answer in time")]
    Timeout,
    /// Connecting or authenticating failed.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// The server reported an error.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

impl ManagerError {
    pub(crate) fn setup(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ManagerError::Setup(Box::new(e))
    }
}

/// The peer failed Python's authkey challenge, or sent something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationError {
    /// Our challenge was answered with the wrong digest (a wrong key).
    #[error("digest received was wrong")]
    WrongDigest,
    /// Our answer was rejected by the peer (`#FAILURE#`: a wrong key).
    #[error("digest sent was rejected")]
    Rejected,
    /// The peer used the legacy HMAC-MD5 protocol (Python 3.11 and older),
    /// which this crate does not implement.
    #[error("the peer uses the legacy HMAC-MD5 handshake (Python < 3.12), which is not supported")]
    LegacyMd5,
    /// A digest other than `sha256`.
    #[error("unsupported digest {0:?}")]
    UnsupportedDigest(String),
    /// The message is not what the protocol expects at this step.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// A [`SocketConnection`](crate::SocketConnection) operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The OS reported an error.
    #[error("socket I/O failed")]
    Io(#[source] io::Error),
    /// The peer closed the connection (or died).
    #[error("connection closed by the peer")]
    Eof,
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
    /// A frame longer than allowed was announced; nothing was read or
    /// allocated for it.
    #[error("message of {len} bytes announced, the limit is {max}")]
    TooLong {
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Authentication failed.
    #[error("authentication failed")]
    Auth(#[from] AuthenticationError),
    /// A payload could not be encoded or decoded (postcard).
    #[error("bad payload: {0}")]
    Codec(String),
    /// A pipe to a local manager failed.
    #[error("pipe to the manager failed: {0}")]
    Pipe(String),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ConnError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ConnError::Eof,
            _ => ConnError::Io(e),
        }
    }
}

/// Why the server refused a request: typed, and the server goes on serving.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No object has this id (released, or never existed).
    #[error("object {0} does not exist (released, or never created)")]
    NoSuchObject(u64),
    /// The object exists but has another kind or element type.
    #[error("object {id} has another type ({found}, expected {expected})")]
    WrongType {
        /// The object.
        id: u64,
        /// What it is.
        found: String,
        /// What the proxy expected.
        expected: String,
    },
    /// The method does not apply to this object.
    #[error("method {method} does not apply to a {kind}")]
    UnknownMethod {
        /// The method.
        method: String,
        /// The object's kind.
        kind: String,
    },
    /// The key is not in the dict.
    #[error("key not found")]
    KeyError,
    /// The index is out of range.
    #[error("index {index} out of range for length {len}")]
    IndexError {
        /// The index asked for.
        index: i64,
        /// The length.
        len: u64,
    },
    /// The request could not be decoded.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A lock was released by a client that does not hold it.
    #[error("release of a lock this client does not hold")]
    NotHeld,
    /// A barrier was broken (a timeout, `abort`, `reset`, or a party gone)
    /// (Python's `BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A bounded semaphore released above its initial value (Python's
    /// `ValueError: Semaphore released too many times`).
    #[error("semaphore released too many times")]
    TooManyReleases,
    /// A wait was cut short: the server is shutting down.
    #[error("the wait was interrupted: the server is shutting down")]
    Interrupted,
    /// No registered type has this name.
    #[error("no type registered as {0:?}")]
    NotRegistered(String),
}

/// A proxy call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The connection to the server failed: the server is gone
    /// ([`ConnError::Eof`]), did not answer in time ([`ConnError::Timeout`]), ...
    #[error("manager connection failed")]
    Conn(#[from] ConnError),
    /// The server refused the request.
    #[error("the manager refused the call")]
    Remote(#[from] RemoteError),
    /// A value from the server does not decode as the proxy's type.
    #[error("value does not decode as {ty}: {detail}")]
    Decode {
        /// The expected type.
        ty: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A value could not be encoded.
    #[error("value does not encode: {0}")]
    Encode(String),
    /// A blocking call (lock, queue, event) gave up at its timeout.
    #[error("timed out")]
    Timeout,
    /// `Queue::get` on an empty queue (`try_get`) or `put` on a full one (`try_put`).
    #[error("queue empty")]
    Empty,
    /// `try_put` on a full queue.
    #[error("queue full")]
    Full,
}

impl ProxyError {
    /// Whether the server is gone (EOF) or did not answer in time.
    pub fn is_disconnected(&self) -> bool {
        matches!(
            self,
            ProxyError::Conn(ConnError::Eof | ConnError::Timeout | ConnError::Pipe(_))
        )
    }
}
