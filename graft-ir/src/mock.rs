//! A deterministic in-memory model of the kernel's state for the callables
//! ([`CallableState`]), with the one registration of every callable
//! ([`crate::callables::IMPLEMENTATIONS`]) behind the interpreter's [`Host`]: what `graftc run`,
//! the interpreter's tests and the differential tests of the JIT call. Argument checks, error
//! codes and two-phase locking are the callables' own (shared with the kernel); what is
//! modelled is only the state:
//! - handles with raw value 0 name nothing (`CallableFailed(BAD_HANDLE)`);
//! - file `f` is `f * 4096` bytes in 1024-byte blocks; block `b` is cached iff `b % 3 == 0`;
//! - lock number `n` is `handle<lock>:n+1`; held locks are released by [`MockHost::end_call`];
//! - `mem.alloc` hands out at most [`MockHost::MEM_BUDGET`] bytes in all, beyond which it
//!   aborts `ResourceLimit`; `mem.free` frees at commit;
//! - counters start at 0; `time.now` advances 1000 per call; `vm.page_referenced(a)` is bit 12
//!   of `a`; every positive page-aligned address is a resident page, active until
//!   `vm.page_set_active` moves it (undone by an abort); `debug.trace` records its argument.
//!
//! A host runner that models transactions calls [`MockHost::begin_call`] and
//! [`MockHost::end_call`] around each call, as the kernel's dispatch begins and ends one.

use alloc::vec::Vec;

use crate::abi::{errors, Callable};
use crate::abort::AbortReason;
use crate::callables::{self, CallableState, FileHandle, LockHandle, COUNTERS, LOCKS_PER_PROCESS};
use crate::interp::{DataValue, Host};

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MockHost {
    /// Values passed to `debug.trace`, in order.
    pub trace: Vec<i64>,
    /// The counters.
    pub counters: [i64; COUNTERS],
    /// Raw lock handles held by the call in progress.
    pub held: Vec<u64>,
    /// Live allocations: (number, size).
    pub allocations: Vec<(i32, i32)>,
    /// Allocations `mem.free` freed, to be dropped at commit.
    pub pending_frees: Vec<i32>,
    /// Reads `fs.prefetch` asked for, issued at commit: (file handle, block).
    pub pending_prefetches: Vec<(u64, i64)>,
    /// Reads issued by committed calls, in order.
    pub prefetched: Vec<(u64, i64)>,
    /// Next allocation number.
    pub next_alloc: i32,
    /// The clock.
    pub now: i64,
    /// Pages `vm.page_set_active` moved to the inactive set.
    pub inactive: Vec<i64>,
    /// What an abort restores: the counters and the number of allocations at `begin_call`.
    saved: Option<([i64; COUNTERS], usize)>,
    saved_inactive: Option<Vec<i64>>,
}

/// What ending a call released or undid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallEnd {
    /// Locks the call still held (two-phase locking releases them at the end).
    pub locks_released: usize,
    /// Allocations the call made, undone by an abort.
    pub allocations_undone: usize,
    /// Allocations freed at commit.
    pub allocations_freed: usize,
}

impl MockHost {
    /// Bytes `mem.alloc` can hand out in total.
    pub const MEM_BUDGET: i64 = 64 * 1024;

    /// A transaction begins: remember what an abort restores.
    pub fn begin_call(&mut self) {
        self.saved = Some((self.counters, self.allocations.len()));
        self.saved_inactive = Some(self.inactive.clone());
    }

    /// The transaction ends: on commit the deferred frees happen; on abort the counters and
    /// the call's allocations are undone and the deferred frees dropped. Either way the locks
    /// are released.
    pub fn end_call(&mut self, committed: bool) -> CallEnd {
        let mut end = CallEnd { locks_released: self.held.len(), ..CallEnd::default() };
        self.held.clear();
        let frees = core::mem::take(&mut self.pending_frees);
        let prefetches = core::mem::take(&mut self.pending_prefetches);
        if committed {
            self.prefetched.extend(prefetches);
            let before = self.allocations.len();
            self.allocations.retain(|a| !frees.contains(&a.0));
            end.allocations_freed = before - self.allocations.len();
        } else if let Some((counters, allocs)) = self.saved {
            self.counters = counters;
            end.allocations_undone = self.allocations.len().saturating_sub(allocs);
            self.allocations.truncate(allocs);
            if let Some(inactive) = self.saved_inactive.take() {
                self.inactive = inactive;
            }
        }
        self.saved = None;
        self.saved_inactive = None;
        end
    }
}

fn bad_handle() -> AbortReason {
    AbortReason::CallableFailed(errors::BAD_HANDLE)
}

impl CallableState for MockHost {
    fn counter(&mut self, n: usize) -> Result<i64, AbortReason> {
        self.counters.get(n).copied().ok_or(AbortReason::CallableFailed(errors::BAD_ARGUMENT))
    }
    fn set_counter(&mut self, n: usize, _old: i64, new: i64) -> Result<(), AbortReason> {
        let c = self.counters.get_mut(n).ok_or(AbortReason::CallableFailed(errors::BAD_ARGUMENT))?;
        *c = new;
        Ok(())
    }
    fn trace(&mut self, value: i64) {
        self.trace.push(value);
    }
    fn now_ns(&mut self) -> i64 {
        self.now += 1000;
        self.now
    }
    fn memory_limit(&self) -> u64 {
        Self::MEM_BUDGET as u64
    }
    fn alloc(&mut self, size: u32) -> Result<u32, AbortReason> {
        let used: i64 = self.allocations.iter().map(|a| i64::from(a.1)).sum();
        if used + i64::from(size) > Self::MEM_BUDGET {
            return Err(AbortReason::ResourceLimit);
        }
        self.next_alloc += 1;
        self.allocations.push((self.next_alloc, size as i32));
        Ok(self.next_alloc as u32)
    }
    fn alloc_exists(&mut self, id: u32) -> bool {
        self.allocations.iter().any(|a| a.0 as u32 == id)
    }
    fn free_at_commit(&mut self, id: u32) -> Result<(), AbortReason> {
        self.pending_frees.push(id as i32);
        Ok(())
    }
    fn lock_get(&mut self, n: u32) -> Result<LockHandle, AbortReason> {
        Ok(LockHandle(u64::from(n) + 1))
    }
    fn lock_of(&mut self, h: LockHandle) -> Result<u32, AbortReason> {
        if (1..=LOCKS_PER_PROCESS as u64).contains(&h.0) { Ok(h.0 as u32 - 1) } else { Err(bad_handle()) }
    }
    fn lock_held(&mut self, lock: u32) -> bool {
        self.held.contains(&(u64::from(lock) + 1))
    }
    fn lock_acquire(&mut self, lock: u32) -> Result<(), AbortReason> {
        self.held.push(u64::from(lock) + 1);
        Ok(())
    }
    fn file_size(&mut self, f: FileHandle) -> Result<i64, AbortReason> {
        if f.0 == 0 {
            return Err(bad_handle());
        }
        Ok((f.0 as i64).saturating_mul(4096))
    }
    fn block_size(&mut self, f: FileHandle) -> Result<i32, AbortReason> {
        if f.0 == 0 {
            return Err(bad_handle());
        }
        Ok(1024)
    }
    fn block_cached(&mut self, _f: FileHandle, block: i64) -> Result<bool, AbortReason> {
        Ok(block % 3 == 0)
    }
    fn prefetch_at_commit(&mut self, f: FileHandle, block: i64) -> Result<(), AbortReason> {
        self.pending_prefetches.push((f.0, block));
        Ok(())
    }
    fn page_referenced(&mut self, vaddr: i64) -> Result<bool, AbortReason> {
        Ok((vaddr >> 12) & 1 == 1)
    }
    fn page_set_active(&mut self, vaddr: i64, active: bool) -> Result<Option<bool>, AbortReason> {
        if vaddr <= 0 || vaddr & 0xfff != 0 {
            return Ok(None);
        }
        let was = !self.inactive.contains(&vaddr);
        self.inactive.retain(|&a| a != vaddr);
        if !active {
            self.inactive.push(vaddr);
        }
        Ok(Some(was))
    }
}

impl Host for MockHost {
    fn call(&mut self, c: &'static Callable, args: &[DataValue]) -> Result<Option<DataValue>, AbortReason> {
        let mut bits = [0u64; crate::limits::MAX_PARAMS];
        let n = args.len().min(bits.len());
        for (b, a) in bits.iter_mut().zip(args) {
            *b = a.to_bits();
        }
        let r = callables::call(c, self, &bits[..n])?;
        Ok(c.ret.map(|t| DataValue::from_bits(t, r)))
    }
}
