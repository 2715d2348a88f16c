//! Threads of a process: starting one, ending one.
use sysabi::Error;

use super::ids::Tid;
use super::process::exit_process;
use super::sched::schedule;
use super::table::tasks;
use crate::arch::trap::TrapFrame;

/// A new thread of the current process at `entry(arg)` on `stack_top`.
pub fn spawn_thread(entry: u64, stack_top: u64, arg: u64) -> Result<Tid, Error> {
    let mut t = tasks();
    let pid = t.current_pid().ok_or(Error::NoSuchProcess)?;
    // The entry point and stack are only used from user mode, where a bad one faults the
    // process, never the kernel; still refuse kernel addresses outright.
    if entry >= sysabi::USER_END || stack_top >= sysabi::USER_END || stack_top < sysabi::USER_START {
        return Err(Error::BadAddress);
    }
    t.new_thread(pid, &TrapFrame::new_user(entry, stack_top & !0xf, arg, 0))
}

/// Ends the current thread; the process ends with its last thread (exit code `code`).
pub fn exit_thread(code: i32) -> ! {
    let last = {
        let t = tasks();
        let pid = t.current_pid();
        pid.and_then(|p| t.procs.get(&p)).is_none_or(|p| p.threads.len() <= 1)
    };
    if last {
        exit_process(code);
    }
    {
        let mut t = tasks();
        let cur = t.current;
        t.kill_thread(cur);
    }
    schedule();
    unreachable!("a dead thread was scheduled");
}
