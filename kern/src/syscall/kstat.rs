//! The kernel's resource counters (`kstat`), and fault injection for tests (`fail_alloc`).
//!
//! Tests read `kstat` before and after a scenario and require every counter to come back to
//! its baseline once the processes they started have exited: heap bytes, free frames, graft
//! tables and slots, graft state and charges, locks, open files.
use sysabi::{Error, KStat, Sys};

use super::write_out;
use crate::graft::{callables, locks, runtime, state};
use crate::memory;

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Kstat => {
            let k = snapshot();
            // SAFETY: KStat is plain old data (repr(C), u64 fields only, no padding).
            let bytes = unsafe { core::slice::from_raw_parts(&k as *const KStat as *const u8, size_of::<KStat>()) };
            write_out(a[0], a[1], bytes)
        }
        Sys::FailAlloc => {
            if !fault_injection_allowed() {
                return Err(Error::PermissionDenied);
            }
            let (seen, _, _) = memory::fail_alloc_state();
            memory::arm_fail_alloc(a[0]);
            Ok(seen)
        }
        _ => Err(Error::NoSys),
    }
}

/// The counters now.
pub fn snapshot() -> KStat {
    let heap = memory::heap_stats();
    let frames = memory::frame_stats();
    let (grafts, slots) = runtime::table_sizes();
    let (seen, armed, injected) = memory::fail_alloc_state();
    KStat {
        heap_mapped: heap.mapped,
        heap_allocated: heap.allocated as u64,
        heap_requested: heap.requested as u64,
        heap_failed: heap.failed,
        frames_free: frames.free(),
        frames_total: frames.total,
        free_bytes: memory::free_bytes(),
        grafts: grafts as u64,
        slots: slots as u64,
        graft_processes: state::processes() as u64,
        charged: state::total_charged(),
        locks_held: callables::LOCKS.held() as u64,
        lock_owners: locks::OWNERS.in_use() as u64,
        open_files: crate::fs::files::open_count() as u64,
        failalloc_seen: seen,
        failalloc_armed: u64::from(armed),
        failalloc_injected: injected,
    }
}

/// Whether the test-only `fail_alloc` call may be used: the kernel was booted for tests.
fn fault_injection_allowed() -> bool {
    let c = crate::init::cmdline();
    c.fail_alloc.is_some() || c.mode == crate::cmdline::Mode::Test
}

/// Arms fault injection from the command line (`failalloc=N`), once, at the first system call.
pub(super) fn init_fault_injection() {
    static ONCE: spin::Once<()> = spin::Once::new();
    if ONCE.is_completed() {
        return;
    }
    ONCE.call_once(|| {
        if let Some(n) = crate::init::cmdline().fail_alloc.filter(|&n| n > 0) {
            log::info!("fault injection: heap allocation {n} on a system-call path will fail");
            memory::arm_fail_alloc(n);
        }
    });
}
