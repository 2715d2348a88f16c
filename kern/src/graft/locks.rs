//! Kernel locks that grafts may take through callables.
//!
//! Each lock records its holder (the thread whose transaction took it). A graft never releases
//! a lock itself: its transaction does, at the outermost commit or abort, so no graft can leave
//! a lock held. When another thread waits on a lock longer than the time-out, the holder is
//! *doomed*: its transaction aborts (and so releases the lock) the next time it runs a check
//! point, which for a preempted thread is when it next runs.
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Most processes that can exist at once (`task::MAX_PROCESSES`, checked in kernel builds).
const PROCESSES: usize = 128;
/// Number of graft-reachable locks: enough for every lock number of every process that can
/// exist at once, so that no process, by using all of its lock numbers, can leave another
/// without (`lock.get` never finds the pool empty while the process ceiling holds).
pub const LOCKS: usize = PROCESSES * graft_ir::callables::LOCKS_PER_PROCESS as usize;
#[cfg(target_os = "none")]
const _: () = assert!(PROCESSES >= crate::task::MAX_PROCESSES);
/// Largest thread id that can hold a lock or be doomed.
pub const MAX_OWNERS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockId(pub u32);

/// A thread that can hold locks. 0 is reserved for "nobody".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockError {
    NoSuchLock(LockId),
    /// Held by another owner.
    Contended { lock: LockId, holder: Owner },
    /// Owner id outside `1..MAX_OWNERS`.
    BadOwner(Owner),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LockError::NoSuchLock(l) => write!(f, "no lock {}", l.0),
            LockError::Contended { lock, holder } => write!(f, "lock {} is held by thread {}", lock.0, holder.0),
            LockError::BadOwner(o) => write!(f, "thread id {} cannot hold locks", o.0),
        }
    }
}

pub struct LockTable {
    holders: [AtomicU32; LOCKS],
    doomed: [AtomicBool; MAX_OWNERS],
}

impl LockTable {
    pub const fn new() -> LockTable {
        LockTable { holders: [const { AtomicU32::new(0) }; LOCKS], doomed: [const { AtomicBool::new(false) }; MAX_OWNERS] }
    }

    fn slot(&self, lock: LockId) -> Result<&AtomicU32, LockError> {
        self.holders.get(lock.0 as usize).ok_or(LockError::NoSuchLock(lock))
    }

    pub fn try_acquire(&self, lock: LockId, owner: Owner) -> Result<(), LockError> {
        if owner.0 == 0 || owner.0 as usize >= MAX_OWNERS {
            return Err(LockError::BadOwner(owner));
        }
        match self.slot(lock)?.compare_exchange(0, owner.0, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(h) if h == owner.0 => Ok(()),
            Err(h) => Err(LockError::Contended { lock, holder: Owner(h) }),
        }
    }

    /// Releases `lock` if `owner` holds it (a release by anyone else is ignored).
    pub fn release(&self, lock: LockId, owner: Owner) {
        if let Ok(slot) = self.slot(lock) {
            let _ = slot.compare_exchange(owner.0, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    pub fn holder(&self, lock: LockId) -> Option<Owner> {
        match self.slot(lock).ok()?.load(Ordering::Acquire) {
            0 => None,
            h => Some(Owner(h)),
        }
    }

    /// Number of locks held by anyone (the runtime's tests check it returns to zero).
    pub fn held(&self) -> usize {
        self.holders.iter().filter(|h| h.load(Ordering::Relaxed) != 0).count()
    }

    /// Marks `owner`'s transaction for abort.
    pub fn doom(&self, owner: Owner) {
        if let Some(d) = self.doomed.get(owner.0 as usize) {
            d.store(true, Ordering::Release);
        }
    }

    /// Whether `owner` was doomed; clears the mark (the caller aborts now).
    pub fn take_doom(&self, owner: Owner) -> bool {
        // A load first: the mark is almost never set.
        self.doomed
            .get(owner.0 as usize)
            .is_some_and(|d| d.load(Ordering::Relaxed) && d.swap(false, Ordering::AcqRel))
    }

    /// Waits for `lock` on behalf of `owner`. `now` reads a clock, `wait` lets others run. After
    /// `timeout` the holder is doomed (its transaction will abort and release the lock); after
    /// twice that the waiter gives up with the contention error.
    pub fn acquire_waiting(
        &self,
        lock: LockId,
        owner: Owner,
        timeout: u64,
        now: impl Fn() -> u64,
        mut wait: impl FnMut(),
    ) -> Result<(), LockError> {
        let start = now();
        let mut doomed_holder = false;
        loop {
            match self.try_acquire(lock, owner) {
                Err(LockError::Contended { holder, .. }) => {
                    let waited = now().saturating_sub(start);
                    if waited >= timeout && !doomed_holder {
                        self.doom(holder);
                        doomed_holder = true;
                    }
                    if waited >= timeout.saturating_mul(2) {
                        return Err(LockError::Contended { lock, holder });
                    }
                    wait();
                }
                other => return other,
            }
        }
    }
}

/// Lock-owner identities (the number a transaction holds locks under), handed out to threads
/// when they are made and taken back when they are freed, so that the fixed range
/// `1..MAX_OWNERS` serves any number of threads over the system's life.
pub struct OwnerPool {
    /// Bit `i` set: owner `i` is in use. Owner 0 ("nobody") is always in use.
    used: [AtomicU64; MAX_OWNERS / 64],
}

impl OwnerPool {
    pub const fn new() -> OwnerPool {
        let mut used = [const { AtomicU64::new(0) }; MAX_OWNERS / 64];
        used[0] = AtomicU64::new(1);
        OwnerPool { used }
    }

    /// A free owner id, or `None` when all `MAX_OWNERS - 1` are in use.
    pub fn alloc(&self) -> Option<Owner> {
        for (w, word) in self.used.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(cur, cur | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Some(Owner(w as u32 * 64 + bit)),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Gives `owner` back. The caller guarantees it holds no lock any more; a doom mark left on
    /// it is cleared so that the next user of the id does not inherit it.
    pub fn free(&self, owner: Owner, table: &LockTable) {
        let i = owner.0 as usize;
        if i == 0 || i >= MAX_OWNERS {
            return;
        }
        table.take_doom(owner);
        self.used[i / 64].fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
    }

    /// Owner ids in use (owner 0 not counted).
    pub fn in_use(&self) -> usize {
        self.used.iter().map(|w| w.load(Ordering::Relaxed).count_ones() as usize).sum::<usize>() - 1
    }
}

impl Default for OwnerPool {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(MAX_OWNERS.is_multiple_of(64));

/// The owner ids of the kernel's transaction logs (one per thread, one per CPU's idle loop).
pub static OWNERS: OwnerPool = OwnerPool::new();

impl Default for LockTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn one_holder_at_a_time_and_only_the_holder_releases() {
        let t = LockTable::new();
        t.try_acquire(LockId(1), Owner(5)).unwrap();
        t.try_acquire(LockId(1), Owner(5)).unwrap();
        assert_eq!(t.try_acquire(LockId(1), Owner(6)), Err(LockError::Contended { lock: LockId(1), holder: Owner(5) }));
        t.release(LockId(1), Owner(6));
        assert_eq!(t.holder(LockId(1)), Some(Owner(5)));
        t.release(LockId(1), Owner(5));
        assert_eq!(t.held(), 0);
        assert_eq!(t.try_acquire(LockId(LOCKS as u32), Owner(5)), Err(LockError::NoSuchLock(LockId(LOCKS as u32))));
        assert_eq!(t.try_acquire(LockId(0), Owner(0)), Err(LockError::BadOwner(Owner(0))));
    }

    #[test]
    fn a_waiter_past_the_timeout_dooms_the_holder_and_gets_the_lock_once_it_aborts() {
        let t = LockTable::new();
        t.try_acquire(LockId(3), Owner(7)).unwrap();
        let clock = Cell::new(0u64);
        // Each wait advances time; once the holder is doomed it "runs", sees the doom, aborts.
        let r = t.acquire_waiting(LockId(3), Owner(8), 10, || clock.get(), || {
            clock.set(clock.get() + 1);
            if t.take_doom(Owner(7)) {
                t.release(LockId(3), Owner(7));
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(t.holder(LockId(3)), Some(Owner(8)));
        assert!(clock.get() >= 10, "the holder was doomed only after the timeout");
    }

    #[test]
    fn owner_ids_are_recycled_and_a_freed_id_carries_no_doom() {
        let pool = OwnerPool::new();
        let table = LockTable::new();
        let all: Vec<Owner> = core::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(all.len(), MAX_OWNERS - 1, "every id but 0 is handed out once");
        assert!(all.iter().all(|o| o.0 != 0));
        assert_eq!(pool.in_use(), MAX_OWNERS - 1);
        table.doom(Owner(77));
        pool.free(Owner(77), &table);
        assert_eq!(pool.alloc(), Some(Owner(77)), "a freed id is handed out again");
        assert!(!table.take_doom(Owner(77)), "the new holder of the id is not doomed");
        pool.free(Owner(0), &table);
        assert_eq!(pool.alloc(), None, "owner 0 is never handed out");
    }

    #[test]
    fn a_holder_that_never_aborts_makes_the_waiter_give_up() {
        let t = LockTable::new();
        t.try_acquire(LockId(3), Owner(7)).unwrap();
        let clock = Cell::new(0u64);
        let r = t.acquire_waiting(LockId(3), Owner(8), 10, || clock.get(), || clock.set(clock.get() + 1));
        assert_eq!(r, Err(LockError::Contended { lock: LockId(3), holder: Owner(7) }));
        assert!(t.take_doom(Owner(7)));
        assert!(!t.take_doom(Owner(7)), "the doom mark is taken once");
    }
}
