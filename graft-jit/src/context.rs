//! The per-call context: the one block of memory that compiled graft code reads and writes
//! besides its regions and its stack.
//!
//! Compiled code reaches everything it needs through a pointer to a [`Context`] that is its
//! first argument (Cranelift's `vmctx`), at the fixed offsets below. The layout is `#[repr(C)]`
//! and part of the ABI between the JIT, the kernel and the host runner: never reorder fields,
//! only append (and bump [`CONTEXT_VERSION`]).
//!
//! Who writes what:
//! - the caller (kernel or host runner) fills every field before [`crate::enter`];
//! - compiled code updates `fuel` and `depth`, and writes `abort` just before an `abort`
//!   trap;
//! - an import writes `abort` (a packed [`AbortReason`]) to fail;
//! - the trampoline writes `result` and `recovery_rsp`.
//!
//! The context must not lie inside any region handed to the graft (the lowering assumes
//! region stores never alias it).

use core::ffi::c_void;
use core::mem::offset_of;

use graft_ir::AbortReason;

/// Version of the layout below; bumped whenever a field is added.
pub const CONTEXT_VERSION: u32 = 1;

/// Most passed-in regions (`r1..=rMAX_REGIONS`) a compiled graft can use.
pub const MAX_REGIONS: usize = 4;

/// Most parameters an entry function can take: the trampoline passes them in the System V
/// argument registers after the context (no graft point takes more).
pub const ENTRY_ARGS: usize = 3;

/// A passed-in region as compiled code sees it: `len` bytes at `base`.
///
/// An access of `w` bytes at offset `off` is allowed iff `off + w <= len` (computed without
/// overflow); `base` is never dereferenced when `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionDesc {
    /// Address of the first byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

impl RegionDesc {
    /// A region no access can reach (length 0).
    pub const EMPTY: RegionDesc = RegionDesc { base: 0, len: 0 };
}

/// An import as compiled code calls it: the context, then each argument sign-extended to
/// i64 (handles as their raw 64-bit name), returning the result in the low bits of an i64
/// (ignored for callables without a result). To fail, the import writes
/// [`AbortReason::to_u64`] into [`Context::abort`] and returns anything; compiled code checks
/// the slot after every import call.
pub type ImportFn = unsafe extern "sysv64" fn(*mut Context) -> i64;

/// The per-call context. See the module documentation and `docs/graft-jit.md`.
#[repr(C)]
#[derive(Debug)]
pub struct Context {
    /// Offset 0. Fuel left, at most `i64::MAX` (`enter` clamps it). Compiled code counts in a
    /// register and writes the count here before calls, at returns and on abort paths (never
    /// below zero; `enter` writes 0 after `OutOfFuel`). Read it after the call for the fuel
    /// left; during the call it may be higher than the running count.
    pub fuel: u64,
    /// Offset 8. Depth of the running internal frame; the entry function runs at depth 1
    /// (the trampoline sets it). A call that would run deeper than `MAX_CALL_DEPTH` aborts
    /// `CallDepthExceeded`.
    pub depth: u64,
    /// Offset 16. 0, or the packed [`AbortReason`] an import or an `abort` wrote. Must be 0
    /// when the call starts.
    pub abort: u64,
    /// Offset 24. Reserved, 0 (the result comes back in registers, see [`crate::enter`]).
    pub reserved_24: u64,
    /// Offset 32. Base address of the data region `r0`.
    pub data_base: u64,
    /// Offset 40. Size of the data region in bytes. Compiled code masks with the module's
    /// `data_size` as a constant; this copy exists so callers can check the two agree
    /// ([`crate::Compiled::check_context`]).
    pub data_size: u64,
    /// Offset 48. Address of the function table: `u64` code addresses of `fn0, fn1, ...`
    /// ([`crate::Compiled::function_table`]).
    pub functions: *const u64,
    /// Offset 56. Address of the import table: one [`ImportFn`] address per callable,
    /// indexed by `Callable::id` (so one table can serve every graft).
    pub imports: *const u64,
    /// Offset 64. Opaque pointer for the imports (the kernel's current transaction, the host
    /// runner's callables). Compiled code never reads it.
    pub host: *mut c_void,
    /// Offset 72. Lowest stack address compiled code may use: every function's prologue
    /// aborts `StackOverflow` if its frame would reach below it. Leave room below it for the
    /// imports' own stack use and for fault handling.
    pub stack_limit: u64,
    /// Offset 80. Stack pointer saved by the trampoline while a call runs (0 otherwise);
    /// [`crate::recover`] resumes there.
    pub recovery_rsp: u64,
    /// Offset 88. Reserved, 0.
    pub reserved: u64,
    /// Offset 96. Passed-in regions: `regions[k - 1]` is `rk`.
    pub regions: [RegionDesc; MAX_REGIONS],
}

/// Byte offsets of the context fields, as compiled code and the trampoline use them.
pub mod offsets {
    use super::*;
    /// [`Context::fuel`]
    pub const FUEL: i32 = offset_of!(Context, fuel) as i32;
    /// [`Context::depth`]
    pub const DEPTH: i32 = offset_of!(Context, depth) as i32;
    /// [`Context::abort`]
    pub const ABORT: i32 = offset_of!(Context, abort) as i32;
    /// [`Context::data_base`]
    pub const DATA_BASE: i32 = offset_of!(Context, data_base) as i32;
    /// [`Context::data_size`]
    pub const DATA_SIZE: i32 = offset_of!(Context, data_size) as i32;
    /// [`Context::functions`]
    pub const FUNCTIONS: i32 = offset_of!(Context, functions) as i32;
    /// [`Context::imports`]
    pub const IMPORTS: i32 = offset_of!(Context, imports) as i32;
    /// [`Context::host`]
    pub const HOST: i32 = offset_of!(Context, host) as i32;
    /// [`Context::stack_limit`]
    pub const STACK_LIMIT: i32 = offset_of!(Context, stack_limit) as i32;
    /// [`Context::recovery_rsp`]
    pub const RECOVERY_RSP: i32 = offset_of!(Context, recovery_rsp) as i32;
    /// [`Context::regions`]
    pub const REGIONS: i32 = offset_of!(Context, regions) as i32;
    /// Size of one [`RegionDesc`].
    pub const REGION_SIZE: i32 = core::mem::size_of::<RegionDesc>() as i32;
    /// Offset of `base` inside a [`RegionDesc`].
    pub const REGION_BASE: i32 = offset_of!(RegionDesc, base) as i32;
    /// Offset of `len` inside a [`RegionDesc`].
    pub const REGION_LEN: i32 = offset_of!(RegionDesc, len) as i32;
}

// The documented layout is the ABI: fail the build if it ever drifts.
const _: () = {
    assert!(offsets::FUEL == 0);
    assert!(offsets::DEPTH == 8);
    assert!(offsets::ABORT == 16);
    assert!(offsets::DATA_BASE == 32);
    assert!(offsets::DATA_SIZE == 40);
    assert!(offsets::FUNCTIONS == 48);
    assert!(offsets::IMPORTS == 56);
    assert!(offsets::HOST == 64);
    assert!(offsets::STACK_LIMIT == 72);
    assert!(offsets::RECOVERY_RSP == 80);
    assert!(offsets::REGIONS == 96);
    assert!(offsets::REGION_SIZE == 16);
    assert!(core::mem::size_of::<Context>() == 96 + 16 * MAX_REGIONS);
};

impl Context {
    /// A context with every pointer null, no regions and no fuel: fill it before a call.
    pub const fn empty() -> Context {
        Context {
            fuel: 0,
            depth: 0,
            abort: 0,
            reserved_24: 0,
            data_base: 0,
            data_size: 0,
            functions: core::ptr::null(),
            imports: core::ptr::null(),
            host: core::ptr::null_mut(),
            stack_limit: 0,
            recovery_rsp: 0,
            reserved: 0,
            regions: [RegionDesc::EMPTY; MAX_REGIONS],
        }
    }

    /// Record `reason` as the call's abort reason (for imports).
    pub fn set_abort(&mut self, reason: AbortReason) {
        self.abort = reason.to_u64();
    }

    /// The abort reason in the slot, if any; an unknown code reads as `HostContract`.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        match self.abort {
            0 => None,
            packed => Some(AbortReason::from_u64(packed).unwrap_or(AbortReason::HostContract)),
        }
    }
}
