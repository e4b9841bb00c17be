//! Frames between the pool and a worker for the serde calls: a few `u64`
//! words and a blob, one `SOCK_SEQPACKET` message each. A blob larger than
//! [`INLINE_MAX`] travels in an anonymous shared segment whose descriptor
//! rides with the message, so a message never outgrows [`MAX_MSG`].
//!
//! Frame: `kind, n_words, blob_len, blob_in_fd`, then `n_words` words, then
//! the blob (inline) or nothing (its descriptor attached).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use shmproc_shm::{ShmSlice, os};

/// The largest message either side receives.
pub(crate) const MAX_MSG: usize = 1 << 16;

/// The largest blob sent inline.
pub(crate) const INLINE_MAX: usize = 48 << 10;

/// The most words a frame carries.
pub(crate) const MAX_WORDS: usize = 4096;

/// A received frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u64,
    pub(crate) words: Vec<u64>,
    pub(crate) blob: Vec<u8>,
}

/// Sends a frame of `kind`.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    kind: u64,
    words: &[u64],
    blob: &[u8],
) -> io::Result<()> {
    let in_fd = blob.len() > INLINE_MAX;
    let mut b = Vec::with_capacity(32 + words.len() * 8 + if in_fd { 0 } else { blob.len() });
    for w in [
        kind,
        words.len() as u64,
        blob.len() as u64,
        u64::from(in_fd),
    ]
    .iter()
    .chain(words)
    {
        b.extend_from_slice(&w.to_le_bytes());
    }
    if in_fd {
        let seg = ShmSlice::from_slice(blob).map_err(io::Error::other)?;
        os::send_with_fds(sock, &b, &[seg.segment().fd()])
    } else {
        b.extend_from_slice(blob);
        os::send_with_fds(sock, &b, &[])
    }
}

/// Parses a received message (`msg`, with its descriptors) as a frame.
/// Every length is checked against the bytes that back it.
pub(crate) fn parse_frame(msg: &[u8], fds: Vec<OwnedFd>) -> Result<Frame, String> {
    let word = |i: usize| -> Option<u64> {
        msg.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let (Some(kind), Some(n), Some(blob_len), Some(in_fd)) = (word(0), word(1), word(2), word(3))
    else {
        return Err(format!("short frame ({} bytes)", msg.len()));
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_WORDS {
        return Err(format!("frame of {n} words"));
    }
    let words: Option<Vec<u64>> = (4..4 + n).map(word).collect();
    let words = words.ok_or("frame shorter than its words")?;
    let rest = &msg[(4 + n) * 8..];
    let blob_len = usize::try_from(blob_len).unwrap_or(usize::MAX);
    let blob = match (in_fd, fds.into_iter().next()) {
        (0, _) => {
            if rest.len() != blob_len {
                return Err(format!(
                    "frame announces {blob_len} bytes, carries {}",
                    rest.len()
                ));
            }
            rest.to_vec()
        }
        (1, Some(fd)) => {
            let seg = ShmSlice::<u8>::open_fd(fd).map_err(|e| e.to_string())?;
            if seg.len() != blob_len {
                return Err(format!(
                    "frame announces {blob_len} bytes, its segment holds {}",
                    seg.len()
                ));
            }
            seg.to_vec()
        }
        _ => return Err("frame without its blob's descriptor".into()),
    };
    Ok(Frame { kind, words, blob })
}

/// Receives one frame; `Ok(None)` at the end of the stream.
pub(crate) fn recv_frame(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Option<Frame>> {
    let (n, fds) = os::recv_with_fds(sock.as_fd(), buf)?;
    if n == 0 {
        return Ok(None);
    }
    parse_frame(&buf[..n], fds)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Appends `value`, postcard-encoded, to `out` (no allocation per value).
pub(crate) fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// A postcard flavor that appends to a `Vec` it borrows.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
