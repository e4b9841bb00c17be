//! Starting a child, the parent's side: [`fork`] (the `fork` start method)
//! and [`exec`] (`spawn` and `forkserver`).
//!
//! Layer 4 (starting a child).

pub(crate) mod exec;
pub(crate) mod fork;
