//! Entry points shared by the fuzz targets in `fuzz/` and the tests that
//! replay their corpora on stable. Not part of the public API.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::header::{SegmentKind, TypeSpec};
use crate::segment::OpenOptions;
use crate::{ShmBox, ShmSlice};

/// `segment_open`: `data` becomes the whole content of a segment, which is
/// then opened with several expectations. Each open must return an error or a
/// valid handle whose every access stays in bounds; never a panic, a hang or
/// undefined behaviour.
///
/// The first byte picks the expectation; the rest is the segment.
pub fn segment_open(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let Some(fd) = memfd_with(bytes) else { return };
    let no_wait = Duration::ZERO;
    match pick % 4 {
        // The typed handles' own `open_fd` would wait up to
        // DEFAULT_INIT_TIMEOUT on a segment whose state is uninit or
        // initialising (2 s per input): open them with no wait instead.
        0 => {
            let opts = ShmSlice::<u32>::options().init_timeout(no_wait);
            if let Ok(s) = opts.open_fd(fd).and_then(ShmSlice::<u32>::from_segment) {
                let _ = s.to_vec();
                let _ = s.get(s.len());
                let _ = s.set(s.len().wrapping_sub(1), 7);
            }
        }
        1 => {
            let opts = ShmBox::<u64>::options().init_timeout(no_wait);
            if let Ok(b) = opts.open_fd(fd).and_then(ShmBox::<u64>::from_segment) {
                b.store(b.load().wrapping_add(1));
            }
        }
        2 => {
            let opts = OpenOptions::new(SegmentKind::RAW, TypeSpec::bytes()).init_timeout(no_wait);
            if let Ok(seg) = opts.open_fd(fd) {
                let hdr = seg.header().snapshot();
                assert_eq!(hdr.segment_len, seg.len() as u64);
            }
        }
        _ => {
            let kind = SegmentKind(u32::from(pick));
            let opts = OpenOptions::new(kind, TypeSpec::of::<u8>())
                .capacity(u64::from(pick))
                .init_timeout(no_wait);
            let _ = opts.open_fd(fd);
        }
    }
}

fn memfd_with(bytes: &[u8]) -> Option<OwnedFd> {
    let fd = crate::os::memfd_create(c"shmproc-fuzz").ok()?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).ok()?;
    Some(OwnedFd::from(f))
}
