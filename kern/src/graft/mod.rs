//! The graft runtime: transactions, locks reachable from grafts, and (as they land) graft points,
//! callables, the loader and dispatch.
pub mod locks;
pub mod txn;
