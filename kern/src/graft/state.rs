//! Kernel state that grafts can change through callables (per-process counters and
//! graft-charged memory allocations), and the kernel memory each process is charged for.
//! Every change made through a callable is logged for undo first, and a digest of the whole
//! state lets tests check that an aborted call left no trace.
//!
//! **Charges.** Everything the kernel allocates because a process asked (a loaded graft's
//! decoded module, data region and code, its grafts' `mem.alloc` memory) is charged to the
//! process against `KERNEL_MEMORY_PER_PROCESS` before it is allocated, and admitted only if the
//! kernel would still have `KERNEL_RESERVE` bytes free afterwards: past either, the process is
//! answered `NoMemory` (a graft call aborts `ResourceLimit`); the kernel and other processes
//! are not affected. A `Charge` gives its bytes back when dropped; a process's end forgets its
//! entry (`forget`). The table itself grows fallibly: no allocation here can end the kernel.
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

pub use crate::task::ProcessId;

pub const COUNTERS: usize = 16;

/// Memory a process's grafts may hold through `mem.alloc`, in bytes.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * 1024;
/// Most `mem.alloc` allocations a process's grafts may hold at once.
pub const MAX_ALLOCATIONS: usize = 1024;
/// Kernel memory one process may be charged for, in bytes.
pub const KERNEL_MEMORY_PER_PROCESS: u64 = 32 * 1024 * 1024;
/// Bytes the kernel keeps for itself: a charge that would leave less free is refused.
pub const KERNEL_RESERVE: u64 = 12 * 1024 * 1024;

#[derive(Default)]
struct ProcessState {
    counters: [i64; COUNTERS],
    /// Allocation number -> the memory itself (kept so that the charge is real kernel memory),
    /// in increasing order of number.
    allocations: Vec<(u32, Vec<u8>)>,
    next_alloc: u32,
    /// Bytes of `mem.alloc` memory held (limited by the graft's memory limit).
    charged: u64,
    /// Kernel memory charged to the process in all (`mem.alloc` memory included).
    kernel: u64,
}

static STATE: Mutex<Vec<(ProcessId, ProcessState)>> = Mutex::new(Vec::new());

/// Runs `f` on `pid`'s state, if it has any.
fn with_existing<R>(pid: ProcessId, f: impl FnOnce(&mut ProcessState) -> R) -> Option<R> {
    crate::sync::without_interrupts(|| {
        let mut all = STATE.lock();
        all.iter_mut().find(|(p, _)| *p == pid).map(|(_, st)| f(st))
    })
}

/// Runs `f` on `pid`'s state, making it if needed; `None` if there is no memory for it.
fn with<R>(pid: ProcessId, f: impl FnOnce(&mut ProcessState) -> R) -> Option<R> {
    crate::sync::without_interrupts(|| {
        let mut all = STATE.lock();
        let i = match all.iter().position(|(p, _)| *p == pid) {
            Some(i) => i,
            None => {
                all.try_reserve(1).ok()?;
                all.push((pid, ProcessState::default()));
                all.len() - 1
            }
        };
        Some(f(&mut all[i].1))
    })
}

pub fn counter(pid: ProcessId, n: usize) -> Option<i64> {
    (n < COUNTERS).then(|| with_existing(pid, |p| p.counters[n]).unwrap_or(0))
}

/// Sets counter `n` and returns its old value (`None`: no such counter, or no memory).
pub fn set_counter(pid: ProcessId, n: usize, value: i64) -> Option<i64> {
    if n >= COUNTERS {
        return None;
    }
    with(pid, |p| core::mem::replace(&mut p.counters[n], value))
}

/// Why kernel memory could not be charged to a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeError {
    /// The process would go past its budget.
    OverBudget { requested: u64, charged: u64, budget: u64 },
    /// The kernel would be left with less than its reserve.
    SystemLow { requested: u64, free: u64, reserve: u64 },
    /// No memory even for the bookkeeping.
    NoMemory,
}

impl fmt::Display for ChargeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ChargeError::OverBudget { requested, charged, budget } => write!(
                f,
                "{requested} bytes of kernel memory would take the process past its budget ({charged} of {budget} charged)"
            ),
            ChargeError::SystemLow { requested, free, reserve } => {
                write!(f, "{requested} bytes of kernel memory refused: {free} free, the kernel keeps {reserve}")
            }
            ChargeError::NoMemory => write!(f, "no kernel memory for the process's bookkeeping"),
        }
    }
}

/// Bytes the kernel could still hand out.
fn system_free() -> u64 {
    #[cfg(target_os = "none")]
    {
        crate::memory::free_bytes()
    }
    #[cfg(not(target_os = "none"))]
    {
        u64::MAX / 2
    }
}

/// Checks a charge of `bytes` to `p` (against the budget and the kernel's free memory) and
/// records it.
fn take(p: &mut ProcessState, bytes: u64) -> Result<(), ChargeError> {
    if p.kernel.saturating_add(bytes) > KERNEL_MEMORY_PER_PROCESS {
        return Err(ChargeError::OverBudget { requested: bytes, charged: p.kernel, budget: KERNEL_MEMORY_PER_PROCESS });
    }
    let free = system_free();
    if free < bytes.saturating_add(KERNEL_RESERVE) {
        return Err(ChargeError::SystemLow { requested: bytes, free, reserve: KERNEL_RESERVE });
    }
    p.kernel += bytes;
    Ok(())
}

/// Kernel memory charged to a process; given back when dropped (if the process still exists).
#[must_use = "dropping a charge gives its bytes back at once"]
#[derive(Debug)]
pub struct Charge {
    pid: ProcessId,
    bytes: u64,
}

impl Charge {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Changes the charge to `bytes` (what was really allocated, once known); growing it is
    /// checked like a new charge.
    pub fn resize(&mut self, bytes: u64) -> Result<(), ChargeError> {
        if bytes > self.bytes {
            let more = bytes - self.bytes;
            with_existing(self.pid, |p| take(p, more)).unwrap_or(Err(ChargeError::NoMemory))?;
        } else {
            let less = self.bytes - bytes;
            with_existing(self.pid, |p| p.kernel = p.kernel.saturating_sub(less));
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let bytes = self.bytes;
        with_existing(self.pid, |p| p.kernel = p.kernel.saturating_sub(bytes));
    }
}

/// Charges `bytes` of kernel memory to `pid` (before allocating them).
pub fn charge(pid: ProcessId, bytes: u64) -> Result<Charge, ChargeError> {
    with(pid, |p| take(p, bytes)).unwrap_or(Err(ChargeError::NoMemory))?;
    Ok(Charge { pid, bytes })
}

/// Kernel memory charged to `pid` now.
pub fn kernel_charged(pid: ProcessId) -> u64 {
    with_existing(pid, |p| p.kernel).unwrap_or(0)
}

/// Kernel memory charged to all processes.
pub fn total_charged() -> u64 {
    crate::sync::without_interrupts(|| STATE.lock().iter().map(|(_, p)| p.kernel).sum())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The request would take the process past its limit.
    OverLimit { requested: u64, charged: u64, limit: u64 },
    BadSize(i64),
    /// The process's kernel-memory budget, or the kernel's free memory, refused it.
    NoMemory,
    /// The process holds `MAX_ALLOCATIONS` allocations.
    TooMany,
}

/// Allocates `size` bytes charged to `pid`, up to `limit` in total; returns the allocation number.
pub fn alloc(pid: ProcessId, size: i64, limit: u64) -> Result<u32, AllocError> {
    if !(1..=limit as i64).contains(&size) {
        return Err(AllocError::BadSize(size));
    }
    let size = size as u64;
    with(pid, |p| {
        if p.charged + size > limit {
            return Err(AllocError::OverLimit { requested: size, charged: p.charged, limit });
        }
        if p.allocations.len() >= MAX_ALLOCATIONS {
            return Err(AllocError::TooMany);
        }
        take(p, size).map_err(|_| AllocError::NoMemory)?;
        let mut mem = Vec::new();
        if mem.try_reserve_exact(size as usize).is_err() || p.allocations.try_reserve(1).is_err() {
            p.kernel -= size;
            return Err(AllocError::NoMemory);
        }
        mem.resize(size as usize, 0);
        p.next_alloc = p.next_alloc.wrapping_add(1).max(1);
        let id = p.next_alloc;
        // Numbers increase (a wrap after 2^32 allocations puts the new one first).
        let at = p.allocations.partition_point(|(n, _)| *n < id);
        p.allocations.insert(at, (id, mem));
        p.charged += size;
        Ok(id)
    })
    .unwrap_or(Err(AllocError::NoMemory))
}

/// Takes allocation `id` out of `p`, giving back its charges.
fn remove(p: &mut ProcessState, id: u32) -> bool {
    match p.allocations.binary_search_by_key(&id, |(n, _)| *n) {
        Ok(i) => {
            let (_, mem) = p.allocations.remove(i);
            p.charged -= mem.len() as u64;
            p.kernel = p.kernel.saturating_sub(mem.len() as u64);
            true
        }
        Err(_) => false,
    }
}

/// Frees allocation `id` of `pid`; false if there is none.
pub fn free(pid: ProcessId, id: u32) -> bool {
    with_existing(pid, |p| remove(p, id)).unwrap_or(false)
}

/// Undoes `alloc` that returned `id`: frees it and gives the number back, so that the state is
/// exactly as before the allocation.
pub fn undo_alloc(pid: ProcessId, id: u32) {
    with_existing(pid, |p| {
        remove(p, id);
        if p.next_alloc == id {
            p.next_alloc = id.wrapping_sub(1);
        }
    });
}

pub fn exists(pid: ProcessId, id: u32) -> bool {
    with_existing(pid, |p| p.allocations.binary_search_by_key(&id, |(n, _)| *n).is_ok()).unwrap_or(false)
}

/// Forgets everything held for `pid` (its process ended): counters, allocations and charges,
/// whose memory goes back to the kernel.
pub fn forget(pid: ProcessId) {
    let gone = crate::sync::without_interrupts(|| {
        let mut all = STATE.lock();
        all.iter().position(|(p, _)| *p == pid).map(|i| all.swap_remove(i))
    });
    // The allocations are freed here, outside the lock.
    drop(gone);
}

/// Processes the state holds anything for (tests check it returns to its baseline).
pub fn processes() -> usize {
    crate::sync::without_interrupts(|| STATE.lock().len())
}

/// Bytes charged to `pid` by its grafts' allocations.
pub fn charged(pid: ProcessId) -> u64 {
    with_existing(pid, |p| p.charged).unwrap_or(0)
}

/// A digest (FNV-1a) of everything above for `pid`: equal digests before and after a call mean
/// the call left this state as it found it.
pub fn digest(pid: ProcessId) -> u64 {
    // A process with no entry has the default state (a missing entry and an empty one are the
    // same state).
    with_existing(pid, |p| digest_of(p)).unwrap_or_else(|| digest_of(&ProcessState::default()))
}

fn digest_of(p: &ProcessState) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    p.counters.iter().for_each(|&c| eat(c as u64));
    for (id, mem) in &p.allocations {
        eat(u64::from(*id));
        eat(mem.len() as u64);
    }
    eat(p.charged);
    eat(u64::from(p.next_alloc));
    eat(p.kernel);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_charged_and_limited() {
        let pid = ProcessId(1001);
        let a = alloc(pid, 100, 150).unwrap();
        assert_eq!(charged(pid), 100);
        assert_eq!(alloc(pid, 60, 150), Err(AllocError::OverLimit { requested: 60, charged: 100, limit: 150 }));
        assert_eq!(alloc(pid, 0, 150), Err(AllocError::BadSize(0)));
        assert!(free(pid, a));
        assert!(!free(pid, a));
        assert_eq!(charged(pid), 0);
    }

    #[test]
    fn digest_sees_every_change() {
        let pid = ProcessId(1002);
        let d0 = digest(pid);
        set_counter(pid, 3, 1);
        let d1 = digest(pid);
        assert_ne!(d0, d1);
        set_counter(pid, 3, 0);
        assert_eq!(digest(pid), d0);
        let a = alloc(pid, 8, 64).unwrap();
        assert_ne!(digest(pid), d0);
        free(pid, a);
        assert_ne!(digest(pid), d0, "the allocation counter moved: a real difference");
        let d2 = digest(pid);
        let b = alloc(pid, 8, 64).unwrap();
        undo_alloc(pid, b);
        assert_eq!(digest(pid), d2, "an undone allocation leaves no trace");
        assert_eq!(counter(pid, COUNTERS), None);
    }

    #[test]
    fn charges_are_bounded_per_process_and_given_back() {
        let pid = ProcessId(1003);
        let a = charge(pid, KERNEL_MEMORY_PER_PROCESS - 100).unwrap();
        assert_eq!(kernel_charged(pid), KERNEL_MEMORY_PER_PROCESS - 100);
        assert!(matches!(charge(pid, 101), Err(ChargeError::OverBudget { .. })));
        assert_eq!(alloc(pid, 200, 1000), Err(AllocError::NoMemory), "mem.alloc counts in the budget");
        let mut b = charge(pid, 100).unwrap();
        assert!(b.resize(101).is_err());
        b.resize(10).unwrap();
        assert_eq!(kernel_charged(pid), KERNEL_MEMORY_PER_PROCESS - 90);
        drop(a);
        drop(b);
        assert_eq!(kernel_charged(pid), 0);
        let id = alloc(pid, 300, 1000).unwrap();
        assert_eq!(kernel_charged(pid), 300);
        assert!(free(pid, id));
        assert_eq!(kernel_charged(pid), 0);
        let c = charge(pid, 5).unwrap();
        forget(pid);
        drop(c);
        assert_eq!(kernel_charged(pid), 0);
        assert_eq!(digest(pid), digest(ProcessId(99_999)), "nothing is kept for a forgotten process");
    }

    #[test]
    fn allocations_are_bounded_in_number() {
        let pid = ProcessId(1004);
        for _ in 0..MAX_ALLOCATIONS {
            alloc(pid, 1, 1 << 20).unwrap();
        }
        assert_eq!(alloc(pid, 1, 1 << 20), Err(AllocError::TooMany));
        assert!(free(pid, 17) && !exists(pid, 17) && exists(pid, 18));
        forget(pid);
    }
}
