//! Switching threads: `schedule` (the next group's turn, and within it `sched.pick_next`),
//! blocking and waking, the timer tick, the idle loop.
use alloc::vec::Vec;

use super::ids::{IDLE, ProcessId, Tid};
use super::table::{Blocked, SLICE_TICKS, State, TASKS, Tasks, TasksGuard, Wake, tasks};
use crate::arch::{self, context};
use crate::cpu;
use crate::graft::points::{self, ThreadCandidate};
use crate::memory::space;
use crate::time;

/// The running thread and its process (`None` in the idle loop).
pub fn current() -> Option<(Tid, ProcessId)> {
    arch::without_interrupts(|| {
        let t = tasks();
        t.threads.get(&t.current).map(|th| (th.tid, th.pid))
    })
}

pub fn current_pid() -> Option<ProcessId> {
    current().map(|(_, p)| p)
}

impl Tasks {
    /// The records `sched.pick_next` sees of group `pid`'s runnable threads, oldest first;
    /// `None` if there is no memory for them (the default then chooses).
    fn candidates(&self, pid: ProcessId) -> Option<Vec<ThreadCandidate>> {
        let queue = self.run.queue(pid)?;
        let mut out = Vec::new();
        out.try_reserve_exact(queue.len()).ok()?;
        out.extend(queue.iter().filter_map(|tid| self.threads.get(tid)).map(|th| ThreadCandidate {
            tid: th.tid.0,
            flags: if th.woke_from_wait { points::WOKE_FROM_WAIT } else { 0 }
                | if th.preempted { points::PREEMPTED } else { 0 },
            runtime_ns: th.runtime_ticks * 1_000_000_000 / u64::from(crate::init::TICK_HZ),
            wakeups: th.wakeups,
        }));
        Some(out)
    }
}

/// Chooses the next thread: the next group in turn, and within it `sched.pick_next`. The
/// graft runs with the task tables unlocked (the candidates are copied out first) in the
/// running thread's transaction; its answer is then checked against the tables as they are.
fn pick_next(mut t: TasksGuard) -> (TasksGuard, Tid) {
    for _ in 0..t.run.groups() {
        let Some((pid, runnable)) = t.run.next_turn() else { break };
        let mut chosen = None;
        if runnable > 1 && points::sched_grafted(pid) {
            if let Some(candidates) = t.candidates(pid) {
                drop(t);
                let pick = cpu::with_txn(|txn| txn.map(|txn| points::sched_pick_next(pid, txn, &candidates).0));
                t = tasks();
                chosen = pick.and_then(|i| candidates.get(i)).map(|c| Tid(c.tid));
            }
        }
        // The graft's choice if that thread is still waiting in the group, else the head.
        if let Some(tid) = t.run.take(pid, chosen) {
            return (t, tid);
        }
    }
    (t, IDLE)
}

/// Frees threads and address spaces that died, now that the CPU is off them.
fn reap(t: &mut Tasks) {
    let current = t.current;
    t.dead_threads.retain(|th| th.tid == current);
    let mut i = 0;
    while i < t.dead_spaces.len() {
        if t.dead_spaces[i].is_active() {
            i += 1;
        } else {
            drop(t.dead_spaces.swap_remove(i));
        }
    }
}

/// Gives the CPU to the next thread (possibly the same one). Interrupts must be disabled.
pub fn schedule() {
    let (save, next_rsp) = {
        let mut t = tasks();
        reap(&mut t);
        let cur = t.current;
        if let Some(th) = t.threads.get_mut(&cur) {
            if th.state == State::Running {
                th.preempted = true;
                t.make_runnable(cur);
            }
        }
        let (mut t, next) = pick_next(t);
        t.slice_left = SLICE_TICKS;
        if let Some(th) = t.threads.get_mut(&next) {
            th.state = State::Running;
            // The flags describe how the thread came to be runnable; it is running now.
            th.woke_from_wait = false;
            th.preempted = false;
        }
        if next == cur {
            return;
        }
        // Address space, kernel stack and transaction of the next thread.
        match t.threads.get(&next) {
            Some(th) => {
                arch::set_kernel_stack(th.stack_top());
                if let Some(space) = t.procs.get(&th.pid).and_then(|p| p.space.as_ref()) {
                    space.activate();
                }
                // SAFETY: the log lives as long as the thread, which is reaped only once no CPU runs it; until the next switch only this CPU, running that thread, uses it.
                unsafe { cpu::this().set_txn(Some(th.txn.0.as_ptr())) };
            }
            None => {
                space::activate_kernel_space();
                // SAFETY: the idle loop's log lives forever and only this CPU's idle loop uses it.
                unsafe { cpu::this().set_txn(None) };
            }
        }
        let save: *mut u64 = match t.threads.get_mut(&cur) {
            Some(th) => &mut th.rsp,
            None => match t.dead_threads.iter_mut().find(|th| th.tid == cur) {
                Some(th) => &mut th.rsp,
                None => &mut t.idle_rsp,
            },
        };
        let next_rsp = match t.threads.get(&next) {
            Some(th) => th.rsp,
            None => t.idle_rsp,
        };
        t.current = next;
        (save, next_rsp)
    };
    // SAFETY: interrupts are off; `save` points into a boxed thread (or the static idle slot) that stays allocated until reaped, which never happens to the running thread; `next_rsp` was saved by a switch or prepared for a new thread.
    unsafe { context::switch(save, next_rsp) };
}

/// The timer tick (interrupts off): expired deadlines and console input wake their threads
/// (only those: no thread is looked at otherwise), and the running thread's slice ends.
pub fn on_tick() {
    // A graft call (on the graft stack, with the call's context live) is never switched away
    // from; its own watchdog bounds it.
    if crate::graft::jit::is_active() {
        return;
    }
    let resched = {
        let Some(mut t) = TASKS.try_lock() else { return };
        if t.procs.is_empty() {
            return;
        }
        let now = time::uptime_ns();
        while let Some(tid) = t.deadlines.pop_expired(now) {
            if let Some(th) = t.threads.get_mut(&tid) {
                // Already out of the deadline set: `wake` must not cancel it again.
                th.deadline = None;
                let why = if th.state == State::Blocked(Blocked::Sleep) { Wake::Event } else { Wake::TimedOut };
                t.wake(tid, why);
            }
        }
        while let Some(b) = arch::serial::try_read_byte() {
            t.console_in.push_back(b);
        }
        if !t.console_in.is_empty() {
            for tid in core::mem::take(&mut t.console_waiters) {
                t.wake(tid, Wake::Event);
            }
        }
        let cur = t.current;
        if let Some(th) = t.threads.get_mut(&cur) {
            th.runtime_ticks += 1;
        }
        t.slice_left = t.slice_left.saturating_sub(1);
        (cur != IDLE && t.slice_left == 0) || (cur == IDLE && !t.run.is_empty())
    };
    if resched {
        schedule();
    }
}

/// Blocks the current thread until woken (or until `deadline_ns`, if given); returns why it
/// was woken. `register` runs under the task tables' lock, just before the thread blocks, to
/// put it on the list of what it waits for (so that no wake-up can come in between).
pub(super) fn block_with(reason: Blocked, deadline_ns: Option<u64>, register: impl FnOnce(&mut Tasks, Tid)) -> Wake {
    {
        let mut t = tasks();
        let cur = t.current;
        let Some(th) = t.threads.get_mut(&cur) else { return Wake::Event };
        th.state = State::Blocked(reason);
        th.wake = Wake::Event;
        th.deadline = deadline_ns;
        if reason == Blocked::Queue {
            th.busy = true;
        }
        if let Some(at) = deadline_ns {
            t.deadlines.add(at, cur);
        }
        register(&mut t, cur);
    }
    schedule();
    let t = tasks();
    t.threads.get(&t.current).map_or(Wake::Event, |th| th.wake)
}

pub fn yield_now() {
    schedule();
}

/// Blocks for at least `ms` milliseconds (woken by the first timer tick after the deadline).
pub fn sleep_ms(ms: u64) {
    let until_ns = time::uptime_ns().saturating_add(ms.saturating_mul(1_000_000));
    block_with(Blocked::Sleep, Some(until_ns), |_, _| {});
}

/// The idle loop: runs when no thread is runnable, forever.
pub fn idle() -> ! {
    loop {
        arch::without_interrupts(schedule);
        arch::wait_for_interrupt();
    }
}
