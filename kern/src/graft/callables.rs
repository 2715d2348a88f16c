//! Kernel callables: the functions a graft may call, after VINO's GRAFT_CALLABLE.
//!
//! Each is registered once with a typed closure (`Registry::func_wrap`); its graft-IR signature
//! comes from the Rust types of the closure and is checked against the ABI table in `graft-ir`
//! when the kernel starts, so the table and the implementations cannot drift apart. A callable
//! checks its arguments (a handle must name a live object of the graft's installer) and logs how
//! to undo any change before making it.
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use graft_ir::abi::{self, Callable, errors};
use graft_ir::{AbortReason, HandleKind, Signature, Type};
use spin::Mutex;

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

/// A value that can cross the graft/kernel boundary, with its IR type.
pub trait GraftValue: Sized {
    const TY: Type;
    fn from_bits(bits: u64) -> Self;
    fn to_bits(self) -> u64;
}

macro_rules! int_value {
    ($($t:ty => $ir:expr),*) => {$(
        impl GraftValue for $t {
            const TY: Type = $ir;
            fn from_bits(bits: u64) -> Self { bits as $t }
            fn to_bits(self) -> u64 { self as u64 }
        }
    )*};
}
int_value!(i8 => Type::I8, i16 => Type::I16, i32 => Type::I32, i64 => Type::I64);

/// Opaque handle to a lock (the kernel's name for it; validated on every use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHandle(pub u64);

impl GraftValue for LockHandle {
    const TY: Type = Type::Handle(HandleKind::Lock);
    fn from_bits(bits: u64) -> Self {
        LockHandle(bits)
    }
    fn to_bits(self) -> u64 {
        self.0
    }
}

/// A callable's return type: a value or nothing.
pub trait GraftReturn {
    const TY: Option<Type>;
    fn into_bits(self) -> u64;
}

impl<T: GraftValue> GraftReturn for T {
    const TY: Option<Type> = Some(T::TY);
    fn into_bits(self) -> u64 {
        self.to_bits()
    }
}

impl GraftReturn for () {
    const TY: Option<Type> = None;
    fn into_bits(self) -> u64 {
        0
    }
}

type Erased = Box<dyn Fn(&mut CallCtx, &[u64]) -> Result<u64, AbortReason> + Send + Sync>;

/// A closure usable as a callable: `Fn(&mut CallCtx, A, B, ...) -> Result<R, AbortReason>`.
pub trait IntoCallable<Args> {
    fn signature() -> Signature;
    fn erase(self) -> Erased;
}

macro_rules! into_callable {
    ($($a:ident),*) => {
        impl<F, R, $($a),*> IntoCallable<($($a,)*)> for F
        where
            F: Fn(&mut CallCtx, $($a),*) -> Result<R, AbortReason> + Send + Sync + 'static,
            R: GraftReturn,
            $($a: GraftValue,)*
        {
            fn signature() -> Signature {
                Signature { params: alloc::vec![$($a::TY),*], ret: R::TY }
            }
            #[allow(non_snake_case, unused_variables, unused_mut)]
            fn erase(self) -> Erased {
                Box::new(move |ctx: &mut CallCtx, args: &[u64]| {
                    let mut it = args.iter().copied();
                    $(let $a = $a::from_bits(it.next().ok_or(AbortReason::HostContract)?);)*
                    self(ctx, $($a),*).map(GraftReturn::into_bits)
                })
            }
        }
    };
}
into_callable!();
into_callable!(A);
into_callable!(A, B);
into_callable!(A, B, C);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// No callable of that name in the ABI table.
    Unknown(&'static str),
    /// The closure's types do not match the ABI table.
    Signature { name: &'static str, table: Signature, closure: Signature },
    Duplicate(&'static str),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RegisterError::Unknown(n) => write!(f, "callable `{n}` is not in the ABI table"),
            RegisterError::Signature { name, table, closure } => {
                write!(f, "callable `{name}`: the ABI table says {table:?}, the implementation takes {closure:?}")
            }
            RegisterError::Duplicate(n) => write!(f, "callable `{n}` registered twice"),
        }
    }
}

/// Implementations of the ABI's callables, indexed by `Callable::id`.
pub struct Registry {
    entries: Vec<Option<Erased>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry { entries: abi::CALLABLES.iter().map(|_| None).collect() }
    }

    pub fn func_wrap<Args, F: IntoCallable<Args>>(&mut self, name: &'static str, f: F) -> Result<(), RegisterError> {
        let c = abi::callable(name).ok_or(RegisterError::Unknown(name))?;
        let closure = F::signature();
        if closure != c.signature() {
            return Err(RegisterError::Signature { name, table: c.signature(), closure });
        }
        let slot = &mut self.entries[c.id as usize];
        if slot.is_some() {
            return Err(RegisterError::Duplicate(name));
        }
        *slot = Some(f.erase());
        Ok(())
    }

    pub fn implemented(&self, c: &Callable) -> bool {
        self.entries.get(c.id as usize).is_some_and(Option::is_some)
    }

    /// Importable callables of the ABI table with no implementation yet.
    pub fn missing(&self) -> impl Iterator<Item = &'static Callable> + '_ {
        abi::CALLABLES.iter().filter(|c| c.importable && !self.implemented(c))
    }

    pub fn call(&self, c: &Callable, ctx: &mut CallCtx, args: &[u64]) -> Result<u64, AbortReason> {
        match self.entries.get(c.id as usize) {
            Some(Some(f)) => f(ctx, args),
            _ => Err(AbortReason::HostContract),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// The locks grafts can take.
pub static LOCKS: LockTable = LockTable::new();

/// Which process owns each lock of `LOCKS`, and its number within the process.
static LOCK_OWNERS: Mutex<BTreeMap<(ProcessId, i32), LockId>> = Mutex::new(BTreeMap::new());

/// Per-process lock numbers `0..LOCKS_PER_PROCESS`.
pub const LOCKS_PER_PROCESS: i32 = 16;

/// The kernel lock behind process `pid`'s lock number `n`, if the process has used it.
pub fn lock_id(pid: ProcessId, n: i32) -> Option<LockId> {
    crate::sync::without_interrupts(|| LOCK_OWNERS.lock().get(&(pid, n)).copied())
}

fn lock_of(ctx: &CallCtx, h: LockHandle) -> Result<LockId, AbortReason> {
    let owners = LOCK_OWNERS.lock();
    owners
        .iter()
        .find(|((pid, _), id)| *pid == ctx.owner && u64::from(id.0) + 1 == h.0)
        .map(|(_, &id)| id)
        .ok_or(AbortReason::CallableFailed(errors::BAD_HANDLE))
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

/// Registers the kernel's implementations of the ABI's callables.
pub fn kernel_registry() -> Result<Registry, RegisterError> {
    let mut r = Registry::new();
    r.func_wrap("kern.counter_get", |ctx: &mut CallCtx, n: i32| {
        state::counter(ctx.owner, n as usize).ok_or(AbortReason::CallableFailed(errors::BAD_ARGUMENT))
    })?;
    r.func_wrap("kern.counter_add", |ctx: &mut CallCtx, n: i32, delta: i64| {
        let n = usize::try_from(n).ok().filter(|&n| n < state::COUNTERS);
        let n = n.ok_or(AbortReason::CallableFailed(errors::BAD_ARGUMENT))?;
        let old = state::counter(ctx.owner, n).ok_or(AbortReason::CallableFailed(errors::BAD_ARGUMENT))?;
        let key = (u64::from(ctx.owner.0) << 8) | n as u64;
        ctx.txn.log_undo(Action { run: undo_counter, a: key, b: old as u64 }).map_err(txn_failure)?;
        let new = old.wrapping_add(delta);
        state::set_counter(ctx.owner, n, new);
        Ok(new)
    })?;
    r.func_wrap("debug.trace", |ctx: &mut CallCtx, v: i64| {
        log::debug!("graft trace (process {}): {v} ({v:#x})", ctx.owner.0);
        Ok(())
    })?;
    r.func_wrap("time.now", |_: &mut CallCtx| Ok(now_ns()))?;
    r.func_wrap("mem.alloc", |ctx: &mut CallCtx, size: i32| {
        // Log first: if the log is full, nothing is allocated.
        let id = match state::alloc(ctx.owner, i64::from(size), ctx.memory_limit) {
            Ok(id) => id,
            Err(AllocError::OverLimit { .. }) => return Err(AbortReason::ResourceLimit),
            Err(AllocError::BadSize(_)) => return Err(AbortReason::CallableFailed(errors::BAD_ARGUMENT)),
        };
        if let Err(e) = ctx.txn.log_undo(Action { run: undo_alloc, a: u64::from(ctx.owner.0), b: u64::from(id) }) {
            state::undo_alloc(ctx.owner, id);
            return Err(txn_failure(e));
        }
        Ok(id as i32)
    })?;
    r.func_wrap("mem.free", |ctx: &mut CallCtx, id: i32| {
        if !state::exists(ctx.owner, id as u32) {
            return Err(AbortReason::CallableFailed(errors::BAD_HANDLE));
        }
        // Freeing cannot be undone: it happens at commit.
        ctx.txn
            .defer_to_commit(Action { run: commit_free, a: u64::from(ctx.owner.0), b: u64::from(id as u32) })
            .map_err(txn_failure)?;
        Ok(0i32)
    })?;
    r.func_wrap("lock.get", |ctx: &mut CallCtx, n: i32| {
        if !(0..LOCKS_PER_PROCESS).contains(&n) {
            return Err(AbortReason::CallableFailed(errors::BAD_ARGUMENT));
        }
        let mut owners = LOCK_OWNERS.lock();
        if let Some(id) = owners.get(&(ctx.owner, n)) {
            return Ok(LockHandle(u64::from(id.0) + 1));
        }
        // Creating the lock is bookkeeping, not a change a graft can observe being undone.
        let used: Vec<LockId> = owners.values().copied().collect();
        let free = (0..super::locks::LOCKS as u32).map(LockId).find(|id| !used.contains(id));
        let id = free.ok_or(AbortReason::ResourceLimit)?;
        owners.insert((ctx.owner, n), id);
        Ok(LockHandle(u64::from(id.0) + 1))
    })?;
    r.func_wrap("lock.acquire", |ctx: &mut CallCtx, h: LockHandle| {
        let id = lock_of(ctx, h)?;
        if ctx.txn.holds(id) {
            return Err(AbortReason::CallableFailed(errors::LOCK_STATE));
        }
        match ctx.txn.lock(&LOCKS, id) {
            Ok(()) => Ok(0i32),
            Err(LockAcquireError::Txn(e)) => Err(txn_failure(e)),
            Err(LockAcquireError::Lock(_)) => Err(AbortReason::LockTimeout),
        }
    })?;
    r.func_wrap("lock.release", |ctx: &mut CallCtx, h: LockHandle| {
        let id = lock_of(ctx, h)?;
        // Two-phase locking: the release happens when the transaction ends.
        if ctx.txn.holds(id) { Ok(0i32) } else { Err(AbortReason::CallableFailed(errors::LOCK_STATE)) }
    })?;
    Ok(r)
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
    use crate::graft::locks::Owner;

    #[test]
    fn signatures_are_checked_against_the_abi_table() {
        let mut r = Registry::new();
        let wrong = r.func_wrap("kern.counter_get", |_: &mut CallCtx, n: i64| Ok(n));
        assert!(matches!(wrong, Err(RegisterError::Signature { name: "kern.counter_get", .. })));
        assert_eq!(r.func_wrap("no.such", |_: &mut CallCtx| Ok(0i32)), Err(RegisterError::Unknown("no.such")));
        r.func_wrap("time.now", |_: &mut CallCtx| Ok(1i64)).unwrap();
        assert_eq!(r.func_wrap("time.now", |_: &mut CallCtx| Ok(1i64)), Err(RegisterError::Duplicate("time.now")));
    }

    #[test]
    fn the_kernel_registry_matches_the_table() {
        let r = kernel_registry().unwrap();
        let missing: Vec<&str> = r.missing().map(|c| c.name).collect();
        // Not yet implemented: they need the file system and user address spaces.
        assert_eq!(missing, ["fs.file_size", "fs.block_size", "fs.block_cached", "vm.page_referenced"]);
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
