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

use crate::task::ProcessId;

/// Everything the graft runtime holds for process `pid`, forgotten in one place when the
/// process ends: the grafts it loaded (unloaded, so their code, data and statistics go), every
/// slot held for it by anyone (emptied), the counters and memory its grafts had, and its
/// graft locks (given back to the pool).
pub fn forget_process(pid: ProcessId) {
    runtime::unload_all(pid);
    runtime::detach_all_for(pid);
    state::forget(pid);
    callables::forget_process_locks(pid);
}
