//! Virtual memory policy: each process's resident set under the two-handed clock, its pages on
//! the swap disk, and the counters the `vm_limit` call reports. The fault and eviction path that
//! uses them (it needs the task tables) is `task::process`; this module owns the state and the
//! policy, and the swap disk's slots and I/O.
//!
//! | module | owns |
//! |---|---|
//! | `clock` | the two-handed clock over one process's resident pages (host-tested) |
//! | `slots` | the swap disk's slot bitmap (host-tested) |
//! | `swap` | the swap disk (`vdb`): the global slot map, page reads and writes (kernel only) |
//!
//! A pageable page of a process is in exactly one of these states: not yet touched (neither
//! resident nor in swap: the next fault zero-fills it), resident (in the clock; with a slot in
//! `swapped` too when swap holds a clean copy of it), in transit (`transit`: being written out
//! or read in, the faulting thread sleeping on the disk with no lock held), or swapped out (in
//! `swapped` only).
use alloc::vec::Vec;

pub mod clock;
pub mod slots;
#[cfg(target_os = "none")]
pub mod swap;

use clock::Clock;
use slots::Slot;

/// What user page faults cost the kernel, from the fault handler's entry to its return: the
/// time-stamp counter (guest instructions under `-icount`, as `./run.sh bench` runs), summed.
#[cfg(target_os = "none")]
pub mod cost {
    use core::sync::atomic::{AtomicU64, Ordering};

    static FAULTS: AtomicU64 = AtomicU64::new(0);
    static TICKS: AtomicU64 = AtomicU64::new(0);

    pub fn record(ticks: u64) {
        FAULTS.fetch_add(1, Ordering::Relaxed);
        TICKS.fetch_add(ticks, Ordering::Relaxed);
    }

    /// Faults and their summed cost since the last call.
    pub fn take() -> (u64, u64) {
        (FAULTS.swap(0, Ordering::Relaxed), TICKS.swap(0, Ordering::Relaxed))
    }
}

/// Most candidates the clock proposes to `vm.pick_victim` per eviction.
pub const WINDOW: usize = 24;
/// The system-wide ceiling on a process's resident-set limit, in pages (the default limit).
pub const RESIDENT_CEILING: u64 = 8192;
/// The lowest limit a process may set: below it a single instruction touching a few pages
/// (code, stack, two operands) could fault forever.
pub const RESIDENT_FLOOR: u64 = 16;
/// Free frames (beyond the kernel's reserve) under which a fault first gives back one of its
/// own process's pages before taking a new frame: memory pressure is paid by the process that
/// asks for more, never by another process.
pub const LOW_WATER_FRAMES: u64 = 256;
/// Clean pages taken at most from a process over its share per fault under memory pressure.
pub const TRIM_BATCH: usize = 8;

/// The low-water mark in use (`LOW_WATER_FRAMES`; tests raise it to make memory look short).
#[cfg(target_os = "none")]
static LOW_WATER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(LOW_WATER_FRAMES);

#[cfg(target_os = "none")]
pub fn low_water() -> u64 {
    LOW_WATER.load(core::sync::atomic::Ordering::Relaxed)
}

/// Sets the low-water mark (for tests; `LOW_WATER_FRAMES` is the normal value).
#[cfg(target_os = "none")]
pub fn set_low_water(frames: u64) {
    LOW_WATER.store(frames, core::sync::atomic::Ordering::Relaxed);
}

/// How many pages of a process with `resident` pages to trim when the resident pages of the
/// `processes` processes that have any add up to `total`: what it holds over an equal share,
/// at most `TRIM_BATCH`, never below the floor.
pub fn over_share(resident: usize, total: usize, processes: usize) -> usize {
    let share = (total / processes.max(1)).max(RESIDENT_FLOOR as usize);
    resident.saturating_sub(share).min(TRIM_BATCH)
}

/// Pages to their swap slots, as a sorted vector: insertion reports a failed allocation
/// (the fault path must not panic when the heap is short, nor when a test makes it fail).
#[derive(Debug, Default)]
pub struct SlotTable {
    entries: Vec<(u64, Slot)>,
}

impl SlotTable {
    pub const fn new() -> SlotTable {
        SlotTable { entries: Vec::new() }
    }

    fn find(&self, va: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&va, |e| e.0)
    }

    pub fn get(&self, va: u64) -> Option<Slot> {
        self.find(va).ok().map(|i| self.entries[i].1)
    }

    pub fn contains(&self, va: u64) -> bool {
        self.find(va).is_ok()
    }

    /// Records `va`'s slot (replacing any); `Err` if there is no memory for the entry.
    pub fn try_insert(&mut self, va: u64, slot: Slot) -> Result<(), VmError> {
        match self.find(va) {
            Ok(i) => self.entries[i].1 = slot,
            Err(i) => {
                self.entries.try_reserve(1).map_err(|_| VmError::NoMemory)?;
                self.entries.insert(i, (va, slot));
            }
        }
        Ok(())
    }

    pub fn remove(&mut self, va: u64) -> Option<Slot> {
        self.find(va).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, Slot)> + '_ {
        self.entries.iter().copied()
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, Slot) -> bool) {
        self.entries.retain(|&(va, s)| keep(va, s));
    }
}

/// Paging counters of one process (what `vm_limit` reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmCounters {
    pub faults: u64,
    pub zero_fills: u64,
    pub swap_ins: u64,
    pub marked_swap_ins: u64,
    pub evictions: u64,
    pub swap_outs: u64,
    pub graft_choices: u64,
    pub graft_aborts: u64,
    /// Clean pages taken from this process because memory was short and it held more than
    /// an equal share (counted in `evictions` too).
    pub trimmed: u64,
}

/// A process's pageable memory: what is resident, what swap holds, what is in flight.
#[derive(Debug)]
pub struct ProcessVm {
    pub clock: Clock,
    /// Pages with a copy on the swap disk: swapped out, or resident and clean since read in.
    pub swapped: SlotTable,
    /// Pages whose I/O is in flight, with the slot it uses.
    pub transit: SlotTable,
    /// Resident pageable pages allowed.
    pub limit: u64,
    /// Ranges `[start, end)` the process marked (`vm.pick_victim` sees flag bit 2).
    pub marked: Vec<(u64, u64)>,
    pub counters: VmCounters,
}

impl Default for ProcessVm {
    fn default() -> Self {
        ProcessVm::new()
    }
}

/// Why a mark or a limit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    /// Outside the floor and ceiling.
    BadLimit,
    /// Too many marked ranges.
    TooManyMarks,
    NoMemory,
}

/// Marked ranges a process may have.
pub const MAX_MARKS: usize = 16;

impl ProcessVm {
    pub const fn new() -> ProcessVm {
        ProcessVm {
            clock: Clock::new(),
            swapped: SlotTable::new(),
            transit: SlotTable::new(),
            limit: RESIDENT_CEILING,
            marked: Vec::new(),
            counters: VmCounters {
                faults: 0,
                zero_fills: 0,
                swap_ins: 0,
                marked_swap_ins: 0,
                evictions: 0,
                swap_outs: 0,
                graft_choices: 0,
                graft_aborts: 0,
                trimmed: 0,
            },
        }
    }

    pub fn is_marked(&self, va: u64) -> bool {
        self.marked.iter().any(|&(s, e)| (s..e).contains(&va))
    }

    /// Sets the limit (0 keeps it); returns the previous one.
    pub fn set_limit(&mut self, pages: u64) -> Result<u64, VmError> {
        let old = self.limit;
        if pages != 0 {
            if !(RESIDENT_FLOOR..=RESIDENT_CEILING).contains(&pages) {
                return Err(VmError::BadLimit);
            }
            self.limit = pages;
        }
        Ok(old)
    }

    /// Marks (`on`) or unmarks `[start, end)` (page-aligned).
    pub fn mark(&mut self, start: u64, end: u64, on: bool) -> Result<(), VmError> {
        // The ranges minus [start, end), then the range itself if marking.
        let mut out: Vec<(u64, u64)> = Vec::new();
        out.try_reserve(self.marked.len() + 2).map_err(|_| VmError::NoMemory)?;
        for &(s, e) in &self.marked {
            if e <= start || s >= end {
                out.push((s, e));
                continue;
            }
            if s < start {
                out.push((s, start));
            }
            if e > end {
                out.push((end, e));
            }
        }
        if on {
            out.push((start, end));
        }
        if out.len() > MAX_MARKS {
            return Err(VmError::TooManyMarks);
        }
        self.marked = out;
        Ok(())
    }

    /// Whether the page must be waited for (its I/O is in flight).
    pub fn in_transit(&self, va: u64) -> bool {
        self.transit.contains(va)
    }

    /// Forgets the pages of `[start, end)` (unmapped): out of the clock, their swap slots
    /// handed to `free` (a page in transit loses its entry; its I/O's completion frees the
    /// slot). Allocates nothing.
    pub fn forget_range(&mut self, start: u64, end: u64, mut free: impl FnMut(Slot)) {
        let inside = |va: u64| (start..end).contains(&va);
        self.clock.retain(|va| !inside(va));
        let transit = &self.transit;
        self.swapped.retain(|va, slot| {
            if !inside(va) {
                return true;
            }
            if !transit.contains(va) {
                free(slot);
            }
            false
        });
        self.transit.retain(|va, _| !inside(va));
    }

    /// Gives every slot the process holds back (at its end): those of swapped pages to `free`,
    /// those of pages in transit to `free_later` (their completions will never run, as the
    /// process's threads are gone, but a write may still be on its way to the slot).
    pub fn release_all(&mut self, mut free: impl FnMut(Slot), mut free_later: impl FnMut(Slot)) {
        let swapped = core::mem::take(&mut self.swapped);
        let transit = core::mem::take(&mut self.transit);
        for (va, slot) in swapped.iter() {
            if transit.get(va) != Some(slot) {
                free(slot);
            }
        }
        for (_, slot) in transit.iter() {
            free_later(slot);
        }
        self.clock = Clock::new();
    }

    /// Slots held now.
    pub fn slot_count(&self) -> usize {
        self.swapped.len() + self.transit.iter().filter(|&(va, s)| self.swapped.get(va) != Some(s)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_over_an_equal_share_is_trimmed() {
        assert_eq!(over_share(64, 96, 2), 8);
        assert_eq!(over_share(52, 96, 2), 4);
        assert_eq!(over_share(20, 96, 2), 0);
        assert_eq!(over_share(30, 40, 4), 14.min(TRIM_BATCH));
        assert_eq!(over_share(10, 10, 0), 0);
    }

    #[test]
    fn limits_stay_between_floor_and_ceiling() {
        let mut vm = ProcessVm::new();
        assert_eq!(vm.set_limit(0), Ok(RESIDENT_CEILING));
        assert_eq!(vm.set_limit(RESIDENT_FLOOR - 1), Err(VmError::BadLimit));
        assert_eq!(vm.set_limit(RESIDENT_CEILING + 1), Err(VmError::BadLimit));
        assert_eq!(vm.set_limit(64), Ok(RESIDENT_CEILING));
        assert_eq!(vm.limit, 64);
    }

    #[test]
    fn marks_split_and_merge_by_range() {
        let mut vm = ProcessVm::new();
        vm.mark(0x1000, 0x9000, true).unwrap();
        vm.mark(0x3000, 0x4000, false).unwrap();
        assert!(vm.is_marked(0x2000) && !vm.is_marked(0x3000) && vm.is_marked(0x4000) && !vm.is_marked(0x9000));
        for i in 0..MAX_MARKS as u64 {
            let _ = vm.mark(0x100000 + i * 0x2000, 0x101000 + i * 0x2000, true);
        }
        assert_eq!(vm.mark(0x900000, 0x901000, true), Err(VmError::TooManyMarks));
    }

    #[test]
    fn forgetting_a_range_gives_back_its_slots_once() {
        let mut vm = ProcessVm::new();
        vm.clock.insert(0x1000);
        vm.clock.insert(0x2000);
        vm.swapped.try_insert(0x2000, Slot(4)).unwrap();
        vm.swapped.try_insert(0x3000, Slot(5)).unwrap();
        vm.transit.try_insert(0x4000, Slot(6)).unwrap();
        vm.swapped.try_insert(0x9000, Slot(9)).unwrap();
        let mut freed = Vec::new();
        vm.forget_range(0x1000, 0x5000, |s| freed.push(s));
        assert_eq!(freed, [Slot(4), Slot(5)]);
        assert!(vm.clock.is_empty() && vm.transit.is_empty());
        assert_eq!(vm.slot_count(), 1);
        vm.transit.try_insert(0x8000, Slot(7)).unwrap();
        let (mut now, mut later) = (Vec::new(), Vec::new());
        vm.release_all(|s| now.push(s), |s| later.push(s));
        assert_eq!((now, later), (alloc::vec![Slot(9)], alloc::vec![Slot(7)]));
    }
}

#[cfg(all(feature = "ktest", target_os = "none"))]
mod ktests {
    use alloc::format;
    use alloc::vec::Vec;

    use graft_ir::AbortReason;

    use crate::arch;
    use crate::graft::callables::{self, CallCtx, LOCKS};
    use crate::graft::locks::OWNERS;
    use crate::graft::points::{self, VictimCandidate};
    use crate::graft::runtime::{self, Outcome};
    use crate::graft::txn::TxnLog;
    use crate::ktest::TestFailure;
    use crate::task::{self, ProcessId};
    use crate::{check, check_eq, ktest};

    const PAGES: u64 = 12;

    fn fail(message: alloc::string::String) -> TestFailure {
        TestFailure { message, file: file!(), line: line!() }
    }

    /// Starts `dbsim hold` (PAGES marked pages, written, then a long sleep) and runs threads
    /// until its pages are resident.
    fn holding_process() -> Result<ProcessId, TestFailure> {
        let pages = format!("{PAGES}");
        let pid = task::spawn("bin/dbsim", &["bin/dbsim", "hold", &pages, "3000"], None).map_err(|e| fail(format!("spawn: {e:?}")))?;
        let start = crate::time::uptime_ms();
        loop {
            let s = task::vm_stats(pid).ok_or_else(|| fail(format!("process {} is gone", pid.0)))?;
            if s.zero_fills >= PAGES && s.resident >= PAGES {
                return Ok(pid);
            }
            if crate::time::uptime_ms() - start > 20_000 {
                return Err(fail(format!("dbsim hold never had its pages resident: {s:?}")));
            }
            arch::without_interrupts(task::schedule);
            arch::wait_for_interrupt();
        }
    }

    /// The resident pages of `pid` as `vm.pick_victim` records.
    fn candidates(pid: ProcessId) -> Vec<VictimCandidate> {
        let (pages, _) = task::vm_snapshot(pid).unwrap_or_default();
        pages.iter().filter(|p| p.resident).map(|p| VictimCandidate { vaddr: p.va, flags: points::VICTIM_MARKED, age: 1 }).collect()
    }

    fn with_log<R>(f: impl FnOnce(&mut TxnLog) -> R) -> Result<R, TestFailure> {
        let owner = OWNERS.alloc().ok_or_else(|| fail("no lock owner id left".into()))?;
        let mut txn = TxnLog::new(owner, 64, 8);
        let r = f(&mut txn);
        OWNERS.free(owner, &LOCKS);
        Ok(r)
    }

    ktest! {
        // Out of swap (no slot can be had): the process whose fault needed one is ended with
        // a message; the kernel goes on and the process's frames come back.
        fn out_of_swap_ends_the_faulting_process_not_the_kernel() -> TestResult {
            let free_before = crate::memory::frame_stats().free();
            super::swap::set_cap(0);
            let spawned = task::spawn("bin/dbsim", &["bin/dbsim", "verify"], None);
            let code = spawned.ok().and_then(task::run_to_exit);
            super::swap::set_cap(u64::MAX);
            // Let the scheduler free the dead process's address space.
            for _ in 0..3 {
                arch::without_interrupts(task::schedule);
                arch::wait_for_interrupt();
            }
            let free_after = crate::memory::frame_stats().free();
            check!(spawned.is_ok(), "spawn: {spawned:?}");
            check_eq!(code, Some(128 + 11));
            check!(free_after + 16 >= free_before, "{free_before} free frames before, {free_after} after");
            check_eq!(super::swap::slots_in_use().0, 0);
            Ok(())
        }

        // A process paging hard under its own limit takes no page from another process: a
        // fault only ever evicts the faulting process's pages.
        fn a_process_over_its_limit_takes_no_page_from_another() -> TestResult {
            let holder = holding_process()?;
            let before = task::vm_stats(holder).ok_or_else(|| fail("holder gone".into()))?;
            let pager = task::spawn("bin/dbsim", &["bin/dbsim", "faultbench"], None).map_err(|e| fail(format!("spawn: {e:?}")))?;
            let code = task::run_to_exit(pager);
            let after = task::vm_stats(holder).ok_or_else(|| fail("holder gone".into()))?;
            check_eq!(code, Some(0));
            check_eq!(after.evictions, before.evictions);
            check!(after.resident >= before.resident, "the holder went from {} to {} resident pages", before.resident, after.resident);
            Ok(())
        }

        // Memory short: a process holding more than an equal share of the resident pages gives
        // clean pages back to another's faults, never below that share.
        fn memory_pressure_trims_a_process_over_its_share() -> TestResult {
            let holder = task::spawn("bin/dbsim", &["bin/dbsim", "hold", "64", "5000", "read"], None)
                .map_err(|e| fail(format!("spawn: {e:?}")))?;
            let start = crate::time::uptime_ms();
            let before = loop {
                let s = task::vm_stats(holder).ok_or_else(|| fail("holder gone".into()))?;
                if s.resident >= 64 {
                    break s;
                }
                if crate::time::uptime_ms() - start > 20_000 {
                    return Err(fail(format!("the holder never had its pages resident: {s:?}")));
                }
                arch::without_interrupts(task::schedule);
                arch::wait_for_interrupt();
            };
            // Make memory look short to every fault.
            super::set_low_water(u64::MAX / 4);
            let pager = task::spawn("bin/dbsim", &["bin/dbsim", "faultbench"], None);
            let code = pager.ok().and_then(task::run_to_exit);
            super::set_low_water(super::LOW_WATER_FRAMES);
            let after = task::vm_stats(holder).ok_or_else(|| fail("holder gone".into()))?;
            check_eq!(code, Some(0));
            check!(after.resident < before.resident, "the holder kept {} of {} pages", after.resident, before.resident);
            check!(after.resident >= super::RESIDENT_FLOOR, "the holder was trimmed to {} pages", after.resident);
            check!(after.evictions > before.evictions);
            Ok(())
        }

        // The page-state callables change the clock's real state (referenced, active), and
        // an abort puts back exactly what was there.
        fn page_state_callables_change_the_clock_and_an_abort_restores_it() -> TestResult {
            let pid = holding_process()?;
            let before = task::vm_snapshot(pid);
            let cands = candidates(pid);
            check!(cands.len() as u64 >= PAGES, "{} resident pages", cands.len());
            let registry = callables::kernel_registry().map_err(|e| fail(format!("{e}")))?;
            let referenced = graft_ir::abi::callable("vm.page_referenced").ok_or_else(|| fail("no vm.page_referenced".into()))?;
            let set_active = graft_ir::abi::callable("vm.page_set_active").ok_or_else(|| fail("no vm.page_set_active".into()))?;
            let (changed, bad_page, restored) = with_log(|txn| {
                let _ = txn.begin();
                let mut ctx = CallCtx { owner: pid, txn, memory_limit: 0 };
                // Interrupts off, as while a graft's callable runs.
                arch::without_interrupts(|| {
                    for c in &cands {
                        let _ = registry.call(referenced, &mut ctx, &[c.vaddr]);
                        let _ = registry.call(set_active, &mut ctx, &[c.vaddr, 0]);
                    }
                });
                let changed = task::vm_snapshot(pid);
                // A page the installer does not have: nothing changes, the answer is -1.
                let bad_page = arch::without_interrupts(|| registry.call(set_active, &mut ctx, &[0x10_0000, 0]));
                let _ = txn.abort(&LOCKS);
                (changed, bad_page, task::vm_snapshot(pid))
            })?;
            check!(changed != before, "the callables changed nothing");
            check!(changed.as_ref().is_some_and(|(p, _)| p.iter().filter(|s| s.resident).all(|s| !s.referenced && !s.active)), "{changed:?}");
            check_eq!(bad_page, Ok(-1i8 as u64));
            check_eq!(restored, before);
            Ok(())
        }

        // A graft that clears referenced bits and deactivates every candidate, then returns a
        // bad index: aborted InvalidResult, the clock's choice answers, and every page's state
        // is exactly as before the call.
        fn an_aborted_pick_victim_graft_leaves_the_page_state_as_it_was() -> TestResult {
            let pid = holding_process()?;
            let blob = crate::fs::ramdisk::file("grafts/hostile/vm_meddle_then_fail.gb")
                .ok_or_else(|| fail("grafts/hostile/vm_meddle_then_fail.gb is not in the ramdisk".into()))?;
            let id = runtime::load(pid, blob).map_err(|e| fail(format!("load: {e}")))?;
            runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
            let cands = candidates(pid);
            let before = task::vm_snapshot(pid);
            let (answer, outcome) = with_log(|txn| points::vm_pick_victim(pid, txn, &cands))?;
            let after = task::vm_snapshot(pid);
            let _ = runtime::unload(pid, id);
            check_eq!(outcome, Outcome::Aborted(AbortReason::InvalidResult));
            check_eq!(answer, points::default_victim(&cands));
            check_eq!(after, before);
            Ok(())
        }
    }
}
