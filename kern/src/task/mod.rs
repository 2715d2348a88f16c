//! Processes, threads and the scheduler.
//!
//! One CPU. Kernel code runs with interrupts disabled except in the idle loop, so the task
//! tables are only ever touched with interrupts off; a thread blocks by marking itself and
//! calling `schedule`, and the timer interrupt preempts user code by calling `schedule` from
//! its handler.
//!
//! Scheduling is two-level. Each process is a *process group* with a run queue of its runnable
//! threads; groups take turns round-robin, one time slice each, so a group cannot take CPU from
//! the others. When a group's turn comes, the `sched.pick_next` graft point chooses which of its
//! runnable threads runs: by default the one that waited longest (the head of its queue), or
//! whatever the group's graft picks.
pub mod elf;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;
use sysabi::Error;

use crate::arch::{self, context, trap::TrapFrame};
use crate::fs::ramdisk;
use crate::cpu;
use crate::graft::callables::LOCKS;
use crate::graft::locks::OWNERS;
use crate::graft::points::{self, ThreadCandidate};
use crate::graft::runtime;
use crate::graft::state::ProcessId;
use crate::graft::txn::TxnLog;
use crate::memory::{KernelStack, PAGE_SIZE};
use crate::memory::space::{self, AddressSpace, UserRights};
use crate::time;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tid(pub u32);

/// The boot context, which becomes the idle loop: not a real thread, never queued.
pub const IDLE: Tid = Tid(0);

/// Each thread's kernel stack, with an unmapped guard page below it.
const KSTACK_SIZE: u64 = 64 * 1024;
/// Top of the initial user stack, and its size.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
const USER_STACK_SIZE: u64 = 256 * 1024;
/// Where `map` places memory.
const MAP_BASE: u64 = 0x0000_2000_0000_0000;
const MAP_END: u64 = 0x0000_7000_0000_0000;
/// Ticks a thread runs before the next group's turn.
const SLICE_TICKS: u64 = 2;
const MAX_THREADS: usize = 200;
/// Frames kept free for the kernel itself (heap growth, page tables, graft code): user memory
/// requests that would dip into them fail with `NoMemory` instead of starving the kernel.
const KERNEL_RESERVE_FRAMES: u64 = 4096;

fn user_frames_available(pages: u64) -> bool {
    crate::memory::frame_stats().free() >= pages + KERNEL_RESERVE_FRAMES
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Until the clock (`time::uptime_ns`) reaches `until_ns`.
    Sleep { until_ns: u64 },
    Futex { addr: u64, until_ns: Option<u64> },
    Wait { child: ProcessId },
    ConsoleRead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
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

struct Thread {
    tid: Tid,
    pid: ProcessId,
    kstack: KernelStack,
    /// Saved kernel stack pointer while not running.
    rsp: u64,
    state: State,
    wake: Wake,
    /// Ticks spent running, times woken, and whether the last wake-up was from a wait.
    runtime_ticks: u64,
    wakeups: u32,
    woke_from_wait: bool,
    preempted: bool,
    /// The thread's transaction: every graft point it reaches runs in it (VINO's per-thread
    /// transactions), with the thread's own lock-owner identity.
    txn: ThreadTxn,
}

/// A thread's transaction log, in an allocation of its own: the running thread uses it
/// through the CPU's pointer (`cpu::with_txn`) while the task tables may be borrowed. Its
/// lock-owner id comes from the kernel's pool and goes back to it when the thread is freed.
struct ThreadTxn(core::ptr::NonNull<TxnLog>);

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

impl Thread {
    fn stack_top(&self) -> u64 {
        self.kstack.top() & !0xf
    }
}

struct Process {
    parent: Option<ProcessId>,
    name: String,
    space: Option<AddressSpace>,
    threads: Vec<Tid>,
    exit_code: Option<i32>,
    next_map: u64,
    /// Ranges `[start, end)` that `map` gave the process: backed page by page on first touch
    /// (demand-zero), by the user-fault handler.
    lazy: Vec<(u64, u64)>,
}

struct Tasks {
    threads: BTreeMap<Tid, Box<Thread>>,
    procs: BTreeMap<ProcessId, Process>,
    current: Tid,
    idle_rsp: u64,
    /// Runnable threads of each group (process), oldest first.
    queues: BTreeMap<ProcessId, VecDeque<Tid>>,
    /// Groups in turn order.
    turns: VecDeque<ProcessId>,
    /// Threads and address spaces that died while in use; freed once the CPU has left them.
    dead_threads: Vec<Box<Thread>>,
    dead_spaces: Vec<AddressSpace>,
    next_tid: u32,
    next_pid: u32,
    slice_left: u64,
    console_in: VecDeque<u8>,
    init: Option<ProcessId>,
}

static TASKS: Mutex<Tasks> = Mutex::new(Tasks {
    threads: BTreeMap::new(),
    procs: BTreeMap::new(),
    current: IDLE,
    idle_rsp: 0,
    queues: BTreeMap::new(),
    turns: VecDeque::new(),
    dead_threads: Vec::new(),
    dead_spaces: Vec::new(),
    next_tid: 1,
    next_pid: 1,
    slice_left: SLICE_TICKS,
    console_in: VecDeque::new(),
    init: None,
});

type TasksGuard = spin::MutexGuard<'static, Tasks>;

fn tasks() -> TasksGuard {
    debug_assert!(!arch::interrupts_enabled());
    TASKS.lock()
}

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
    fn make_runnable(&mut self, tid: Tid) {
        let Some(th) = self.threads.get_mut(&tid) else { return };
        th.state = State::Runnable;
        let pid = th.pid;
        self.queues.entry(pid).or_default().push_back(tid);
        if !self.turns.contains(&pid) {
            self.turns.push_back(pid);
        }
    }

    fn wake(&mut self, tid: Tid, why: Wake) {
        if let Some(th) = self.threads.get_mut(&tid) {
            if matches!(th.state, State::Blocked(_)) {
                th.wake = why;
                th.wakeups += 1;
                th.woke_from_wait = true;
                self.make_runnable(tid);
            }
        }
    }

    fn new_thread(&mut self, pid: ProcessId, frame: &TrapFrame) -> Result<Tid, Error> {
        if self.threads.len() >= MAX_THREADS {
            return Err(Error::TooMany);
        }
        let txn = ThreadTxn::new()?;
        let tid = Tid(self.next_tid);
        self.next_tid += 1;
        let mut th = Box::new(Thread {
            tid,
            pid,
            kstack: KernelStack::new(KSTACK_SIZE).map_err(|_| Error::NoMemory)?,
            rsp: 0,
            state: State::Runnable,
            wake: Wake::Event,
            runtime_ticks: 0,
            wakeups: 0,
            woke_from_wait: false,
            preempted: false,
            txn,
        });
        // SAFETY: the stack was just allocated for this thread and lives as long as it does.
        th.rsp = unsafe { context::prepare_user_stack(th.stack_top(), frame) };
        self.threads.insert(tid, th);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.threads.push(tid);
        }
        self.make_runnable(tid);
        Ok(tid)
    }

    /// The records `sched.pick_next` sees of group `pid`'s runnable threads, oldest first;
    /// `None` if there is no memory for them (the default then chooses).
    fn candidates(&self, pid: ProcessId) -> Option<Vec<ThreadCandidate>> {
        let queue = self.queues.get(&pid)?;
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
    for _ in 0..t.turns.len() {
        let Some(pid) = t.turns.pop_front() else { break };
        let queue_len = t.queues.get(&pid).map_or(0, VecDeque::len);
        if queue_len == 0 {
            t.queues.remove(&pid);
            continue;
        }
        t.turns.push_back(pid);
        let mut chosen = None;
        if queue_len > 1 && points::sched_grafted(pid) {
            if let Some(candidates) = t.candidates(pid) {
                drop(t);
                let pick = cpu::with_txn(|txn| txn.map(|txn| points::sched_pick_next(pid, txn, &candidates).0));
                t = tasks();
                chosen = pick.and_then(|i| candidates.get(i)).map(|c| Tid(c.tid));
            }
        }
        let Some(queue) = t.queues.get_mut(&pid) else { continue };
        // The graft's choice if that thread is still waiting in the group, else the head.
        let idx = chosen.and_then(|tid| queue.iter().position(|&q| q == tid)).unwrap_or(0);
        let Some(tid) = queue.remove(idx) else { continue };
        if queue.is_empty() {
            t.queues.remove(&pid);
            t.turns.retain(|&g| g != pid);
        }
        return (t, tid);
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
                let top = th.stack_top();
                arch::set_kernel_stack(top);
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

/// Called from the timer interrupt (interrupts off).
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
        let mut wake = Vec::new();
        while let Some(b) = arch::serial::try_read_byte() {
            t.console_in.push_back(b);
        }
        let have_input = !t.console_in.is_empty();
        for th in t.threads.values() {
            match th.state {
                State::Blocked(Blocked::Sleep { until_ns }) if until_ns <= now => wake.push((th.tid, Wake::Event)),
                State::Blocked(Blocked::Futex { until_ns: Some(u), .. }) if u <= now => wake.push((th.tid, Wake::TimedOut)),
                State::Blocked(Blocked::ConsoleRead) if have_input => wake.push((th.tid, Wake::Event)),
                _ => {}
            }
        }
        for (tid, why) in wake {
            t.wake(tid, why);
        }
        let cur = t.current;
        if let Some(th) = t.threads.get_mut(&cur) {
            th.runtime_ticks += 1;
        }
        t.slice_left = t.slice_left.saturating_sub(1);
        (cur != IDLE && t.slice_left == 0) || (cur == IDLE && !t.turns.is_empty())
    };
    if resched {
        schedule();
    }
}

/// Blocks the current thread until woken; returns why it was woken.
pub fn block(reason: Blocked) -> Wake {
    {
        let mut t = tasks();
        let cur = t.current;
        let Some(th) = t.threads.get_mut(&cur) else { return Wake::Event };
        th.state = State::Blocked(reason);
        th.wake = Wake::Event;
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
    let until_ns = time::uptime_ns() + ms * 1_000_000;
    block(Blocked::Sleep { until_ns });
}

/// Wakes up to `count` threads of `pid` waiting on futex `addr`.
pub fn futex_wake(pid: ProcessId, addr: u64, count: u64) -> u64 {
    let mut t = tasks();
    let waiting: Vec<Tid> = t
        .threads
        .values()
        .filter(|th| th.pid == pid && matches!(th.state, State::Blocked(Blocked::Futex { addr: a, .. }) if a == addr))
        .map(|th| th.tid)
        .take(count as usize)
        .collect();
    for &tid in &waiting {
        t.wake(tid, Wake::Event);
    }
    waiting.len() as u64
}

/// Takes up to `buf.len()` bytes of console input, blocking until there is some.
pub fn console_read(buf: &mut [u8]) -> usize {
    loop {
        {
            let mut t = tasks();
            while let Some(b) = arch::serial::try_read_byte() {
                t.console_in.push_back(b);
            }
            if !t.console_in.is_empty() {
                let n = buf.len().min(t.console_in.len());
                for b in buf.iter_mut().take(n) {
                    *b = t.console_in.pop_front().unwrap_or(0);
                }
                return n;
            }
        }
        block(Blocked::ConsoleRead);
    }
}

/// Starts program `path` of the ramdisk as a new process (its own group) with `args` (the first
/// is conventionally the path).
pub fn spawn(path: &str, args: &[&str], parent: Option<ProcessId>) -> Result<ProcessId, Error> {
    // A bare name is looked up in bin/, like a one-entry PATH.
    let image = ramdisk::file(path)
        .or_else(|| if path.contains('/') { None } else { ramdisk::file(&alloc::format!("bin/{path}")) })
        .ok_or(Error::NotFound)?;
    // The image's pages and the stack, with the kernel's reserve left over.
    if !user_frames_available((image.len() as u64 + USER_STACK_SIZE).div_ceil(PAGE_SIZE) * 2) {
        return Err(Error::NoMemory);
    }
    let mut space = AddressSpace::new().map_err(|_| Error::NoMemory)?;
    let entry = elf::load(&mut space, image).map_err(|e| {
        log::debug!("spawn {path}: {e}");
        match e {
            elf::ElfError::NoMemory => Error::NoMemory,
            _ => Error::NotExecutable,
        }
    })?;
    let rw = UserRights { write: true, exec: false };
    let mut page = USER_STACK_TOP - USER_STACK_SIZE;
    while page < USER_STACK_TOP {
        space.map_page(page, rw).map_err(|_| Error::NoMemory)?;
        page += PAGE_SIZE;
    }
    let (rsp, argv) = push_args(&space, USER_STACK_TOP, args)?;
    let frame = TrapFrame::new_user(entry, rsp, args.len() as u64, argv);
    arch::without_interrupts(|| {
        let mut t = tasks();
        let pid = ProcessId(t.next_pid);
        t.next_pid += 1;
        t.procs.insert(
            pid,
            Process {
                parent,
                name: String::from(path),
                space: Some(space),
                threads: Vec::new(),
                exit_code: None,
                next_map: MAP_BASE,
                lazy: Vec::new(),
            },
        );
        if let Err(e) = t.new_thread(pid, &frame) {
            t.procs.remove(&pid);
            return Err(e);
        }
        Ok(pid)
    })
}

/// Starts the first process, `init`: when it exits, the machine powers off with its verdict.
pub fn spawn_init(path: &str, args: &[&str]) -> Result<ProcessId, Error> {
    let pid = spawn(path, args, None)?;
    arch::without_interrupts(|| tasks().init = Some(pid));
    Ok(pid)
}

/// Runs threads until process `pid` (started by the kernel itself, with no parent) exits;
/// returns its exit code and forgets it. For the kernel's own use from the boot context (tests).
pub fn run_to_exit(pid: ProcessId) -> Option<i32> {
    loop {
        let done = arch::without_interrupts(|| {
            let mut t = tasks();
            match t.procs.get(&pid) {
                None => Some(None),
                Some(p) if p.exit_code.is_some() => {
                    let code = p.exit_code;
                    t.procs.remove(&pid);
                    Some(code)
                }
                Some(_) => None,
            }
        });
        if let Some(code) = done {
            return code;
        }
        arch::without_interrupts(schedule);
        arch::wait_for_interrupt();
    }
}

/// Writes the argument strings and their (ptr, len) array below `top`; returns the initial
/// stack pointer (16-byte aligned) and the array's address.
fn push_args(space: &AddressSpace, top: u64, args: &[&str]) -> Result<(u64, u64), Error> {
    let mut sp = top;
    let mut pairs = Vec::with_capacity(args.len());
    for a in args {
        sp -= a.len() as u64;
        space.write(sp, a.as_bytes()).map_err(|_| Error::InvalidArgument)?;
        pairs.push((sp, a.len() as u64));
    }
    sp &= !0xf;
    sp -= 16 * pairs.len() as u64;
    let argv = sp;
    for (i, (p, l)) in pairs.iter().enumerate() {
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&p.to_le_bytes());
        rec[8..].copy_from_slice(&l.to_le_bytes());
        space.write(argv + 16 * i as u64, &rec).map_err(|_| Error::InvalidArgument)?;
    }
    if top - sp > USER_STACK_SIZE / 2 {
        return Err(Error::InvalidArgument);
    }
    Ok((sp & !0xf, argv))
}

/// A new thread of the current process at `entry(arg)` on `stack_top`.
pub fn spawn_thread(entry: u64, stack_top: u64, arg: u64) -> Result<Tid, Error> {
    let mut t = tasks();
    let cur = t.current;
    let pid = t.threads.get(&cur).map(|th| th.pid).ok_or(Error::NoSuchProcess)?;
    // The entry point and stack are only used from user mode, where a bad one faults the
    // process, never the kernel; still refuse kernel addresses outright.
    if entry >= sysabi::USER_END || stack_top >= sysabi::USER_END || stack_top < sysabi::USER_START {
        return Err(Error::BadAddress);
    }
    t.new_thread(pid, &TrapFrame::new_user(entry, stack_top & !0xf, arg, 0))
}

/// Gives the current process `len` bytes of fresh memory, backed on first touch.
pub fn map_memory(len: u64) -> Result<u64, Error> {
    if len == 0 || len > 1 << 32 {
        return Err(Error::InvalidArgument);
    }
    let pages = len.div_ceil(PAGE_SIZE);
    if !user_frames_available(pages) {
        return Err(Error::NoMemory);
    }
    let mut t = tasks();
    let cur = t.current;
    let pid = t.threads.get(&cur).map(|th| th.pid).ok_or(Error::NoSuchProcess)?;
    let p = t.procs.get_mut(&pid).ok_or(Error::NoSuchProcess)?;
    let base = p.next_map;
    if base + pages * PAGE_SIZE > MAP_END {
        return Err(Error::NoMemory);
    }
    p.lazy.try_reserve(1).map_err(|_| Error::NoMemory)?;
    p.lazy.push((base, base + pages * PAGE_SIZE));
    // One unmapped guard page after each mapping.
    p.next_map = base + (pages + 1) * PAGE_SIZE;
    Ok(base)
}

pub fn unmap_memory(addr: u64, len: u64) -> Result<(), Error> {
    if addr % PAGE_SIZE != 0 || !(MAP_BASE..MAP_END).contains(&addr) || len == 0 || len > MAP_END - addr {
        return Err(Error::InvalidArgument);
    }
    let mut t = tasks();
    let cur = t.current;
    let pid = t.threads.get(&cur).map(|th| th.pid).ok_or(Error::NoSuchProcess)?;
    let p = t.procs.get_mut(&pid).ok_or(Error::NoSuchProcess)?;
    let end = addr + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    // The ranges minus [addr, end): a range split in two needs one more entry.
    p.lazy.try_reserve(1).map_err(|_| Error::NoMemory)?;
    let mut i = 0;
    while i < p.lazy.len() {
        let (s, e) = p.lazy[i];
        if e <= addr || s >= end {
            i += 1;
            continue;
        }
        p.lazy.swap_remove(i);
        if s < addr {
            p.lazy.push((s, addr));
        }
        if e > end {
            p.lazy.push((end, e));
        }
    }
    let space = p.space.as_mut().ok_or(Error::NoSuchProcess)?;
    let mut page = addr;
    while page < end {
        space.unmap_page(page);
        page += PAGE_SIZE;
    }
    Ok(())
}

/// Why a user page fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultError {
    /// Not inside memory the process was given.
    Unmapped,
    /// No frame left for the page (beyond the kernel's reserve).
    NoMemory,
}

/// Backs the page at `addr` of the current process if it lies in memory `map` gave it.
fn resolve_fault(addr: u64) -> Result<(), FaultError> {
    resolve_fault_in(&mut tasks(), addr)
}

/// A kernel access to user memory (a system call's copy) faulted at `addr`: backs the page if
/// it is memory the process was given, so the copy can go on; false otherwise (the copy's
/// fix-up then reports a bad address). Never waits for the task tables: if they are held, the
/// fault cannot be one this resolves.
pub fn resolve_kernel_fault(addr: u64) -> bool {
    if !(sysabi::USER_START..sysabi::USER_END).contains(&addr) {
        return false;
    }
    match TASKS.try_lock() {
        Some(mut t) => resolve_fault_in(&mut t, addr).is_ok(),
        None => false,
    }
}

fn resolve_fault_in(t: &mut Tasks, addr: u64) -> Result<(), FaultError> {
    let page = addr & !(PAGE_SIZE - 1);
    let cur = t.current;
    let pid = t.threads.get(&cur).map(|th| th.pid).ok_or(FaultError::Unmapped)?;
    let p = t.procs.get_mut(&pid).ok_or(FaultError::Unmapped)?;
    if !p.lazy.iter().any(|&(s, e)| (s..e).contains(&page)) {
        return Err(FaultError::Unmapped);
    }
    if !user_frames_available(1) {
        return Err(FaultError::NoMemory);
    }
    let space = p.space.as_mut().ok_or(FaultError::Unmapped)?;
    if space.is_mapped(page) {
        // Another thread of the process backed it first.
        return Ok(());
    }
    space.map_page(page, UserRights { write: true, exec: false }).map(|_| ()).map_err(|_| FaultError::NoMemory)
}

/// The user-fault handler (registered with `arch`): runs on the faulting thread's kernel stack,
/// so it may block. A fault on memory the process was given backs it and resumes the thread;
/// anything else ends the process.
pub fn on_user_fault(frame: &mut TrapFrame, fault: arch::UserFault) {
    match fault {
        arch::UserFault::Page { addr, present: false, fetch: false, .. } => match resolve_fault(addr) {
            Ok(()) => {}
            Err(FaultError::NoMemory) => user_fault(frame, "out of memory backing a page", Some(addr)),
            Err(FaultError::Unmapped) => user_fault(frame, "page fault", Some(addr)),
        },
        arch::UserFault::Page { addr, .. } => user_fault(frame, "page fault", Some(addr)),
        arch::UserFault::Exception { name, .. } => user_fault(frame, name, None),
    }
}

/// Whether `pid` is `parent`'s child.
pub fn is_child(parent: ProcessId, pid: ProcessId) -> bool {
    arch::without_interrupts(|| tasks().procs.get(&pid).is_some_and(|p| p.parent == Some(parent)))
}

/// Waits for child `pid` to exit and returns its exit code.
pub fn wait(parent: ProcessId, pid: ProcessId) -> Result<i32, Error> {
    loop {
        {
            let mut t = tasks();
            let p = t.procs.get(&pid).ok_or(Error::NoSuchProcess)?;
            if p.parent != Some(parent) {
                return Err(Error::NoSuchProcess);
            }
            if let Some(code) = p.exit_code {
                t.procs.remove(&pid);
                return Ok(code);
            }
        }
        block(Blocked::Wait { child: pid });
    }
}

/// Ends the current thread; the process ends with its last thread (exit code `code`).
pub fn exit_thread(code: i32) -> ! {
    let last = {
        let t = tasks();
        let pid = t.threads.get(&t.current).map(|th| th.pid);
        pid.and_then(|p| t.procs.get(&p)).is_none_or(|p| p.threads.len() <= 1)
    };
    if last {
        exit_process(code);
    }
    {
        let mut t = tasks();
        let cur = t.current;
        kill_thread(&mut t, cur);
    }
    schedule();
    unreachable!("a dead thread was scheduled");
}

fn kill_thread(t: &mut Tasks, tid: Tid) {
    if let Some(mut th) = t.threads.remove(&tid) {
        th.state = State::Dead;
        let pid = th.pid;
        if let Some(q) = t.queues.get_mut(&pid) {
            q.retain(|&x| x != tid);
        }
        if let Some(p) = t.procs.get_mut(&pid) {
            p.threads.retain(|&x| x != tid);
        }
        t.dead_threads.push(th);
    }
}

/// Ends the current process: every thread, its address space, its grafts.
pub fn exit_process(code: i32) -> ! {
    let pid = {
        let t = tasks();
        let cur = t.current;
        t.threads.get(&cur).map(|th| th.pid)
    };
    if let Some(pid) = pid {
        end_process(pid, code);
    }
    schedule();
    unreachable!("a thread of an exited process was scheduled");
}

fn end_process(pid: ProcessId, code: i32) {
    let is_init = {
        let mut t = tasks();
        let threads: Vec<Tid> = t.procs.get(&pid).map(|p| p.threads.clone()).unwrap_or_default();
        for tid in threads {
            kill_thread(&mut t, tid);
        }
        t.queues.remove(&pid);
        t.turns.retain(|&g| g != pid);
        let mut parent = None;
        if let Some(p) = t.procs.get_mut(&pid) {
            p.exit_code = Some(code);
            parent = p.parent;
            log::debug!("process {} ({}) exited with {code}", pid.0, p.name);
            if let Some(space) = p.space.take() {
                t.dead_spaces.push(space);
            }
        }
        let waiters: Vec<Tid> = t
            .threads
            .values()
            .filter(|th| Some(th.pid) == parent && th.state == State::Blocked(Blocked::Wait { child: pid }))
            .map(|th| th.tid)
            .collect();
        for tid in waiters {
            t.wake(tid, Wake::Event);
        }
        t.init == Some(pid)
    };
    // A process's grafts go with it, and grafts attached for it by another process are detached.
    for id in runtime::grafts_of(pid) {
        let _ = runtime::unload(pid, id);
    }
    runtime::detach_all_for(pid);
    if is_init {
        log::info!("init exited with {code}; powering off");
        arch::exit_qemu(if code == 0 { arch::QemuExit::Success } else { arch::QemuExit::Failure });
    }
}

/// A CPU exception in user mode: the process is killed; the kernel goes on.
pub fn user_fault(frame: &TrapFrame, what: &str, addr: Option<u64>) -> ! {
    let (tid, pid, name) = {
        let t = tasks();
        let cur = t.current;
        let pid = t.threads.get(&cur).map(|th| th.pid).unwrap_or(ProcessId(0));
        let name = t.procs.get(&pid).map(|p| p.name.clone()).unwrap_or_default();
        (cur, pid, name)
    };
    match addr {
        Some(a) => log::warn!("process {} ({name}) thread {}: {what} at rip {:#x} accessing {a:#x}; killed", pid.0, tid.0, frame.rip),
        None => log::warn!("process {} ({name}) thread {}: {what} at rip {:#x}; killed", pid.0, tid.0, frame.rip),
    }
    end_process(pid, 128 + 11);
    schedule();
    unreachable!("a killed process was scheduled");
}

/// The idle loop: runs when no thread is runnable, forever.
pub fn idle() -> ! {
    loop {
        arch::without_interrupts(schedule);
        arch::wait_for_interrupt();
    }
}

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
