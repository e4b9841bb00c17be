//! Slot stamps: `pos[40] | pid[22] | state[2]` in one `u64` (the table is
//! in the [ring module docs](super)), their encoding, decoding, and the
//! signed distance between two positions modulo 2^40.
//!
//! Invariants: `stamp` masks every field into its bits, so any `pos` and
//! `pid` give a well-formed word, and `decode(stamp(p, pid, s))` gives back
//! `p mod 2^40`, `pid mod 2^22` and `s`; any `u64` decodes (validation is
//! the ring's `check`).

/// The state bits of a stamp.
pub(crate) const EMPTY: u64 = 0;
pub(crate) const WRITING: u64 = 1;
pub(crate) const FULL: u64 = 2;
pub(crate) const READING: u64 = 3;

const STATE_BITS: u32 = 2;
const PID_BITS: u32 = 22;
const POS_SHIFT: u32 = STATE_BITS + PID_BITS;
const POS_BITS: u32 = 64 - POS_SHIFT;
pub(super) const POS_MASK: u64 = (1 << POS_BITS) - 1;
const PID_MASK: u64 = (1 << PID_BITS) - 1;

/// Encodes a stamp.
#[inline]
pub(crate) const fn stamp(pos: u64, pid: u32, state: u64) -> u64 {
    ((pos & POS_MASK) << POS_SHIFT) | ((pid as u64 & PID_MASK) << STATE_BITS) | state
}

/// A decoded stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) pos: u64,
    pub(crate) pid: u32,
    pub(crate) state: u64,
}

#[inline]
pub(crate) const fn decode(s: u64) -> Stamp {
    Stamp {
        pos: s >> POS_SHIFT,
        pid: ((s >> STATE_BITS) & PID_MASK) as u32,
        state: s & ((1 << STATE_BITS) - 1),
    }
}

/// Whether `s` is `WRITING(p, pid)` for some pid other than 0.
#[inline]
pub(super) const fn is_writing_at(s: u64, p: u64) -> bool {
    let st = decode(s);
    st.state == WRITING && st.pid != 0 && st.pos == p & POS_MASK
}

/// `a - b` for positions modulo 2^40, sign-extended.
#[inline]
pub(crate) const fn lap_diff(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & POS_MASK;
    ((d << POS_SHIFT) as i64) >> POS_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        for (pos, pid, state) in [
            (0u64, 0u32, EMPTY),
            (5, 1234, WRITING),
            (POS_MASK, (1 << 22) - 1, READING),
        ] {
            let s = decode(stamp(pos, pid, state));
            assert_eq!((s.pos, s.pid, s.state), (pos, pid, state));
        }
        // Positions wrap modulo 2^40.
        assert_eq!(decode(stamp(POS_MASK + 3, 0, FULL)).pos, 2);
    }

    #[test]
    fn lap_diff_is_signed_modulo_2_40() {
        assert_eq!(lap_diff(5, 5), 0);
        assert_eq!(lap_diff(5, 9), -4);
        assert_eq!(lap_diff(9, 5), 4);
        assert_eq!(lap_diff(1, POS_MASK), 2);
        assert_eq!(lap_diff(POS_MASK, 1), -2);
        // Full 64-bit positions reduce modulo 2^40.
        assert_eq!(lap_diff(3, (7 << 40) + 1), 2);
    }
}
