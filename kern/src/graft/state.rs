//! Kernel state that grafts can change through callables: per-process counters and graft-charged
//! memory allocations. Every change made through a callable is logged for undo first, and a
//! digest of the whole state lets tests check that an aborted call left no trace.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use spin::Mutex;

pub use crate::task::ProcessId;

pub const COUNTERS: usize = 16;

/// Memory a process's grafts may hold through `mem.alloc`, in bytes.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * 1024;

#[derive(Default)]
struct ProcessState {
    counters: [i64; COUNTERS],
    /// Allocation number -> the memory itself (kept so that the charge is real kernel memory).
    allocations: BTreeMap<u32, Vec<u8>>,
    next_alloc: u32,
    charged: u64,
}

static STATE: Mutex<BTreeMap<ProcessId, ProcessState>> = Mutex::new(BTreeMap::new());

fn with<R>(pid: ProcessId, f: impl FnOnce(&mut ProcessState) -> R) -> R {
    crate::sync::without_interrupts(|| {
        let mut all = STATE.lock();
        f(all.entry(pid).or_default())
    })
}

pub fn counter(pid: ProcessId, n: usize) -> Option<i64> {
    (n < COUNTERS).then(|| with(pid, |p| p.counters[n]))
}

/// Sets counter `n` and returns its old value.
pub fn set_counter(pid: ProcessId, n: usize, value: i64) -> Option<i64> {
    (n < COUNTERS).then(|| with(pid, |p| core::mem::replace(&mut p.counters[n], value)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The request would take the process past its limit.
    OverLimit { requested: u64, charged: u64, limit: u64 },
    BadSize(i64),
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
        p.next_alloc = p.next_alloc.wrapping_add(1).max(1);
        let id = p.next_alloc;
        p.allocations.insert(id, alloc::vec![0; size as usize]);
        p.charged += size;
        Ok(id)
    })
}

/// Frees allocation `id` of `pid`; false if there is none.
pub fn free(pid: ProcessId, id: u32) -> bool {
    with(pid, |p| match p.allocations.remove(&id) {
        Some(mem) => {
            p.charged -= mem.len() as u64;
            true
        }
        None => false,
    })
}

/// Undoes `alloc` that returned `id`: frees it and gives the number back, so that the state is
/// exactly as before the allocation.
pub fn undo_alloc(pid: ProcessId, id: u32) {
    with(pid, |p| {
        if let Some(mem) = p.allocations.remove(&id) {
            p.charged -= mem.len() as u64;
        }
        if p.next_alloc == id {
            p.next_alloc = id.wrapping_sub(1);
        }
    })
}

pub fn exists(pid: ProcessId, id: u32) -> bool {
    with(pid, |p| p.allocations.contains_key(&id))
}

/// Forgets everything held for `pid` (its process ended): counters and allocations, whose
/// memory goes back to the kernel.
pub fn forget(pid: ProcessId) {
    crate::sync::without_interrupts(|| {
        STATE.lock().remove(&pid);
    });
}

/// Processes the state holds anything for (tests check it returns to its baseline).
pub fn processes() -> usize {
    crate::sync::without_interrupts(|| STATE.lock().len())
}

/// Bytes charged to `pid` by its grafts' allocations.
pub fn charged(pid: ProcessId) -> u64 {
    with(pid, |p| p.charged)
}

/// A digest (FNV-1a) of everything above for `pid`: equal digests before and after a call mean
/// the call left this state as it found it.
pub fn digest(pid: ProcessId) -> u64 {
    with(pid, |p| {
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
        h
    })
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
}
