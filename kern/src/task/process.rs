//! Processes: starting one from a program file, its memory (`map`, demand-zero faults), waiting
//! for it, and its end, which takes everything it had with it.
use alloc::string::String;
use alloc::vec::Vec;

use sysabi::Error;

use super::elf;
use super::ids::ProcessId;
use super::sched::{block_with, schedule};
use super::table::{Blocked, MAX_PROCESSES, Process, Tasks, Wake, tasks};
use crate::arch::{self, trap::TrapFrame};
use crate::fs::ramdisk;
use crate::memory::PAGE_SIZE;
use crate::cpu;
use crate::graft::points::{self, VictimCandidate};
use crate::graft::runtime::Outcome;
use crate::memory::space::{AddressSpace, UserRights};
use crate::vm::slots::Slot;
use crate::vm::swap::{self, SwapError};

/// Top of the initial user stack, and its size.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
const USER_STACK_SIZE: u64 = 256 * 1024;
/// The top of the stack mapped at spawn (the arguments are written there, and most programs
/// never go deeper); the rest is backed on first touch and pageable. Mapping the top eagerly
/// also keeps a program's frame count from moving with its call depth, which tests that
/// compare free frames before and after an operation rely on.
const USER_STACK_EAGER: u64 = 64 * 1024;
/// Where `map` places memory.
const MAP_BASE: u64 = 0x0000_2000_0000_0000;
const MAP_END: u64 = 0x0000_7000_0000_0000;
/// Frames kept free for the kernel itself (heap growth, page tables, graft code): user memory
/// requests that would dip into them fail with `NoMemory` instead of starving the kernel.
const KERNEL_RESERVE_FRAMES: u64 = 4096;

fn user_frames_available(pages: u64) -> bool {
    crate::memory::frame_stats().free() >= pages + KERNEL_RESERVE_FRAMES
}

/// Starts program `path` of the ramdisk as a new process (its own group) with `args` (the first
/// is conventionally the path).
pub fn spawn(path: &str, args: &[&str], parent: Option<ProcessId>) -> Result<ProcessId, Error> {
    // A bare name is looked up in bin/, like a one-entry PATH.
    let image = ramdisk::file(path)
        .or_else(|| if path.contains('/') { None } else { ramdisk::file(&alloc::format!("bin/{path}")) })
        .ok_or(Error::NotFound)?;
    if arch::without_interrupts(|| tasks().procs.len()) >= MAX_PROCESSES {
        return Err(Error::TooMany);
    }
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
    // The stack is backed on first touch, but for its top pages, where the arguments go.
    let rw = UserRights { write: true, exec: false };
    let eager_from = USER_STACK_TOP - USER_STACK_EAGER;
    let mut lazy = Vec::new();
    lazy.try_reserve(1).map_err(|_| Error::NoMemory)?;
    lazy.push((USER_STACK_TOP - USER_STACK_SIZE, eager_from));
    let mut page = eager_from;
    while page < USER_STACK_TOP {
        space.map_page(page, rw).map_err(|_| Error::NoMemory)?;
        page += PAGE_SIZE;
    }
    let (rsp, argv) = push_args(&space, USER_STACK_TOP, args)?;
    let frame = TrapFrame::new_user(entry, rsp, args.len() as u64, argv);
    let mut name = String::new();
    name.try_reserve_exact(path.len()).map_err(|_| Error::NoMemory)?;
    name.push_str(path);
    arch::without_interrupts(|| {
        let mut t = tasks();
        if t.procs.len() >= MAX_PROCESSES {
            return Err(Error::TooMany);
        }
        let pid = ProcessId(t.next_pid);
        t.next_pid = t.next_pid.checked_add(1).ok_or(Error::TooMany)?;
        t.procs.insert(
            pid,
            Process { parent, name, space: Some(space), threads: Vec::new(), exit_code: None, next_map: MAP_BASE, lazy, vm: crate::vm::ProcessVm::new() },
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

/// Writes the argument strings and their (ptr, len) array below `top`; returns the initial
/// stack pointer (16-byte aligned) and the array's address.
fn push_args(space: &AddressSpace, top: u64, args: &[&str]) -> Result<(u64, u64), Error> {
    let total: u64 = args.iter().map(|a| a.len() as u64 + 16).sum();
    if total + 32 > USER_STACK_EAGER / 2 {
        return Err(Error::InvalidArgument);
    }
    let mut sp = top;
    let mut pairs = Vec::new();
    pairs.try_reserve_exact(args.len()).map_err(|_| Error::NoMemory)?;
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
    Ok((sp & !0xf, argv))
}

/// Runs threads until process `pid` (started by the kernel itself, with no parent) exits;
/// returns its exit code and forgets it. For the kernel's own use from the boot context (tests).
pub fn run_to_exit(pid: ProcessId) -> Option<i32> {
    loop {
        let done = arch::without_interrupts(|| {
            let mut t = tasks();
            match t.procs.get(&pid) {
                None => Some(None),
                Some(p) if p.exit_code.is_some() && p.threads.is_empty() => {
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

/// What process `pid` is to `parent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    Running,
    /// Exited, not yet waited for.
    Exited,
    NotAChild,
}

pub fn child_state(parent: ProcessId, pid: ProcessId) -> ChildState {
    arch::without_interrupts(|| match tasks().procs.get(&pid) {
        Some(p) if p.parent == Some(parent) && p.exit_code.is_none() => ChildState::Running,
        Some(p) if p.parent == Some(parent) => ChildState::Exited,
        _ => ChildState::NotAChild,
    })
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
            // Ended, and its last thread (one busy in the kernel may finish later) gone.
            if let (Some(code), true) = (p.exit_code, p.threads.is_empty()) {
                t.procs.remove(&pid);
                return Ok(code);
            }
        }
        block_with(Blocked::Wait { child: pid }, None, |_, _| {});
    }
}

/// Ends the current process: every thread, its address space, its grafts.
pub fn exit_process(code: i32) -> ! {
    let pid = arch::without_interrupts(|| tasks().current_pid());
    if let Some(pid) = pid {
        end_process(pid, code);
    }
    schedule();
    unreachable!("a thread of an exited process was scheduled");
}

/// Ends process `pid` with `code`: its threads stop (a thread busy in the kernel first
/// finishes what it is doing, see `Tasks::kill_thread`), and once none is left its memory goes,
/// everything the graft runtime held for it is forgotten (`graft::forget_process`), its files
/// close, and a parent waiting for it wakes (`finish_process`). The process stays in the table,
/// as its exit code, until waited for.
pub(super) fn end_process(pid: ProcessId, code: i32) {
    let (finished, is_init) = {
        let mut t = tasks();
        // Ending twice (a second thread faulting meanwhile) changes nothing.
        if t.procs.get(&pid).is_none_or(|p| p.exit_code.is_some()) {
            return;
        }
        // Every thread (ending a process must not need memory: no list is copied).
        let mut i = 0;
        while let Some(tid) = t.procs.get(&pid).and_then(|p| p.threads.get(i).copied()) {
            t.kill_thread(tid);
            // A killed thread left the list; a doomed one stays in it until it dies.
            if t.procs.get(&pid).is_some_and(|p| p.threads.get(i) == Some(&tid)) {
                i += 1;
            }
        }
        t.futexes.retain(|&(p, _), _| p != pid);
        if let Some(p) = t.procs.get_mut(&pid) {
            p.exit_code = Some(code);
            log::debug!("process {} ({}) exited with {code}", pid.0, p.name);
        }
        (t.procs.get(&pid).is_some_and(|p| p.threads.is_empty()), t.init == Some(pid))
    };
    if is_init {
        log::info!("init exited with {code}; powering off");
        arch::exit_qemu(if code == 0 { arch::QemuExit::Success } else { arch::QemuExit::Failure });
    }
    if finished {
        finish_process(pid);
    }
}

/// The end of an ended process whose last thread is gone: its memory and swap slots, its graft
/// state, its files; its parent wakes.
fn finish_process(pid: ProcessId) {
    {
        let mut t = tasks();
        let mut parent = None;
        let mut space = None;
        if let Some(p) = t.procs.get_mut(&pid) {
            parent = p.parent;
            space = p.space.take();
            p.lazy = Vec::new();
            // Its swap slots, those of pages in flight too (its threads are gone).
            p.vm.release_all(swap::free_slot, swap::free_slot_later);
        }
        t.run.drop_group(pid);
        if let Some(space) = space {
            t.dead_spaces.push(space);
        }
        wake_waiting_parent(&mut t, parent, pid);
    }
    crate::graft::forget_process(pid);
    crate::fs::files::close_all(pid);
}

/// Called on every way back to user mode (the end of a system call, of a user fault): the
/// thread is no longer busy in the kernel; if its process ended meanwhile, it dies now.
pub fn leave_kernel() {
    let doomed = arch::without_interrupts(|| {
        let mut t = tasks();
        let cur = t.current;
        match t.threads.get_mut(&cur) {
            Some(th) => {
                th.busy = false;
                th.doomed
            }
            None => false,
        }
    });
    if !doomed {
        return;
    }
    let (pid, finished) = {
        let mut t = tasks();
        let cur = t.current;
        let pid = t.current_pid();
        t.kill_thread(cur);
        let finished = pid.and_then(|p| t.procs.get(&p)).is_some_and(|p| p.threads.is_empty());
        (pid, finished)
    };
    if let (Some(pid), true) = (pid, finished) {
        finish_process(pid);
    }
    schedule();
    unreachable!("a doomed thread was scheduled");
}

fn wake_waiting_parent(t: &mut Tasks, parent: Option<ProcessId>, child: ProcessId) {
    let Some(parent) = parent else { return };
    let mut i = 0;
    while let Some(tid) = t.procs.get(&parent).and_then(|p| p.threads.get(i).copied()) {
        if t.threads.get(&tid).is_some_and(|th| th.state == super::table::State::Blocked(Blocked::Wait { child })) {
            t.wake(tid, Wake::Event);
        }
        i += 1;
    }
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
    let pid = t.current_pid().ok_or(Error::NoSuchProcess)?;
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
    if !addr.is_multiple_of(PAGE_SIZE) || !(MAP_BASE..MAP_END).contains(&addr) || len == 0 || len > MAP_END - addr {
        return Err(Error::InvalidArgument);
    }
    let mut t = tasks();
    let pid = t.current_pid().ok_or(Error::NoSuchProcess)?;
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
    p.vm.forget_range(addr, end, swap::free_slot);
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
    /// No frame left for the page (beyond the kernel's reserve) and none of the process's own
    /// to give back.
    NoMemory,
    /// A dirty page had to go to swap and could not.
    Swap(SwapError),
    /// The process ended while this thread was busy resolving the fault (it dies on its way
    /// back to user mode).
    Ended,
}

impl core::fmt::Display for FaultError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            FaultError::Unmapped => write!(f, "page fault"),
            FaultError::NoMemory => write!(f, "out of memory backing a page"),
            FaultError::Swap(e) => write!(f, "{e} while backing a page"),
            FaultError::Ended => write!(f, "the process ended"),
        }
    }
}

/// A kernel access to user memory (a system call's copy) faulted at `addr`: backs the page if
/// it is memory the process was given, so the copy can go on; false otherwise (the copy's
/// fix-up then reports a bad address). This may sleep on the swap disk, like a user fault: a
/// system call copies user memory with no spin lock held. If the task tables are held, the
/// fault cannot be one this resolves.
pub fn resolve_kernel_fault(addr: u64) -> bool {
    if !(sysabi::USER_START..sysabi::USER_END).contains(&addr) {
        return false;
    }
    if super::table::TASKS.is_locked() {
        log::debug!("system call's copy at {addr:#x}: the task tables are held");
        return false;
    }
    match resolve_fault(addr) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("system call's copy at {addr:#x}: {e}");
            false
        }
    }
}

/// What the fault path does next, decided with the task tables held and done without them.
enum Step {
    Done,
    /// The page's I/O is in flight (another thread of the process): wait, then look again.
    Wait,
    /// The resident set is full: choose a victim among the clock's window (a graft may).
    Choose(Vec<VictimCandidate>),
    /// A dirty victim's bytes, to be written to its slot before the eviction is complete.
    WriteOut { va: u64, slot: Slot, bytes: Vec<u8> },
    /// The page is in swap: read it in.
    ReadIn { slot: Slot },
}

/// A choice `vm.pick_victim` (or the default) made among a window, to be re-checked.
struct Choice {
    cands: Vec<VictimCandidate>,
    index: usize,
}

fn in_lazy(p: &Process, page: u64) -> bool {
    p.lazy.iter().any(|&(s, e)| (s..e).contains(&page))
}

/// Whether the system is short of frames: faults then give back a page of their own first.
fn memory_low() -> bool {
    !user_frames_available(crate::vm::low_water())
}

/// Memory is short: the process (other than `asking`) holding the most resident pages over an
/// equal share gives back some of its clean pages (dropped at once, no disk I/O; its dirty
/// pages stay, as writing them is its own faults' work). Returns how many were taken.
fn trim_others(t: &mut Tasks, asking: ProcessId) -> usize {
    let (mut total, mut holders) = (0usize, 0usize);
    let mut largest: Option<(ProcessId, usize)> = None;
    for (&pid, p) in &t.procs {
        let n = p.vm.clock.len();
        if n == 0 || p.space.is_none() {
            continue;
        }
        total += n;
        holders += 1;
        if pid != asking && largest.is_none_or(|(_, m)| n > m) {
            largest = Some((pid, n));
        }
    }
    let Some((victim_pid, resident)) = largest else { return 0 };
    let want = crate::vm::over_share(resident, total, holders);
    let Some(q) = t.procs.get_mut(&victim_pid) else { return 0 };
    let Process { space, vm, .. } = q;
    let Some(space) = space.as_mut() else { return 0 };
    let mut taken = 0;
    if want > 0 {
        for w in vm.clock.window(space, crate::vm::WINDOW) {
            if taken >= want {
                break;
            }
            if !w.dirty && !vm.in_transit(w.va) {
                vm.clock.remove(w.va);
                space.unmap_page(w.va);
                vm.counters.evictions += 1;
                vm.counters.trimmed += 1;
                taken += 1;
            }
        }
    }
    taken
}

/// Backs the page at `addr` of the current process: zero-filled on first touch, read back from
/// swap if it was evicted, after evicting a page of the same process when it is at its limit
/// (or memory is low). Sleeps on the swap disk with no lock held; each step re-checks the
/// tables as they are when it re-takes them.
fn resolve_fault(addr: u64) -> Result<(), FaultError> {
    let page = addr & !(PAGE_SIZE - 1);
    let pid = arch::without_interrupts(|| tasks().current_pid()).ok_or(FaultError::Unmapped)?;
    let mut choice: Option<Choice> = None;
    let mut counted = false;
    loop {
        let step = arch::without_interrupts(|| plan(&mut tasks(), pid, page, choice.take(), &mut counted))?;
        match step {
            Step::Done => return Ok(()),
            Step::Wait => super::sleep_ms(1),
            Step::Choose(cands) => {
                let (index, outcome) = cpu::with_txn(|txn| match txn {
                    Some(txn) => points::vm_pick_victim(pid, txn, &cands),
                    None => (points::default_victim(&cands), Outcome::Default),
                });
                arch::without_interrupts(|| {
                    if let Some(p) = tasks().procs.get_mut(&pid) {
                        match outcome {
                            Outcome::Committed => p.vm.counters.graft_choices += 1,
                            Outcome::Aborted(_) => p.vm.counters.graft_aborts += 1,
                            Outcome::Default => {}
                        }
                    }
                });
                choice = Some(Choice { cands, index });
            }
            Step::WriteOut { va, slot, bytes } => {
                let written = swap::write_page(slot, bytes);
                arch::without_interrupts(|| finish_write(&mut tasks(), pid, va, slot, written))?;
            }
            Step::ReadIn { slot } => {
                let read = swap::read_page(slot);
                arch::without_interrupts(|| finish_read(&mut tasks(), pid, page, slot, read))?;
            }
        }
    }
}

/// The next step of resolving a fault on `page` of process `pid`. Evicts clean pages on the
/// spot; a dirty one leaves in transit (`WriteOut`).
fn plan(t: &mut Tasks, pid: ProcessId, page: u64, mut choice: Option<Choice>, counted: &mut bool) -> Result<Step, FaultError> {
    if memory_low() && t.procs.get(&pid).is_some_and(|p| in_lazy(p, page)) {
        trim_others(t, pid);
    }
    let p = t.procs.get_mut(&pid).ok_or(FaultError::Unmapped)?;
    if p.exit_code.is_some() {
        return Err(FaultError::Ended);
    }
    if !in_lazy(p, page) {
        return Err(FaultError::Unmapped);
    }
    let Process { space, vm, .. } = p;
    let space = space.as_mut().ok_or(FaultError::Unmapped)?;
    if space.is_mapped(page) {
        // Another thread of the process backed it first.
        return Ok(Step::Done);
    }
    if vm.in_transit(page) {
        return Ok(Step::Wait);
    }
    if !*counted {
        *counted = true;
        vm.counters.faults += 1;
    }
    // Room first: the process's own pages go while it is at its limit or memory is low.
    while vm.clock.len() as u64 >= vm.limit || (memory_low() && !vm.clock.is_empty()) {
        let victim = match choice.take() {
            // The choice made without the lock, if its page is still resident; else the
            // default's among those still resident; else a new window.
            Some(c) => {
                let alive = |v: &VictimCandidate| vm.clock.contains(v.vaddr) && !vm.in_transit(v.vaddr);
                match c.cands.get(c.index).filter(|v| alive(v)) {
                    Some(v) => Some(v.vaddr),
                    None => {
                        let mut left = c.cands;
                        left.retain(alive);
                        (!left.is_empty()).then(|| left[points::default_victim(&left)].vaddr)
                    }
                }
            }
            None => None,
        };
        let victim = match victim {
            Some(v) => v,
            None => {
                let window = vm.clock.window(space, crate::vm::WINDOW);
                let mut cands: Vec<VictimCandidate> = Vec::new();
                cands.try_reserve_exact(window.len()).map_err(|_| FaultError::NoMemory)?;
                cands.extend(window
                    .iter()
                    .map(|w| VictimCandidate {
                        vaddr: w.va,
                        flags: (u32::from(w.referenced) * points::VICTIM_REFERENCED)
                            | (u32::from(w.dirty) * points::VICTIM_DIRTY)
                            | (u32::from(vm.is_marked(w.va)) * points::VICTIM_MARKED),
                        age: w.age.min(u64::from(u32::MAX)) as u32,
                    }));
                if cands.is_empty() {
                    return Err(FaultError::NoMemory);
                }
                if points::vm_grafted(pid) {
                    return Ok(Step::Choose(cands));
                }
                cands[points::default_victim(&cands)].vaddr
            }
        };
        // Evict `victim`: a dirty page goes to swap first (a clean one with a copy in swap, or
        // never written since it was zero-filled, is simply dropped).
        let dirty = space.page_info(victim).is_some_and(|i| i.dirty);
        vm.counters.evictions += 1;
        if !dirty {
            vm.clock.remove(victim);
            space.unmap_page(victim);
            continue;
        }
        let slot = match vm.swapped.get(victim) {
            Some(s) => s,
            None => match swap::alloc_slot() {
                Ok(s) => s,
                Err(e) => {
                    // No swap for it: a clean page of the process goes instead, if it has one
                    // (no disk I/O needed); the process ends only when every page is dirty.
                    let clean = vm.clock.pages().map(|p| p.va).find(|&va| !space.page_info(va).is_some_and(|i| i.dirty));
                    let Some(clean) = clean else {
                        // Within its limit, a process is not ended because memory is short:
                        // it takes a frame if one is left (checked below).
                        if (vm.clock.len() as u64) < vm.limit {
                            vm.counters.evictions -= 1;
                            break;
                        }
                        return Err(FaultError::Swap(e));
                    };
                    vm.clock.remove(clean);
                    space.unmap_page(clean);
                    continue;
                }
            },
        };
        let mut bytes = Vec::new();
        let copied = bytes.try_reserve_exact(PAGE_SIZE as usize).is_ok() && {
            bytes.resize(PAGE_SIZE as usize, 0);
            space.read_page(victim, &mut bytes).is_ok()
        };
        if !copied {
            if !vm.swapped.contains(victim) {
                swap::free_slot(slot);
            }
            return Err(FaultError::NoMemory);
        }
        if vm.transit.try_insert(victim, slot).is_err() {
            if !vm.swapped.contains(victim) {
                swap::free_slot(slot);
            }
            return Err(FaultError::NoMemory);
        }
        vm.clock.remove(victim);
        space.unmap_page(victim);
        vm.swapped.remove(victim);
        vm.counters.swap_outs += 1;
        return Ok(Step::WriteOut { va: victim, slot, bytes });
    }
    if let Some(slot) = vm.swapped.get(page) {
        vm.transit.try_insert(page, slot).map_err(|_| FaultError::NoMemory)?;
        return Ok(Step::ReadIn { slot });
    }
    if !user_frames_available(1) {
        return Err(FaultError::NoMemory);
    }
    vm.clock.try_reserve().map_err(|_| FaultError::NoMemory)?;
    space.map_page(page, UserRights { write: true, exec: false }).map_err(|_| FaultError::NoMemory)?;
    vm.clock.insert(page);
    vm.counters.zero_fills += 1;
    Ok(Step::Done)
}

/// A dirty page's write to swap ended: its slot now holds it (or, if the page was unmapped
/// meanwhile, the slot goes back; if the process ended, its end freed the slot).
fn finish_write(t: &mut Tasks, pid: ProcessId, va: u64, slot: Slot, written: Result<(), SwapError>) -> Result<(), FaultError> {
    let Some(p) = t.procs.get_mut(&pid).filter(|p| p.space.is_some()) else { return Ok(()) };
    if p.vm.transit.remove(va).is_none() {
        swap::free_slot(slot);
        return Ok(());
    }
    match written {
        Ok(()) => {
            if p.vm.swapped.try_insert(va, slot).is_err() {
                // The page's only copy is in a slot nothing can find.
                swap::free_slot(slot);
                return Err(FaultError::NoMemory);
            }
            Ok(())
        }
        Err(e) => {
            // The page's only copy was the one that failed to reach the disk.
            swap::free_slot(slot);
            Err(FaultError::Swap(e))
        }
    }
}

/// A page's read from swap ended: it is mapped again, clean, its slot still holding its copy.
fn finish_read(t: &mut Tasks, pid: ProcessId, page: u64, slot: Slot, read: Result<Vec<u8>, SwapError>) -> Result<(), FaultError> {
    let p = t.procs.get_mut(&pid).ok_or(FaultError::Unmapped)?;
    if p.vm.transit.remove(page).is_none() {
        // Unmapped meanwhile: the next step finds out.
        return Ok(());
    }
    let bytes = read.map_err(FaultError::Swap)?;
    let Process { space, vm, .. } = p;
    let space = space.as_mut().ok_or(FaultError::Unmapped)?;
    if !user_frames_available(1) {
        return Err(FaultError::NoMemory);
    }
    vm.clock.try_reserve().map_err(|_| FaultError::NoMemory)?;
    space.map_page(page, UserRights { write: true, exec: false }).map_err(|_| FaultError::NoMemory)?;
    if space.write(page, &bytes).is_err() {
        return Err(FaultError::NoMemory);
    }
    vm.clock.insert(page);
    debug_assert_eq!(vm.swapped.get(page), Some(slot));
    vm.counters.swap_ins += 1;
    if vm.is_marked(page) {
        vm.counters.marked_swap_ins += 1;
    }
    Ok(())
}

/// The user-fault handler (registered with `arch`): runs on the faulting thread's kernel stack,
/// so it may block. A fault on memory the process was given backs it (from swap if it was
/// evicted) and resumes the thread; anything else ends the process.
pub fn on_user_fault(frame: &mut TrapFrame, fault: arch::UserFault) {
    match fault {
        arch::UserFault::Page { addr, present: false, fetch: false, .. } => {
            let start = crate::time::rdtsc();
            let resolved = resolve_fault(addr);
            crate::vm::cost::record(crate::time::rdtsc().wrapping_sub(start));
            match resolved {
                // Dies in `leave_kernel` below.
                Ok(()) | Err(FaultError::Ended) => {}
                Err(e) => kill_for_fault(frame, &alloc::format!("{e}"), Some(addr)),
            }
        }
        arch::UserFault::Page { addr, .. } => kill_for_fault(frame, "page fault", Some(addr)),
        arch::UserFault::Exception { name, .. } => kill_for_fault(frame, name, None),
    }
    leave_kernel();
}

/// A CPU exception in user mode the kernel cannot resolve: the process is killed; the kernel
/// goes on.
fn kill_for_fault(frame: &TrapFrame, what: &str, addr: Option<u64>) -> ! {
    let (tid, pid, name) = {
        let t = tasks();
        let pid = t.current_pid().unwrap_or(ProcessId(0));
        let name = t.procs.get(&pid).map(|p| p.name.clone()).unwrap_or_default();
        (t.current, pid, name)
    };
    match addr {
        Some(a) => log::warn!("process {} ({name}) thread {}: {what} at rip {:#x} accessing {a:#x}; killed", pid.0, tid.0, frame.rip),
        None => log::warn!("process {} ({name}) thread {}: {what} at rip {:#x}; killed", pid.0, tid.0, frame.rip),
    }
    end_process(pid, 128 + 11);
    // If another thread had ended the process first, this one (busy in the kernel until now)
    // is still there: it dies on its way out, as any doomed thread.
    let still_here = arch::without_interrupts(|| {
        let mut t = tasks();
        let cur = t.current;
        t.threads.get_mut(&cur).map(|th| th.doomed = true).is_some()
    });
    if still_here {
        leave_kernel();
    }
    schedule();
    unreachable!("a killed process was scheduled");
}

/// Sets the calling process's resident-set limit (`pages`, 0 keeps it) and returns the previous
/// one with its paging counters. A lower limit takes effect at the next faults, which evict
/// until the process is under it.
pub fn vm_limit(pages: u64) -> Result<(u64, sysabi::VmStats), Error> {
    arch::without_interrupts(|| {
        let mut t = tasks();
        let pid = t.current_pid().ok_or(Error::NoSuchProcess)?;
        let p = t.procs.get_mut(&pid).ok_or(Error::NoSuchProcess)?;
        let old = p.vm.set_limit(pages).map_err(|_| Error::InvalidArgument)?;
        Ok((old, vm_stats_of(p)))
    })
}

fn vm_stats_of(p: &Process) -> sysabi::VmStats {
    let c = &p.vm.counters;
    let (slots_in_use, slots) = swap::slots_in_use();
    sysabi::VmStats {
        limit: p.vm.limit,
        ceiling: crate::vm::RESIDENT_CEILING,
        resident: p.vm.clock.len() as u64,
        frames: p.space.as_ref().map_or(0, |s| s.page_count() as u64),
        faults: c.faults,
        zero_fills: c.zero_fills,
        swap_ins: c.swap_ins,
        marked_swap_ins: c.marked_swap_ins,
        evictions: c.evictions,
        swap_outs: c.swap_outs,
        graft_choices: c.graft_choices,
        graft_aborts: c.graft_aborts,
        swap_slots: p.vm.slot_count() as u64,
        system_swap_slots: u64::from(slots_in_use),
        system_swap_capacity: u64::from(slots),
        free_frames: crate::memory::frame_stats().free(),
    }
}

/// Process `pid`'s paging counters (for the kernel's tests and statistics).
pub fn vm_stats(pid: ProcessId) -> Option<sysabi::VmStats> {
    arch::without_interrupts(|| tasks().procs.get(&pid).map(vm_stats_of))
}

/// Marks (`on`) or unmarks the calling process's pages in `[addr, addr + len)`.
pub fn vm_mark(addr: u64, len: u64, on: bool) -> Result<(), Error> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 || !(sysabi::USER_START..sysabi::USER_END).contains(&addr) || len > sysabi::USER_END - addr {
        return Err(Error::InvalidArgument);
    }
    let end = addr + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    arch::without_interrupts(|| {
        let mut t = tasks();
        let pid = t.current_pid().ok_or(Error::NoSuchProcess)?;
        let p = t.procs.get_mut(&pid).ok_or(Error::NoSuchProcess)?;
        p.vm.mark(addr, end, on).map_err(|e| match e {
            crate::vm::VmError::NoMemory => Error::NoMemory,
            _ => Error::TooMany,
        })
    })
}

/// One page of process `pid` as the VM sees it: resident (referenced, active), swapped, or in
/// transit. What a graft's callables may change, compared before and after an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageState {
    pub va: u64,
    pub resident: bool,
    pub referenced: bool,
    pub active: bool,
    pub slot: Option<u32>,
}

/// Every pageable page of `pid` the VM knows, by address (sorted), with the clock's hand and
/// step count: equal before and after a call means the call left no trace on paging state.
pub fn vm_snapshot(pid: ProcessId) -> Option<(Vec<PageState>, u64)> {
    arch::without_interrupts(|| {
        let mut t = tasks();
        let p = t.procs.get_mut(&pid)?;
        let Process { space, vm, .. } = p;
        let space = space.as_mut()?;
        let mut out = Vec::new();
        for page in vm.clock.pages() {
            // Fold what the hardware saw into the software bit the clock would see (without
            // clearing it): the state a callable's undo must restore.
            let hw = space.page_info(page.va).is_some_and(|i| i.accessed);
            out.push(PageState {
                va: page.va,
                resident: true,
                referenced: page.referenced || hw,
                active: page.active,
                slot: vm.swapped.get(page.va).map(|s| s.0),
            });
        }
        for (va, s) in vm.swapped.iter() {
            if !vm.clock.contains(va) {
                out.push(PageState { va, resident: false, referenced: false, active: false, slot: Some(s.0) });
            }
        }
        out.sort_by_key(|s| s.va);
        Some((out, vm.clock.steps()))
    })
}

/// Runs `f` on the resident page `va` of process `owner` (a graft's callable: the page must be
/// the installer's). `None` if the page is not resident in that process or the tables are
/// busy (a callable never waits for them).
pub fn with_resident_page<R>(owner: ProcessId, va: u64, f: impl FnOnce(&mut crate::vm::clock::ClockPage, &mut AddressSpace) -> R) -> Option<R> {
    let mut t = super::table::TASKS.try_lock()?;
    let p = t.procs.get_mut(&owner)?;
    let Process { space, vm, .. } = p;
    let space = space.as_mut()?;
    let page = vm.clock.get_mut(va)?;
    Some(f(page, space))
}
