//! The task tables: every thread and process, the run queues and the wait bookkeeping, behind
//! one lock (`TASKS`). The lock is only ever taken with interrupts disabled, and no code holds
//! it with interrupts enabled, so an interrupt handler may always take it (to wake a thread).
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;
use sysabi::Error;

use super::ids::{IDLE, ProcessId, Tid};
use super::policy::{Deadlines, RunQueues};
use crate::arch::{self, context, trap::TrapFrame};
use crate::cpu;
use crate::graft::callables::LOCKS;
use crate::graft::locks::OWNERS;
use crate::graft::txn::TxnLog;
use crate::memory::KernelStack;
use crate::memory::space::AddressSpace;

/// Each thread's kernel stack, with an unmapped guard page below it.
const KSTACK_SIZE: u64 = 64 * 1024;
/// Ticks a thread runs before the next group's turn.
pub(super) const SLICE_TICKS: u64 = 2;
/// Threads in the whole system at most.
pub const MAX_THREADS: usize = 200;
/// Processes in the whole system at most (those not yet waited for included).
pub const MAX_PROCESSES: usize = 128;

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Only its deadline.
    Sleep,
    /// A `futex_wake` on this address of its process.
    Futex { addr: u64 },
    /// Its process's child to exit.
    Wait { child: ProcessId },
    /// Console input.
    ConsoleRead,
    /// A kernel wait queue (`WaitQueue`), e.g. a disk request's completion.
    Queue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Runnable,
    Running,
    Blocked(Blocked),
    Dead,
}

/// Why a blocked thread was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Event,
    TimedOut,
}

pub(super) struct Thread {
    pub tid: Tid,
    pub pid: ProcessId,
    pub kstack: KernelStack,
    /// Saved kernel stack pointer while not running.
    pub rsp: u64,
    pub state: State,
    pub wake: Wake,
    /// The deadline the thread is registered under while blocked with a time-out.
    pub deadline: Option<u64>,
    /// Ticks spent running, times woken, and how it last became runnable.
    pub runtime_ticks: u64,
    pub wakeups: u32,
    pub woke_from_wait: bool,
    pub preempted: bool,
    /// The thread's transaction: every graft point it reaches runs in it (VINO's per-thread
    /// transactions), with the thread's own lock-owner identity.
    pub txn: ThreadTxn,
    /// In the kernel past an uninterruptible wait (disk I/O, the file system's lock) since it
    /// last returned to user mode: it may hold kernel locks or be half-way through changing
    /// kernel state, so it cannot simply be removed.
    pub busy: bool,
    /// Its process ended while it was busy: it dies on its way back to user mode.
    pub doomed: bool,
}

impl Thread {
    pub fn stack_top(&self) -> u64 {
        self.kstack.top() & !0xf
    }
}

/// A thread's transaction log, in an allocation of its own: the running thread uses it
/// through the CPU's pointer (`cpu::with_txn`) while the task tables may be borrowed. Its
/// lock-owner id comes from the kernel's pool and goes back to it when the thread is freed.
pub(super) struct ThreadTxn(pub core::ptr::NonNull<TxnLog>);

// SAFETY: the log is owned by its thread; only the CPU running that thread touches it.
unsafe impl Send for ThreadTxn {}

impl ThreadTxn {
    fn new() -> Result<ThreadTxn, Error> {
        let owner = OWNERS.alloc().ok_or(Error::TooMany)?;
        let log = TxnLog::try_new(owner, cpu::TXN_RECORDS, cpu::TXN_LOCKS).map_err(|_| {
            OWNERS.free(owner, &LOCKS);
            Error::NoMemory
        })?;
        let boxed = crate::memory::try_box(log).map_err(|_| {
            OWNERS.free(owner, &LOCKS);
            Error::NoMemory
        })?;
        Ok(ThreadTxn(core::ptr::NonNull::from(Box::leak(boxed))))
    }
}

impl Drop for ThreadTxn {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`; the thread is gone (reaped only once no CPU runs it), so nothing else refers to the log.
        let mut log = unsafe { Box::from_raw(self.0.as_ptr()) };
        // A thread never ends inside a graft call; if it somehow did, release what it holds.
        log.abort_all(&LOCKS);
        OWNERS.free(log.owner(), &LOCKS);
    }
}

pub(super) struct Process {
    pub parent: Option<ProcessId>,
    pub name: String,
    pub space: Option<AddressSpace>,
    pub threads: Vec<Tid>,
    pub exit_code: Option<i32>,
    pub next_map: u64,
    /// Ranges `[start, end)` that `map` gave the process: backed page by page on first touch
    /// (demand-zero), by the user-fault handler.
    pub lazy: Vec<(u64, u64)>,
    /// The pageable pages of `lazy`: resident set, clock, swap slots, limit, counters.
    pub vm: crate::vm::ProcessVm,
}

pub(super) struct Tasks {
    pub threads: BTreeMap<Tid, Box<Thread>>,
    pub procs: BTreeMap<ProcessId, Process>,
    pub current: Tid,
    pub idle_rsp: u64,
    pub run: RunQueues,
    /// Threads blocked with a time-out (sleeps, futex waits), by deadline.
    pub deadlines: Deadlines,
    /// Threads blocked in `futex_wait`, by (process, address), oldest first.
    pub futexes: BTreeMap<(ProcessId, u64), VecDeque<Tid>>,
    /// Threads blocked reading the console.
    pub console_waiters: Vec<Tid>,
    /// Threads and address spaces that died while in use; freed once the CPU has left them.
    pub dead_threads: Vec<Box<Thread>>,
    pub dead_spaces: Vec<AddressSpace>,
    pub next_tid: u32,
    pub next_pid: u32,
    pub slice_left: u64,
    pub console_in: VecDeque<u8>,
    pub init: Option<ProcessId>,
}

pub(super) static TASKS: Mutex<Tasks> = Mutex::new(Tasks {
    threads: BTreeMap::new(),
    procs: BTreeMap::new(),
    current: IDLE,
    idle_rsp: 0,
    run: RunQueues::new(),
    deadlines: Deadlines::new(),
    futexes: BTreeMap::new(),
    console_waiters: Vec::new(),
    dead_threads: Vec::new(),
    dead_spaces: Vec::new(),
    next_tid: 1,
    next_pid: 1,
    slice_left: SLICE_TICKS,
    console_in: VecDeque::new(),
    init: None,
});

pub(super) type TasksGuard = spin::MutexGuard<'static, Tasks>;

pub(super) fn tasks() -> TasksGuard {
    debug_assert!(!arch::interrupts_enabled());
    TASKS.lock()
}

impl Tasks {
    /// The running thread's process, if a thread (not the idle loop) is running.
    pub fn current_pid(&self) -> Option<ProcessId> {
        self.threads.get(&self.current).map(|th| th.pid)
    }

    pub fn make_runnable(&mut self, tid: Tid) {
        let Some(th) = self.threads.get_mut(&tid) else { return };
        th.state = State::Runnable;
        self.run.push(th.pid, tid);
    }

    /// Wakes `tid` if it is blocked, whatever it waits for: it leaves every wait list and its
    /// deadline.
    pub fn wake(&mut self, tid: Tid, why: Wake) {
        let Some(th) = self.threads.get_mut(&tid) else { return };
        let State::Blocked(reason) = th.state else { return };
        th.wake = why;
        th.wakeups += 1;
        th.woke_from_wait = true;
        let (pid, deadline) = (th.pid, th.deadline.take());
        if let Some(at) = deadline {
            self.deadlines.cancel(at, tid);
        }
        match reason {
            Blocked::Futex { addr } => {
                if let Some(q) = self.futexes.get_mut(&(pid, addr)) {
                    q.retain(|&t| t != tid);
                    if q.is_empty() {
                        self.futexes.remove(&(pid, addr));
                    }
                }
            }
            Blocked::ConsoleRead => self.console_waiters.retain(|&t| t != tid),
            Blocked::Sleep | Blocked::Wait { .. } | Blocked::Queue => {}
        }
        self.make_runnable(tid);
    }

    pub fn new_thread(&mut self, pid: ProcessId, frame: &TrapFrame) -> Result<Tid, Error> {
        if self.threads.len() >= MAX_THREADS {
            return Err(Error::TooMany);
        }
        let txn = ThreadTxn::new()?;
        let kstack = KernelStack::new(KSTACK_SIZE).map_err(|_| Error::NoMemory)?;
        let tid = Tid(self.next_tid);
        let mut th = crate::memory::try_box(Thread {
            tid,
            pid,
            kstack,
            rsp: 0,
            state: State::Runnable,
            wake: Wake::Event,
            deadline: None,
            runtime_ticks: 0,
            wakeups: 0,
            woke_from_wait: false,
            preempted: false,
            txn,
            busy: false,
            doomed: false,
        })
        .map_err(|_| Error::NoMemory)?;
        self.next_tid += 1;
        // SAFETY: the stack was just allocated for this thread and lives as long as it does.
        th.rsp = unsafe { context::prepare_user_stack(th.stack_top(), frame) };
        self.threads.insert(tid, th);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.threads.push(tid);
        }
        self.make_runnable(tid);
        Ok(tid)
    }

    /// Takes `tid` off every table; its stack and log are freed once no CPU runs it. A thread
    /// busy in the kernel (not the running one) is only doomed: it finishes what it is doing
    /// (and releases what it holds) and dies on its way back to user mode.
    pub fn kill_thread(&mut self, tid: Tid) {
        if tid != self.current {
            if let Some(th) = self.threads.get_mut(&tid) {
                if th.busy {
                    th.doomed = true;
                    return;
                }
            }
        }
        // Off every wait list first (as a wake-up would), then out of the run queue.
        self.wake(tid, Wake::Event);
        if let Some(mut th) = self.threads.remove(&tid) {
            th.state = State::Dead;
            let pid = th.pid;
            self.run.remove(pid, tid);
            if let Some(p) = self.procs.get_mut(&pid) {
                p.threads.retain(|&x| x != tid);
            }
            self.dead_threads.push(th);
        }
    }
}
