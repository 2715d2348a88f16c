//! The graft runtime: transactions, locks reachable from grafts, and (as they land) graft points,
//! callables, the loader and dispatch.
pub mod callables;
#[cfg(target_os = "none")]
pub mod jit;
pub mod locks;
pub mod points;
pub mod runtime;
pub mod state;
pub mod txn;
#[cfg(any(test, feature = "ktest"))]
mod tests;
