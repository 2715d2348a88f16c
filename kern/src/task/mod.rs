//! Processes, threads and the scheduler.
//!
//! | module | owns |
//! |---|---|
//! | `ids` | `ProcessId`, `Tid` |
//! | `policy` | the run queues (groups round-robin, threads oldest first) and the deadline queue: plain logic, host-tested |
//! | `table` | the task tables behind one lock: threads (with their transaction logs), processes, wait lists |
//! | `sched` | switching: `schedule` with `sched.pick_next`, blocking, the timer tick, the idle loop |
//! | `wait` | wait queues (woken from interrupt handlers), futexes, console input |
//! | `process` | spawning, `map` and demand-zero faults, waiting, a process's end |
//! | `thread` | starting and ending threads |
//! | `elf` | loading programs |
//!
//! One CPU. Kernel code runs with interrupts disabled except in the idle loop and inside graft
//! calls, so the task tables are only ever touched with interrupts off; a thread blocks by
//! marking itself and calling `schedule`, and the timer interrupt preempts user code by calling
//! `schedule` from its handler. User faults and system calls run on the thread's own kernel
//! stack, so both may block.
pub mod ids;
pub mod policy;

pub use ids::{IDLE, ProcessId, Tid};

#[cfg(target_os = "none")]
pub mod elf;
#[cfg(target_os = "none")]
mod process;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod table;
#[cfg(target_os = "none")]
mod thread;
#[cfg(target_os = "none")]
mod wait;

#[cfg(target_os = "none")]
pub use process::{
    ChildState, USER_STACK_TOP, child_state, exit_process, leave_kernel, map_memory, on_user_fault, resolve_kernel_fault, run_to_exit, spawn,
    spawn_init, unmap_memory, wait,
};
#[cfg(target_os = "none")]
pub use process::{PageState, vm_limit, vm_mark, vm_snapshot, vm_stats, with_resident_page};
#[cfg(target_os = "none")]
pub use sched::{current, current_pid, idle, on_tick, schedule, sleep_ms, yield_now};
#[cfg(target_os = "none")]
pub use table::{Blocked, MAX_PROCESSES, MAX_THREADS, Wake};
#[cfg(target_os = "none")]
pub use thread::{exit_thread, spawn_thread};
#[cfg(target_os = "none")]
pub use wait::{SleepGuard, SleepLock, WaitQueue, console_read, futex_wait, futex_wake};

#[cfg(feature = "ktest")]
mod ktests {
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::arch::{self, trap::TrapFrame};
    use crate::{check, check_eq, ktest};

    static SLOW_FAULTS: AtomicU64 = AtomicU64::new(0);
    const FAULT_SLEEP_MS: u64 = 20;

    /// The kernel's user-fault handler, made to sleep first: what a fault that waits for the
    /// disk (swap-in) does.
    fn sleeping_fault_handler(frame: &mut TrapFrame, fault: arch::UserFault) {
        if matches!(fault, arch::UserFault::Page { .. }) {
            SLOW_FAULTS.fetch_add(1, Ordering::Relaxed);
            super::sleep_ms(FAULT_SLEEP_MS);
        }
        super::on_user_fault(frame, fault);
    }

    ktest! {
        fn a_user_page_fault_may_block_and_then_resume_the_user() -> TestResult {
            const PAGES: u64 = 8;
            SLOW_FAULTS.store(0, Ordering::Relaxed);
            let previous = arch::hooks::replace_user_fault(sleeping_fault_handler);
            let start = crate::time::uptime_ns();
            let spawned = super::spawn("bin/memtouch", &["bin/memtouch", "8"], None);
            let code = spawned.ok().and_then(super::run_to_exit);
            arch::hooks::replace_user_fault(previous);
            let elapsed = crate::time::uptime_ns() - start;
            let faults = SLOW_FAULTS.load(Ordering::Relaxed);
            check!(spawned.is_ok(), "spawn bin/memtouch: {spawned:?}");
            // memtouch exits 0 only if every byte it wrote to its pages came back.
            check_eq!(code, Some(0));
            check!(faults >= PAGES, "{faults} page faults for {PAGES} demand-zero pages");
            check!(elapsed >= faults * FAULT_SLEEP_MS * 1_000_000, "{faults} sleeping faults took only {elapsed} ns");
            Ok(())
        }

        fn timer_ticks_advance() -> TestResult {
            check!(arch::interrupts_enabled());
            let start = crate::time::ticks();
            for _ in 0..5 {
                arch::wait_for_interrupt();
            }
            check!(crate::time::ticks() > start, "no timer tick after 5 halts");
            check!(crate::time::uptime_ms() > 0);
            Ok(())
        }
    }
}
