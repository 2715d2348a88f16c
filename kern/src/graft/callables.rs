//! Kernel callables: the functions a graft may call, after VINO's GRAFT_CALLABLE.
//!
//! Each callable is registered once, in `graft_ir::callables::IMPLEMENTATIONS` (a typed
//! function whose signature the compiler checks against the ABI table), and that one
//! registration serves the kernel, `graftc run` and the tests alike. What the kernel adds here is
//! the state the callables work on: `CallCtx` implements `CallableState` over the installer's
//! counters and memory (`state`), the graft locks and the calling thread's transaction, logging
//! how to undo every change before making it (or deferring it to commit).
use alloc::collections::BTreeMap;
use core::fmt;

use graft_ir::abi::{self, Callable, errors};
use graft_ir::callables::{self as shared, CallableState, FileHandle};
use graft_ir::AbortReason;
use spin::Mutex;

pub use graft_ir::callables::{LockHandle, LOCKS_PER_PROCESS};

use super::locks::{LockId, LockTable};
use super::state::{self, AllocError, ProcessId};
use super::txn::{Action, LockAcquireError, TxnError, TxnLog};

/// What a callable sees of its caller.
pub struct CallCtx<'a> {
    /// The process that installed the graft: its rights and its objects.
    pub owner: ProcessId,
    /// The calling thread's transaction.
    pub txn: &'a mut TxnLog,
    /// Bytes of `mem.alloc` memory the owner may hold.
    pub memory_limit: u64,
}

/// Callables whose kernel state does not exist yet (the file system and user address spaces
/// are not wired to grafts): grafts importing them are refused at load. Remove a name when its
/// `CallableState` method below is implemented.
#[cfg(target_os = "none")]
pub const NOT_YET_IMPLEMENTED: &[&str] = &[];
/// On the host there is no file system: the runtime's host tests never load file grafts.
#[cfg(not(target_os = "none"))]
pub const NOT_YET_IMPLEMENTED: &[&str] =
    &["fs.file_size", "fs.block_size", "fs.block_cached", "vm.page_referenced", "fs.prefetch", "vm.page_set_active"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// A name in `NOT_YET_IMPLEMENTED` that is not in the ABI table.
    Unknown(&'static str),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RegisterError::Unknown(n) => write!(f, "callable `{n}` is not in the ABI table"),
        }
    }
}

/// The kernel's callables: graft-ir's one registration of each, less those whose kernel state
/// does not exist yet.
pub struct Registry {
    implemented: [bool; abi::CALLABLE_TABLE.len()],
}

impl Registry {
    pub fn implemented(&self, c: &Callable) -> bool {
        self.implemented.get(c.id as usize).copied().unwrap_or(false)
    }

    /// Importable callables of the ABI table with no implementation yet.
    pub fn missing(&self) -> impl Iterator<Item = &'static Callable> + '_ {
        abi::CALLABLES.iter().filter(|c| c.importable && !self.implemented(c))
    }

    #[inline]
    pub fn call(&self, c: &Callable, ctx: &mut CallCtx, args: &[u64]) -> Result<u64, AbortReason> {
        if !self.implemented(c) {
            return Err(AbortReason::HostContract);
        }
        shared::call(c, ctx, args)
    }
}

/// The kernel's registry (checked against the ABI table: every name it leaves out exists).
pub fn kernel_registry() -> Result<Registry, RegisterError> {
    let mut implemented = [false; abi::CALLABLE_TABLE.len()];
    for (slot, c) in implemented.iter_mut().zip(abi::CALLABLES) {
        *slot = c.importable && !NOT_YET_IMPLEMENTED.contains(&c.name);
    }
    if let Some(n) = NOT_YET_IMPLEMENTED.iter().find(|n| abi::callable(n).is_none()) {
        return Err(RegisterError::Unknown(n));
    }
    Ok(Registry { implemented })
}

/// Most callables the import stub table has stubs for (`import_stub_table!`): adding a row to
/// the ABI table past it fails to compile until a stub is added below.
pub const MAX_IMPORT_STUBS: usize = 32;
const _: () = assert!(abi::CALLABLE_TABLE.len() <= MAX_IMPORT_STUBS, "add import stubs to import_stub_table!");

/// The JIT's import table: one `extern "sysv64"` stub per row of the ABI table, by
/// `Callable::id`, each calling `$handler(id, ctx, [a0..a5])` (`unsafe fn(usize, *mut $ctx,
/// [i64; 6]) -> i64`). Expands to `[u64; abi::CALLABLE_TABLE.len()]` of the stubs' addresses:
/// their number follows the table, checked at compile time against `MAX_IMPORT_STUBS`.
#[allow(unused_macros)]
macro_rules! import_stub_table {
    ($ctx:ty, $handler:path) => {{
        /// Import stub of callable `ID`: compiled code calls it with the context and the arguments.
        unsafe extern "sysv64" fn stub<const ID: usize>(ctx: *mut $ctx, a0: i64, a1: i64, a2: i64, a3: i64, a4: i64, a5: i64) -> i64 {
            // SAFETY: only compiled graft code calls a stub, with the context of its call, which is what the handler requires.
            unsafe { $handler(ID, ctx, [a0, a1, a2, a3, a4, a5]) }
        }
        type Stub = unsafe extern "sysv64" fn(*mut $ctx, i64, i64, i64, i64, i64, i64) -> i64;
        const STUBS: [Stub; $crate::graft::callables::MAX_IMPORT_STUBS] = [
            stub::<0>, stub::<1>, stub::<2>, stub::<3>, stub::<4>, stub::<5>, stub::<6>, stub::<7>,
            stub::<8>, stub::<9>, stub::<10>, stub::<11>, stub::<12>, stub::<13>, stub::<14>, stub::<15>,
            stub::<16>, stub::<17>, stub::<18>, stub::<19>, stub::<20>, stub::<21>, stub::<22>, stub::<23>,
            stub::<24>, stub::<25>, stub::<26>, stub::<27>, stub::<28>, stub::<29>, stub::<30>, stub::<31>,
        ];
        let mut table = [0u64; graft_ir::abi::CALLABLE_TABLE.len()];
        for (slot, stub) in table.iter_mut().zip(STUBS) {
            *slot = stub as usize as u64;
        }
        table
    }};
}
// Used by `jit.rs` to build its import table (and by the tests below).
#[allow(unused_imports)]
pub(crate) use import_stub_table;

/// The locks grafts can take.
pub static LOCKS: LockTable = LockTable::new();

/// Which process owns each lock of `LOCKS`, and its number within the process: by name
/// (process, number) for `lock.get`, and by lock for `lock.of` and the free-lock search, so
/// that neither scans the whole table.
struct LockNames {
    by_name: BTreeMap<(ProcessId, i32), LockId>,
    /// The process that named each lock (`None`: free).
    owner: [Option<ProcessId>; super::locks::LOCKS],
    /// Bit `i` set: lock `i` is named.
    used: [u64; super::locks::LOCKS / 64],
}

const _: () = assert!(super::locks::LOCKS % 64 == 0);

static LOCK_OWNERS: Mutex<LockNames> = Mutex::new(LockNames {
    by_name: BTreeMap::new(),
    owner: [None; super::locks::LOCKS],
    used: [0; super::locks::LOCKS / 64],
});

impl LockNames {
    fn first_free(&self) -> Option<LockId> {
        let (w, word) = self.used.iter().enumerate().find(|(_, w)| **w != u64::MAX)?;
        Some(LockId(w as u32 * 64 + (!word).trailing_zeros()))
    }

    fn set(&mut self, id: LockId, owner: Option<ProcessId>) {
        let i = id.0 as usize;
        if let Some(o) = self.owner.get_mut(i) {
            *o = owner;
            let bit = 1u64 << (i % 64);
            if owner.is_some() {
                self.used[i / 64] |= bit;
            } else {
                self.used[i / 64] &= !bit;
            }
        }
    }
}

/// Gives back the graft locks process `pid` created (it has exited: no transaction of its
/// grafts is running), so that later processes can have them. Returns how many.
pub fn forget_process_locks(pid: ProcessId) -> usize {
    crate::sync::without_interrupts(|| {
        let mut names = LOCK_OWNERS.lock();
        let mut freed = 0;
        // A process names at most LOCKS_PER_PROCESS locks: look them up by name, no scan.
        for n in 0..graft_ir::callables::LOCKS_PER_PROCESS {
            if let Some(id) = names.by_name.remove(&(pid, n)) {
                names.set(id, None);
                freed += 1;
            }
        }
        freed
    })
}

/// The kernel lock behind process `pid`'s lock number `n`, if the process has used it.
pub fn lock_id(pid: ProcessId, n: i32) -> Option<LockId> {
    crate::sync::without_interrupts(|| LOCK_OWNERS.lock().by_name.get(&(pid, n)).copied())
}

fn lock_of(ctx: &CallCtx, h: LockHandle) -> Result<LockId, AbortReason> {
    let names = LOCK_OWNERS.lock();
    let id = h.0.checked_sub(1).and_then(|i| u32::try_from(i).ok()).map(LockId);
    match id {
        Some(id) if names.owner.get(id.0 as usize).copied().flatten() == Some(ctx.owner) => Ok(id),
        _ => Err(AbortReason::CallableFailed(errors::BAD_HANDLE)),
    }
}

fn txn_failure(e: TxnError) -> AbortReason {
    match e {
        TxnError::LogFull | TxnError::TooDeep | TxnError::NoMemory => AbortReason::ResourceLimit,
        TxnError::NoTransaction => AbortReason::HostContract,
        TxnError::Doomed => AbortReason::LockTimeout,
    }
}

/// Undo record of `kern.counter_add`: `a` = process id << 8 | counter number, `b` = old value.
fn undo_counter(a: u64, old: u64) {
    state::set_counter(ProcessId((a >> 8) as u32), (a & 0xff) as usize, old as i64);
}

fn undo_alloc(pid: u64, id: u64) {
    state::undo_alloc(ProcessId(pid as u32), id as u32);
}

fn commit_free(pid: u64, id: u64) {
    state::free(ProcessId(pid as u32), id as u32);
}

const BAD_ARGUMENT: AbortReason = AbortReason::CallableFailed(errors::BAD_ARGUMENT);

/// The kernel's state for the callables: the installer's objects, changed only with an undo
/// record logged first (or deferred to commit).
impl CallableState for CallCtx<'_> {
    fn counter(&mut self, n: usize) -> Result<i64, AbortReason> {
        state::counter(self.owner, n).ok_or(BAD_ARGUMENT)
    }

    fn set_counter(&mut self, n: usize, old: i64, new: i64) -> Result<(), AbortReason> {
        let key = (u64::from(self.owner.0) << 8) | n as u64;
        self.txn.log_undo(Action { run: undo_counter, a: key, b: old as u64 }).map_err(txn_failure)?;
        state::set_counter(self.owner, n, new).map(|_| ()).ok_or(BAD_ARGUMENT)
    }

    fn trace(&mut self, v: i64) {
        log::debug!("graft trace (process {}): {v} ({v:#x})", self.owner.0);
    }

    fn now_ns(&mut self) -> i64 {
        now_ns()
    }

    fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    fn alloc(&mut self, size: u32) -> Result<u32, AbortReason> {
        let id = match state::alloc(self.owner, i64::from(size), self.memory_limit) {
            Ok(id) => id,
            Err(AllocError::BadSize(_)) => return Err(BAD_ARGUMENT),
            Err(_) => return Err(AbortReason::ResourceLimit),
        };
        // If the undo record cannot be logged, nothing stays allocated.
        if let Err(e) = self.txn.log_undo(Action { run: undo_alloc, a: u64::from(self.owner.0), b: u64::from(id) }) {
            state::undo_alloc(self.owner, id);
            return Err(txn_failure(e));
        }
        Ok(id)
    }

    fn alloc_exists(&mut self, id: u32) -> bool {
        state::exists(self.owner, id)
    }

    fn free_at_commit(&mut self, id: u32) -> Result<(), AbortReason> {
        self.txn
            .defer_to_commit(Action { run: commit_free, a: u64::from(self.owner.0), b: u64::from(id) })
            .map_err(txn_failure)
    }

    fn lock_get(&mut self, n: u32) -> Result<LockHandle, AbortReason> {
        let n = n as i32;
        let mut names = LOCK_OWNERS.lock();
        if let Some(id) = names.by_name.get(&(self.owner, n)) {
            return Ok(LockHandle(u64::from(id.0) + 1));
        }
        // Creating the lock is bookkeeping, not a change a graft can observe being undone.
        let id = names.first_free().ok_or(AbortReason::ResourceLimit)?;
        names.by_name.insert((self.owner, n), id);
        names.set(id, Some(self.owner));
        Ok(LockHandle(u64::from(id.0) + 1))
    }

    fn lock_of(&mut self, h: LockHandle) -> Result<u32, AbortReason> {
        lock_of(self, h).map(|id| id.0)
    }

    fn lock_held(&mut self, lock: u32) -> bool {
        self.txn.holds(LockId(lock))
    }

    fn lock_acquire(&mut self, lock: u32) -> Result<(), AbortReason> {
        match self.txn.lock(&LOCKS, LockId(lock)) {
            Ok(()) => Ok(()),
            Err(LockAcquireError::Txn(e)) => Err(txn_failure(e)),
            Err(LockAcquireError::Lock(_)) => Err(AbortReason::LockTimeout),
        }
    }

    // Files: the installer's open files, seen through `fs::graft_view` (never waits).
    #[cfg(target_os = "none")]
    fn file_size(&mut self, f: FileHandle) -> Result<i64, AbortReason> {
        crate::fs::graft_view::file_size(self.owner, f.0)
    }

    #[cfg(target_os = "none")]
    fn block_size(&mut self, f: FileHandle) -> Result<i32, AbortReason> {
        crate::fs::graft_view::block_size(self.owner, f.0)
    }

    #[cfg(target_os = "none")]
    fn block_cached(&mut self, f: FileHandle, block: i64) -> Result<bool, AbortReason> {
        crate::fs::graft_view::block_cached(self.owner, f.0, block)
    }

    #[cfg(target_os = "none")]
    fn prefetch_at_commit(&mut self, f: FileHandle, block: i64) -> Result<(), AbortReason> {
        let ino = crate::fs::graft_view::prefetch_target(self.owner, f.0)?;
        self.txn
            .defer_to_commit(Action { run: crate::fs::graft_view::commit_prefetch, a: u64::from(ino), b: block as u64 })
            .map_err(txn_failure)
    }

    // On the host: see `NOT_YET_IMPLEMENTED` (grafts importing these are refused at load).
    #[cfg(not(target_os = "none"))]
    fn file_size(&mut self, _: FileHandle) -> Result<i64, AbortReason> {
        Err(AbortReason::HostContract)
    }

    #[cfg(not(target_os = "none"))]
    fn block_size(&mut self, _: FileHandle) -> Result<i32, AbortReason> {
        Err(AbortReason::HostContract)
    }

    #[cfg(not(target_os = "none"))]
    fn block_cached(&mut self, _: FileHandle, _: i64) -> Result<bool, AbortReason> {
        Err(AbortReason::HostContract)
    }

    #[cfg(not(target_os = "none"))]
    fn prefetch_at_commit(&mut self, _: FileHandle, _: i64) -> Result<(), AbortReason> {
        Err(AbortReason::HostContract)
    }

    #[cfg(not(target_os = "none"))]
    fn page_referenced(&mut self, _: i64) -> Result<bool, AbortReason> {
        Err(AbortReason::HostContract)
    }

    #[cfg(not(target_os = "none"))]
    fn page_set_active(&mut self, _: i64, _: bool) -> Result<Option<bool>, AbortReason> {
        Err(AbortReason::HostContract)
    }

    /// The page's referenced state is the clock's bit or the hardware's; the hardware's is
    /// folded into the clock's before both are cleared, so the undo record (the clock's bit as
    /// it was, with the hardware's folded in) restores exactly what the clock would have seen.
    #[cfg(target_os = "none")]
    fn page_referenced(&mut self, vaddr: i64) -> Result<bool, AbortReason> {
        let Some(va) = user_page(vaddr) else { return Ok(false) };
        let owner = self.owner;
        let txn = &mut *self.txn;
        let r = crate::task::with_resident_page(owner, va, |page, space| {
            let hardware = space.take_accessed(va).unwrap_or(false);
            let was = page.referenced || hardware;
            let undo = Action { run: undo_page_state, a: u64::from(owner.0), b: va | page_bits(was, page.active) };
            // Logged before the change: if the log is full nothing changes (the hardware bit
            // is folded in either way, which the clock cannot tell from before).
            page.referenced = was;
            txn.log_undo(undo).map_err(txn_failure)?;
            page.referenced = false;
            Ok(was)
        });
        r.unwrap_or(Ok(false))
    }

    #[cfg(target_os = "none")]
    fn page_set_active(&mut self, vaddr: i64, active: bool) -> Result<Option<bool>, AbortReason> {
        let Some(va) = user_page(vaddr) else { return Ok(None) };
        let owner = self.owner;
        let txn = &mut *self.txn;
        let r = crate::task::with_resident_page(owner, va, |page, _| {
            let undo = Action { run: undo_page_state, a: u64::from(owner.0), b: va | page_bits(page.referenced, page.active) };
            txn.log_undo(undo).map_err(txn_failure)?;
            let was = page.active;
            page.active = active;
            page.referenced = active;
            Ok(Some(was))
        });
        // Not a resident page of the installer (another process's address is just an address
        // in the installer's space, where nothing is resident): nothing to change.
        r.unwrap_or(Ok(None))
    }
}

/// A page-aligned user address, if `vaddr` is one.
#[cfg(target_os = "none")]
fn user_page(vaddr: i64) -> Option<u64> {
    let va = u64::try_from(vaddr).ok()?;
    (va % 4096 == 0 && (sysabi::USER_START..sysabi::USER_END).contains(&va)).then_some(va)
}

/// A page's clock state in the low bits of an undo record's page address.
#[cfg(target_os = "none")]
fn page_bits(referenced: bool, active: bool) -> u64 {
    u64::from(referenced) | u64::from(active) << 1
}

/// Undo record of `vm.page_referenced` / `vm.page_set_active`: `a` = process, `b` = page |
/// its referenced and active bits as they were.
#[cfg(target_os = "none")]
fn undo_page_state(pid: u64, b: u64) {
    let va = b & !0xfff;
    let restored = crate::arch::without_interrupts(|| {
        crate::task::with_resident_page(ProcessId(pid as u32), va, |page, _| {
            page.referenced = b & 1 != 0;
            page.active = b & 2 != 0;
        })
    });
    if restored.is_none() {
        // Evicted meanwhile by another thread of the process: no page state left to restore.
        log::debug!("undo of a page-state change: page {va:#x} of process {pid} is no longer resident");
    }
}

fn now_ns() -> i64 {
    #[cfg(target_os = "none")]
    {
        crate::time::uptime_ns() as i64
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use crate::graft::locks::Owner;

    /// The stub table has a distinct stub for every callable, each passing its own id.
    #[test]
    fn import_stubs_follow_the_table() {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static SEEN: AtomicUsize = AtomicUsize::new(usize::MAX);
        unsafe fn record(id: usize, _ctx: *mut u8, args: [i64; 6]) -> i64 {
            SEEN.store(id, Ordering::Relaxed);
            args[0] + args[5]
        }
        let table = crate::graft::callables::import_stub_table!(u8, record);
        assert_eq!(table.len(), abi::CALLABLES.len());
        for (id, &addr) in table.iter().enumerate() {
            assert!(addr != 0 && table.iter().filter(|&&a| a == addr).count() == 1);
            type Stub = unsafe extern "sysv64" fn(*mut u8, i64, i64, i64, i64, i64, i64) -> i64;
            // SAFETY: `addr` is one of the table's stubs, of exactly this type.
            let f: Stub = unsafe { core::mem::transmute::<usize, Stub>(addr as usize) };
            // SAFETY: `record` ignores the context.
            let r = unsafe { f(core::ptr::null_mut(), 40, 0, 0, 0, 0, 2) };
            assert_eq!((r, SEEN.load(Ordering::Relaxed)), (42, id));
        }
    }

    #[test]
    fn an_exited_process_gives_its_locks_back() {
        let pid = ProcessId(2002);
        let mut txn = TxnLog::new(Owner(3), 8, 4);
        txn.begin().unwrap();
        let mut ctx = CallCtx { owner: pid, txn: &mut txn, memory_limit: 0 };
        let get = abi::callable("lock.get").unwrap();
        let r = kernel_registry().unwrap();
        assert!(r.call(get, &mut ctx, &[0]).is_ok() && r.call(get, &mut ctx, &[5]).is_ok());
        txn.commit(&LOCKS).unwrap();
        assert!(lock_id(pid, 5).is_some());
        assert_eq!(forget_process_locks(pid), 2);
        assert_eq!(lock_id(pid, 5), None);
    }

    #[test]
    fn the_kernel_registry_matches_the_table() {
        let r = kernel_registry().unwrap();
        let missing: Vec<&str> = r.missing().map(|c| c.name).collect();
        // Not yet implemented: they need the file system and user address spaces.
        assert_eq!(missing, NOT_YET_IMPLEMENTED);
        let halt = abi::callable("kern.halt").unwrap();
        assert!(!r.implemented(halt), "a privileged callable is never callable by a graft");
    }

    #[test]
    fn counter_add_is_undone_by_abort_and_kept_by_commit() {
        let r = kernel_registry().unwrap();
        let pid = ProcessId(2001);
        let add = abi::callable("kern.counter_add").unwrap();
        let mut txn = TxnLog::new(Owner(1), 8, 4);
        txn.begin().unwrap();
        let mut ctx = CallCtx { owner: pid, txn: &mut txn, memory_limit: 0 };
        assert_eq!(r.call(add, &mut ctx, &[2, 5]), Ok(5));
        assert_eq!(r.call(add, &mut ctx, &[2, (-1i64) as u64]), Ok(4));
        assert_eq!(r.call(add, &mut ctx, &[99, 1]), Err(AbortReason::CallableFailed(errors::BAD_ARGUMENT)));
        txn.abort(&LOCKS).unwrap();
        assert_eq!(state::counter(pid, 2), Some(0));
        txn.begin().unwrap();
        let mut ctx = CallCtx { owner: pid, txn: &mut txn, memory_limit: 0 };
        r.call(add, &mut ctx, &[2, 7]).unwrap();
        txn.commit(&LOCKS).unwrap();
        assert_eq!(state::counter(pid, 2), Some(7));
    }
}
