//! Processes: starting one from a program file, its memory (`map`, demand-zero faults), waiting
//! for it, and its end, which takes everything it had with it.
use alloc::string::String;
use alloc::vec::Vec;

use sysabi::Error;

use super::elf;
use super::ids::{ProcessId, Tid};
use super::sched::{block_with, schedule};
use super::table::{Blocked, MAX_PROCESSES, Process, Tasks, Wake, tasks};
use crate::arch::{self, trap::TrapFrame};
use crate::fs::ramdisk;
use crate::memory::PAGE_SIZE;
use crate::memory::space::{AddressSpace, UserRights};

/// Top of the initial user stack, and its size.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
const USER_STACK_SIZE: u64 = 256 * 1024;
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
    let rw = UserRights { write: true, exec: false };
    let mut page = USER_STACK_TOP - USER_STACK_SIZE;
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
            Process { parent, name, space: Some(space), threads: Vec::new(), exit_code: None, next_map: MAP_BASE, lazy: Vec::new() },
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
    if total + 32 > USER_STACK_SIZE / 2 {
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
            if let Some(code) = p.exit_code {
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

/// Ends process `pid` with `code`: its threads stop, its memory goes, everything the graft
/// runtime held for it is forgotten (`graft::forget_process`), and a parent waiting for it
/// wakes. The process stays in the table, as its exit code, until waited for.
pub(super) fn end_process(pid: ProcessId, code: i32) {
    let is_init = {
        let mut t = tasks();
        let threads: Vec<Tid> = t.procs.get(&pid).map(|p| p.threads.clone()).unwrap_or_default();
        for tid in threads {
            t.kill_thread(tid);
        }
        t.run.drop_group(pid);
        t.futexes.retain(|&(p, _), _| p != pid);
        let mut parent = None;
        let mut space = None;
        if let Some(p) = t.procs.get_mut(&pid) {
            p.exit_code = Some(code);
            parent = p.parent;
            log::debug!("process {} ({}) exited with {code}", pid.0, p.name);
            space = p.space.take();
            p.lazy = Vec::new();
        }
        if let Some(space) = space {
            t.dead_spaces.push(space);
        }
        wake_waiting_parent(&mut t, parent, pid);
        t.init == Some(pid)
    };
    crate::graft::forget_process(pid);
    crate::fs::files::close_all(pid);
    if is_init {
        log::info!("init exited with {code}; powering off");
        arch::exit_qemu(if code == 0 { arch::QemuExit::Success } else { arch::QemuExit::Failure });
    }
}

fn wake_waiting_parent(t: &mut Tasks, parent: Option<ProcessId>, child: ProcessId) {
    let Some(parent) = parent else { return };
    let threads: Vec<Tid> = t.procs.get(&parent).map(|p| p.threads.clone()).unwrap_or_default();
    for tid in threads {
        if t.threads.get(&tid).is_some_and(|th| th.state == super::table::State::Blocked(Blocked::Wait { child })) {
            t.wake(tid, Wake::Event);
        }
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
    if addr % PAGE_SIZE != 0 || !(MAP_BASE..MAP_END).contains(&addr) || len == 0 || len > MAP_END - addr {
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

/// A kernel access to user memory (a system call's copy) faulted at `addr`: backs the page if
/// it is memory the process was given, so the copy can go on; false otherwise (the copy's
/// fix-up then reports a bad address). Never waits for the task tables: if they are held, the
/// fault cannot be one this resolves.
pub fn resolve_kernel_fault(addr: u64) -> bool {
    if !(sysabi::USER_START..sysabi::USER_END).contains(&addr) {
        return false;
    }
    match super::table::TASKS.try_lock() {
        Some(mut t) => resolve_fault_in(&mut t, addr).is_ok(),
        None => false,
    }
}

/// Backs the page at `addr` of the current process if it lies in memory `map` gave it.
fn resolve_fault_in(t: &mut Tasks, addr: u64) -> Result<(), FaultError> {
    let page = addr & !(PAGE_SIZE - 1);
    let pid = t.current_pid().ok_or(FaultError::Unmapped)?;
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
        arch::UserFault::Page { addr, present: false, fetch: false, .. } => match resolve_fault_in(&mut tasks(), addr) {
            Ok(()) => {}
            Err(FaultError::NoMemory) => kill_for_fault(frame, "out of memory backing a page", Some(addr)),
            Err(FaultError::Unmapped) => kill_for_fault(frame, "page fault", Some(addr)),
        },
        arch::UserFault::Page { addr, .. } => kill_for_fault(frame, "page fault", Some(addr)),
        arch::UserFault::Exception { name, .. } => kill_for_fault(frame, name, None),
    }
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
    schedule();
    unreachable!("a killed process was scheduled");
}
