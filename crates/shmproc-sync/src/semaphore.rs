//! [`Semaphore`], [`BoundedSemaphore`] and [`Event`].

use std::fmt;
use std::time::Duration;

use shmproc_shm::SegmentKind;

use crate::error::{ReleaseError, SyncError, Timeout, WouldBlock};
use crate::handle::{Handle, Place, fixed_layout, fixed_options, shared_object};
use crate::raw::{RawEvent, RawSemaphore};
use crate::shared::{SegmentState, Shared};

const UNBOUNDED: u32 = u32::MAX;

/// An interprocess counting semaphore (Python's `multiprocessing.Semaphore`).
///
/// The segment holds one [`RawSemaphore`] (16 bytes). Releasing past
/// `u32::MAX - 1` is [`ReleaseError::TooManyReleases`].
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = shmproc_sync::Semaphore::new(1)?;
/// sem.acquire();
/// assert!(sem.try_acquire().is_err());
/// sem.release()?;
/// assert_eq!(sem.get_value(), 1);
/// # Ok(()) }
/// ```
pub struct Semaphore {
    h: Handle<RawSemaphore>,
    max: u32,
}

/// A semaphore that refuses to be released above its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): over-release is
/// [`ReleaseError::TooManyReleases`].
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = shmproc_sync::BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err()); // already at its bound
/// # Ok(()) }
/// ```
pub struct BoundedSemaphore {
    h: Handle<RawSemaphore>,
    max: u32,
}

macro_rules! semaphore_common {
    ($ty:ident, $kind:expr, $what:expr) => {
        impl $ty {
            fn create_at(place: Place<'_>, value: u32, max: u32) -> Result<Self, SyncError> {
                let h = Handle::create(
                    place,
                    $what,
                    fixed_layout::<RawSemaphore>($kind),
                    |s: &RawSemaphore, _| {
                        s.init(value, max);
                        Ok(())
                    },
                )?;
                Ok(Self { h, max })
            }

            fn from_handle(h: Handle<RawSemaphore>) -> Result<Self, SyncError> {
                // The bound is read once here and trusted from then on.
                let max = h.state().stored_max();
                if $kind == SegmentKind::SEMAPHORE && max != UNBOUNDED {
                    return Err(SyncError::Corrupt {
                        name: h.segment().label().to_owned(),
                        what: "the bound of an unbounded semaphore",
                        found: u64::from(max),
                    });
                }
                Ok(Self { h, max })
            }

            fn from_source(source: shmproc_shm::Source<'_>) -> Result<Self, SyncError> {
                Self::from_handle(Handle::open(
                    source,
                    $what,
                    fixed_options::<RawSemaphore>($kind),
                )?)
            }

            /// The current value (Python's `get_value()`).
            pub fn get_value(&self) -> u32 {
                self.h.state().get_value()
            }

            /// Blocks until the value is positive, then decrements it.
            pub fn acquire(&self) {
                self.h.state().acquire();
            }

            /// Decrements if positive (Python's `acquire(False)`).
            ///
            /// # Errors
            /// [`WouldBlock`] when the value is 0.
            #[doc(alias = "acquire_nowait")]
            pub fn try_acquire(&self) -> Result<(), WouldBlock> {
                self.h.state().try_acquire()
            }

            /// Decrements, waiting at most `timeout` (Python's `acquire(timeout=t)`).
            ///
            /// # Errors
            /// [`Timeout`].
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
                self.h.state().acquire_timeout(timeout)
            }

            /// Decrements, waiting until `deadline` for the value to be positive.
            ///
            /// # Errors
            /// [`Timeout`].
            pub fn acquire_deadline(&self, deadline: std::time::Instant) -> Result<(), Timeout> {
                self.h.state().acquire_deadline(deadline)
            }

            /// Increments the value and wakes one waiter.
            ///
            /// # Errors
            /// [`ReleaseError::TooManyReleases`] at the bound.
            pub fn release(&self) -> Result<(), ReleaseError> {
                self.h.state().release_bounded(self.max)
            }

            /// The shared state.
            pub fn raw(&self) -> &RawSemaphore {
                self.h.state()
            }
        }

        shared_object!($ty, $what);

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("segment", &self.h)
                    .field("value", &self.get_value())
                    .field("max", &self.max)
                    .finish()
            }
        }
    };
}

semaphore_common!(Semaphore, SegmentKind::SEMAPHORE, "Semaphore");
semaphore_common!(
    BoundedSemaphore,
    SegmentKind::BOUNDED_SEMAPHORE,
    "BoundedSemaphore"
);

impl Semaphore {
    /// A new semaphore holding `value`, in an anonymous segment.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new(value: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous, value.min(UNBOUNDED - 1), UNBOUNDED)
    }

    /// A new semaphore holding `value`, in the named segment `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create(name: &str, value: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name), value.min(UNBOUNDED - 1), UNBOUNDED)
    }
}

impl BoundedSemaphore {
    /// A new bounded semaphore holding `value` (also its bound), anonymous.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new(value: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous, value, value)
    }

    /// A new bounded semaphore holding `value` (also its bound), named `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create(name: &str, value: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name), value, value)
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> u32 {
        self.max
    }
}

/// An interprocess event (Python's `multiprocessing.Event`): a flag that
/// processes set, clear, and wait for.
///
/// The segment holds one [`RawEvent`] (8 bytes).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let ev = shmproc_sync::Event::new()?;
/// assert!(ev.wait_timeout(Duration::from_millis(1)).is_err());
/// ev.set();
/// ev.wait_timeout(Duration::from_secs(1))?;
/// # Ok(()) }
/// ```
pub type Event = Shared<RawEvent>;

impl SegmentState for RawEvent {
    const KIND: SegmentKind = SegmentKind::EVENT;
    const WHAT: &'static str = "Event";
}
