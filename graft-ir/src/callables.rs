//! The kernel callables' implementations, each registered once (after VINO's GRAFT_CALLABLE),
//! for the kernel and for every host that runs grafts (`graftc run`, the tests).
//!
//! A callable is written once, in [`IMPLEMENTATIONS`], as a typed function: its graft-IR
//! signature comes from the Rust types of its parameters and result and is checked against
//! its row in [`abi::CALLABLES`] when this crate compiles, and the rows and the registrations
//! must be in the same order and of the same number (also checked at compile time). What a
//! callable decides — argument ranges, which error each failure gives, what it changes and in
//! which order — is here. What it works on is a [`CallableState`]: the kernel's (its tables, with
//! every change logged for undo in the calling thread's transaction) or a model of it
//! ([`crate::mock::MockHost`]).
//!
//! ```
//! use graft_ir::abi;
//! use graft_ir::callables;
//! use graft_ir::mock::MockHost;
//!
//! let add = abi::callable("kern.counter_add").unwrap();
//! let mut host = MockHost::default();
//! assert_eq!(callables::call(add, &mut host, &[3, 5]), Ok(5));
//! assert_eq!(callables::call(add, &mut host, &[3, 2]), Ok(7));
//! ```

use crate::abi::{self, errors, Callable};
use crate::abort::AbortReason;
use crate::types::{HandleKind, Type};

/// A value that can cross the graft/kernel boundary, with its IR type.
pub trait GraftValue: Sized + Copy {
    /// Its IR type.
    const TY: Type;
    /// The value from the bits the graft passed (zero-extended to 64).
    fn from_bits(bits: u64) -> Self;
    /// The bits handed back to the graft.
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

/// Opaque handle to one of the installer's open files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHandle(pub u64);

macro_rules! handle_value {
    ($($t:ident => $kind:expr),*) => {$(
        impl GraftValue for $t {
            const TY: Type = Type::Handle($kind);
            fn from_bits(bits: u64) -> Self { $t(bits) }
            fn to_bits(self) -> u64 { self.0 }
        }
    )*};
}
handle_value!(LockHandle => HandleKind::Lock, FileHandle => HandleKind::File);

/// A callable's return type: a value or nothing.
pub trait GraftReturn {
    /// Its IR type, `None` for nothing.
    const TY: Option<Type>;
    /// The bits handed back to the graft (0 for nothing).
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

/// Counters `0..COUNTERS` of each installer (`kern.counter_*`).
pub const COUNTERS: usize = 16;
/// Lock numbers `0..LOCKS_PER_PROCESS` of each installer (`lock.get`).
pub const LOCKS_PER_PROCESS: i32 = 16;

/// What the callables work on: the graft's installer's objects, in the kernel or in a model of
/// it. Arguments reach these methods already checked against the ranges the ABI documents;
/// a method refuses what only the state can judge (a handle that names nothing of the
/// installer's, a limit reached). A method that changes state makes the change undoable by the
/// call's transaction before making it (the kernel logs an undo record first), or defers it to
/// commit when it cannot be undone.
pub trait CallableState {
    /// Counter `n` (`n < COUNTERS`).
    fn counter(&mut self, n: usize) -> Result<i64, AbortReason>;
    /// Sets counter `n` from `old` (its current value, for the undo log) to `new`.
    fn set_counter(&mut self, n: usize, old: i64, new: i64) -> Result<(), AbortReason>;
    /// Appends to the graft's trace.
    fn trace(&mut self, value: i64);
    /// Monotonic time since boot in nanoseconds.
    fn now_ns(&mut self) -> i64;
    /// Bytes of `mem.alloc` memory the installer may hold in all.
    fn memory_limit(&self) -> u64;
    /// Allocates `size` bytes (`1 <= size <= memory_limit()`) charged to the installer, undone
    /// on abort; `ResourceLimit` past the limit. Returns the allocation's number.
    fn alloc(&mut self, size: u32) -> Result<u32, AbortReason>;
    /// Whether allocation `id` is the installer's.
    fn alloc_exists(&mut self, id: u32) -> bool;
    /// Frees allocation `id` when the transaction commits.
    fn free_at_commit(&mut self, id: u32) -> Result<(), AbortReason>;
    /// The installer's lock number `n` (`0 <= n < LOCKS_PER_PROCESS`), created on first use.
    fn lock_get(&mut self, n: u32) -> Result<LockHandle, AbortReason>;
    /// The lock `h` names, if it is one of the installer's (`BAD_HANDLE` if not).
    fn lock_of(&mut self, h: LockHandle) -> Result<u32, AbortReason>;
    /// Whether the calling transaction holds `lock`.
    fn lock_held(&mut self, lock: u32) -> bool;
    /// Acquires `lock` for the rest of the transaction (two-phase locking).
    fn lock_acquire(&mut self, lock: u32) -> Result<(), AbortReason>;
    /// Size in bytes of file `f` (`BAD_HANDLE` if it is not one of the installer's).
    fn file_size(&mut self, f: FileHandle) -> Result<i64, AbortReason>;
    /// Block size of `f`'s file system (a power of two).
    fn block_size(&mut self, f: FileHandle) -> Result<i32, AbortReason>;
    /// Whether block `block` (inside the file) of `f` is in the buffer cache.
    fn block_cached(&mut self, f: FileHandle, block: i64) -> Result<bool, AbortReason>;
    /// Reads block `block` (inside the file) of `f` into the buffer cache when the transaction
    /// commits; nothing if it aborts.
    fn prefetch_at_commit(&mut self, f: FileHandle, block: i64) -> Result<(), AbortReason>;
    /// Tests and clears the referenced bit of the installer's page at `vaddr` (false when
    /// unmapped).
    fn page_referenced(&mut self, vaddr: i64) -> Result<bool, AbortReason>;
    /// Moves the installer's resident page at `vaddr` to the clock's active
    /// (`true`) or inactive set, undone on abort; returns whether it was active, `None` if
    /// `vaddr` is no resident page of the installer (nothing changes).
    fn page_set_active(&mut self, vaddr: i64, active: bool) -> Result<Option<bool>, AbortReason>;
}

/// A callable's implementation, erased: the state and the arguments' bits (one per parameter).
pub type Implementation = fn(&mut dyn CallableState, &[u64]) -> Result<u64, AbortReason>;

const fn type_eq(a: Type, b: Type) -> bool {
    match (a, b) {
        (Type::I8, Type::I8) | (Type::I16, Type::I16) | (Type::I32, Type::I32) | (Type::I64, Type::I64) => true,
        (Type::Handle(x), Type::Handle(y)) => x as u8 == y as u8,
        _ => false,
    }
}

/// Whether a registration's Rust types are row `id`'s signature (and its name the row's).
const fn matches_row(id: usize, name: &str, params: &[Type], ret: Option<Type>) -> bool {
    if id >= abi::CALLABLE_TABLE.len() {
        return false;
    }
    let row = &abi::CALLABLE_TABLE[id];
    if !abi::str_eq(row.name, name) || row.params.len() != params.len() {
        return false;
    }
    let mut i = 0;
    while i < params.len() {
        if !type_eq(row.params[i], params[i]) {
            return false;
        }
        i += 1;
    }
    match (row.ret, ret) {
        (None, None) => true,
        (Some(a), Some(b)) => type_eq(a, b),
        _ => false,
    }
}

/// Registers each callable once: `"name" => |state, arg: Type, ...| -> Ret { body }`, in the
/// order of [`abi::CALLABLES`] (checked), producing [`IMPLEMENTATIONS`].
macro_rules! register {
    ($($name:literal => |$s:ident $(, $a:ident : $t:ty)*| -> $r:ty $body:block),* $(,)?) => {
        /// Every callable's implementation, by [`Callable::id`]: one registration per row.
        pub static IMPLEMENTATIONS: [Implementation; abi::CALLABLE_TABLE.len()] = [$({
            #[allow(unused_variables)]
            fn typed($s: &mut dyn CallableState $(, $a: $t)*) -> Result<$r, AbortReason> $body
            #[allow(unused_mut, unused_variables)]
            fn run($s: &mut dyn CallableState, args: &[u64]) -> Result<u64, AbortReason> {
                let mut it = args.iter().copied();
                $(let $a = <$t as GraftValue>::from_bits(it.next().ok_or(AbortReason::HostContract)?);)*
                typed($s $(, $a)*).map(GraftReturn::into_bits)
            }
            run as Implementation
        }),*];
        const _: () = {
            let names: &[&str] = &[$($name),*];
            assert!(names.len() == abi::CALLABLE_TABLE.len(), "every row of abi::CALLABLES needs exactly one registration");
            let mut id = 0;
            $(
                assert!(
                    matches_row(id, $name, &[$(<$t as GraftValue>::TY),*], <$r as GraftReturn>::TY),
                    concat!("the registration of `", $name, "` does not match its row in abi::CALLABLES (name, order or signature)")
                );
                id += 1;
            )*
            let _ = id;
        };
    };
}

const BAD_ARGUMENT: AbortReason = AbortReason::CallableFailed(errors::BAD_ARGUMENT);
const BAD_HANDLE: AbortReason = AbortReason::CallableFailed(errors::BAD_HANDLE);
const LOCK_STATE: AbortReason = AbortReason::CallableFailed(errors::LOCK_STATE);

/// Checks that `block` is a block inside file `f`.
fn file_block(s: &mut dyn CallableState, f: FileHandle, block: i64) -> Result<(), AbortReason> {
    let size = s.file_size(f)?;
    let bs = i64::from(s.block_size(f)?.max(1));
    let blocks = size.max(0).saturating_add(bs - 1) / bs;
    if (0..blocks).contains(&block) { Ok(()) } else { Err(BAD_ARGUMENT) }
}

fn counter_number(n: i32) -> Result<usize, AbortReason> {
    usize::try_from(n).ok().filter(|&n| n < COUNTERS).ok_or(BAD_ARGUMENT)
}

register! {
    "fs.file_size" => |s, f: FileHandle| -> i64 { s.file_size(f) },
    "fs.block_size" => |s, f: FileHandle| -> i32 { s.block_size(f) },
    "fs.block_cached" => |s, f: FileHandle, block: i64| -> i8 {
        file_block(s, f, block)?;
        Ok(i8::from(s.block_cached(f, block)?))
    },
    "lock.get" => |s, n: i32| -> LockHandle {
        if !(0..LOCKS_PER_PROCESS).contains(&n) {
            return Err(BAD_ARGUMENT);
        }
        s.lock_get(n as u32)
    },
    "lock.acquire" => |s, h: LockHandle| -> i32 {
        let lock = s.lock_of(h)?;
        if s.lock_held(lock) {
            return Err(LOCK_STATE);
        }
        s.lock_acquire(lock)?;
        Ok(0)
    },
    "lock.release" => |s, h: LockHandle| -> i32 {
        // Two-phase locking: the real release happens when the transaction ends.
        let lock = s.lock_of(h)?;
        if s.lock_held(lock) { Ok(0) } else { Err(LOCK_STATE) }
    },
    "mem.alloc" => |s, size: i32| -> i32 {
        if size < 1 || size as u64 > s.memory_limit() {
            return Err(BAD_ARGUMENT);
        }
        Ok(s.alloc(size as u32)? as i32)
    },
    "mem.free" => |s, id: i32| -> i32 {
        if !s.alloc_exists(id as u32) {
            return Err(BAD_HANDLE);
        }
        // Freeing cannot be undone: it happens at commit.
        s.free_at_commit(id as u32)?;
        Ok(0)
    },
    "kern.counter_get" => |s, n: i32| -> i64 { s.counter(counter_number(n)?) },
    "kern.counter_add" => |s, n: i32, delta: i64| -> i64 {
        let n = counter_number(n)?;
        let old = s.counter(n)?;
        let new = old.wrapping_add(delta);
        s.set_counter(n, old, new)?;
        Ok(new)
    },
    "debug.trace" => |s, v: i64| -> () {
        s.trace(v);
        Ok(())
    },
    "time.now" => |s| -> i64 { Ok(s.now_ns()) },
    "vm.page_referenced" => |s, vaddr: i64| -> i8 { Ok(i8::from(s.page_referenced(vaddr)?)) },
    // Kernel-only: the verifier refuses every import of it, so no graft reaches this.
    "kern.halt" => |s| -> i32 { Err(AbortReason::HostContract) },
    "fs.prefetch" => |s, f: FileHandle, block: i64| -> i32 {
        file_block(s, f, block)?;
        // Issuing a disk read cannot be undone: it happens at commit.
        s.prefetch_at_commit(f, block)?;
        Ok(0)
    },
    "vm.page_set_active" => |s, vaddr: i64, active: i32| -> i8 {
        if !(0..=1).contains(&active) {
            return Err(BAD_ARGUMENT);
        }
        Ok(s.page_set_active(vaddr, active == 1)?.map_or(-1, i8::from))
    },
}

/// Calls `c` on `state` with the arguments' bits (one per parameter; the interpreter and the
/// JIT's import stubs pass exactly those). Returns the result's bits (0 for no result).
#[inline]
pub fn call(c: &Callable, state: &mut dyn CallableState, args: &[u64]) -> Result<u64, AbortReason> {
    match IMPLEMENTATIONS.get(c.id as usize) {
        Some(run) if args.len() == c.params.len() => run(state, args),
        _ => Err(AbortReason::HostContract),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockHost;

    fn named(name: &str) -> &'static Callable {
        abi::callable(name).unwrap()
    }

    #[test]
    fn every_row_has_its_registration() {
        assert_eq!(IMPLEMENTATIONS.len(), abi::CALLABLES.len());
    }

    #[test]
    fn arguments_are_checked_once_for_every_host() {
        let mut h = MockHost::default();
        let bad = Err(BAD_ARGUMENT);
        assert_eq!(call(named("kern.counter_get"), &mut h, &[16]), bad);
        assert_eq!(call(named("kern.counter_get"), &mut h, &[u64::MAX]), bad);
        assert_eq!(call(named("lock.get"), &mut h, &[16]), bad);
        assert_eq!(call(named("mem.alloc"), &mut h, &[0]), bad);
        assert_eq!(call(named("mem.free"), &mut h, &[9]), Err(BAD_HANDLE));
        // The mock's file 1 is 4096 bytes in 1024-byte blocks: block 4 is past its end.
        assert_eq!(call(named("fs.block_cached"), &mut h, &[1, 3]), Ok(1));
        assert_eq!(call(named("fs.block_cached"), &mut h, &[1, 4]), bad);
        assert_eq!(call(named("fs.file_size"), &mut h, &[0]), Err(BAD_HANDLE));
        // Wrong argument counts are the host's bug, never a graft's.
        assert_eq!(call(named("time.now"), &mut h, &[1]), Err(AbortReason::HostContract));
    }

    #[test]
    fn locks_are_two_phase() {
        let mut h = MockHost::default();
        let lock = call(named("lock.get"), &mut h, &[2]).unwrap();
        assert_eq!(call(named("lock.release"), &mut h, &[lock]), Err(LOCK_STATE));
        assert_eq!(call(named("lock.acquire"), &mut h, &[lock]), Ok(0));
        assert_eq!(call(named("lock.acquire"), &mut h, &[lock]), Err(LOCK_STATE));
        assert_eq!(call(named("lock.release"), &mut h, &[lock]), Ok(0));
        // Still held until the transaction ends.
        assert_eq!(call(named("lock.acquire"), &mut h, &[lock]), Err(LOCK_STATE));
        assert_eq!(call(named("lock.acquire"), &mut h, &[999]), Err(BAD_HANDLE));
    }
}
