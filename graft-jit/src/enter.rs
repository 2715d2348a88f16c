//! Entering graft code and getting out of it when it traps: the trampoline and the recovery
//! contract shared by the kernel's fault handler and the host's signal handler.
//!
//! `graft_jit_enter_on(ctx, a0, a1, a2, stack_top, entry)` (System V) pushes the
//! callee-saved registers, switches to the stack ending at `stack_top`, stores its stack
//! pointer in `ctx.recovery_rsp` (with `ctx` and the stack pointer to go back to at that
//! address), sets `ctx.depth` to 1 and calls the entry function `fn0` directly: the context and
//! the arguments are already where its System V signature `(ctx, a0, a1, a2)` wants them. On
//! return it hands back `(0, result)` in `rax:rdx`. `graft_jit_enter` is the same on the
//! current stack (the frame goes below the saved registers).
//!
//! When graft code traps, the handler asks [`recover`] for a [`Redirect`] and resumes the
//! faulting thread at `rip = graft_jit_resume`, `rsp = ctx.recovery_rsp`, `rax = packed
//! abort reason`: the trampoline's epilogue then restores the caller's stack pointer, pops
//! the callee-saved registers it pushed and returns `(rax, garbage)`, as if the call had
//! returned normally with a non-zero status. Nothing else of the faulting state needs
//! restoring: every other register is caller-saved across the call.

use graft_ir::AbortReason;

use crate::context::{Context, ENTRY_ARGS, offsets};
use crate::trap::{TrapReason, TrapTable};

// The frame at `ctx.recovery_rsp` (16-byte aligned at `call r9`): `ctx`, then the stack
// pointer to go back to (where the callee-saved registers were pushed). The faulting code may
// have clobbered every register by the time a handler resumes at `graft_jit_resume`, so the
// shared epilogue reloads both from there.
core::arch::global_asm!(
    ".text",
    ".globl graft_jit_enter",
    ".type graft_jit_enter,@function",
    ".p2align 4",
    "graft_jit_enter:",
    // Below the six registers about to be pushed, 16-byte aligned.
    "lea r8, [rsp - 64]",
    "and r8, -16",
    ".globl graft_jit_enter_on",
    "graft_jit_enter_on:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rax, rsp",
    "mov rsp, r8",
    "push rax",
    "push rdi",
    "mov [rdi + {recovery_rsp}], rsp",
    "mov qword ptr [rdi + {depth}], 1",
    "call r9",
    "mov rdx, rax",
    "xor eax, eax",
    ".globl graft_jit_resume",
    "graft_jit_resume:",
    "mov rcx, [rsp]",
    "mov qword ptr [rcx + {recovery_rsp}], 0",
    "mov rsp, [rsp + 8]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size graft_jit_enter, . - graft_jit_enter",
    recovery_rsp = const offsets::RECOVERY_RSP,
    depth = const offsets::DEPTH,
);
const _: () = assert!(ENTRY_ARGS == 3, "the trampoline passes three argument registers");

/// What the trampoline returns in `rax:rdx`.
#[repr(C)]
struct Status {
    /// 0, or the packed abort reason.
    status: u64,
    /// The entry's result (valid when `status` is 0); bits above its type's width are
    /// undefined.
    result: u64,
}

unsafe extern "sysv64" {
    fn graft_jit_enter(ctx: *mut Context, a0: u64, a1: u64, a2: u64, _unused: u64, entry: u64) -> Status;
    fn graft_jit_enter_on(ctx: *mut Context, a0: u64, a1: u64, a2: u64, stack_top: u64, entry: u64) -> Status;
    fn graft_jit_resume();
}

#[inline(always)]
fn status(r: Status) -> Result<u64, AbortReason> {
    if r.status == 0 { Ok(r.result) } else { Err(AbortReason::from_u64(r.status).unwrap_or(AbortReason::HostContract)) }
}

/// The fuel semantics' two ends that compiled code leaves to the caller: a count above
/// `i64::MAX` runs as `i64::MAX` (the code counts in i64), and `OutOfFuel` leaves none (the
/// code traps without writing the count, which is below zero there).
///
/// # Safety
/// `ctx` must be valid for reads and writes.
#[inline(always)]
unsafe fn with_fuel_rules(ctx: *mut Context, call: impl FnOnce() -> Status) -> Result<u64, AbortReason> {
    // SAFETY: the caller guarantees `ctx` is valid; no call is running on it yet.
    unsafe {
        if (*ctx).fuel > i64::MAX as u64 {
            (*ctx).fuel = i64::MAX as u64;
        }
    }
    let r = status(call());
    if r == Err(AbortReason::OutOfFuel) {
        // SAFETY: as above; the call is over.
        unsafe { (*ctx).fuel = 0 };
    }
    r
}

/// Call a compiled graft: `entry` is the address of its entry function (code base +
/// [`crate::Compiled::entry_offset`]), `args` its arguments (the value's bits in the low end
/// of each; slots past the entry's parameters are ignored). Returns the result bits (those
/// above the result type's width are undefined) or why the call aborted. `ctx.fuel` holds the
/// fuel left afterwards either way (0 after `OutOfFuel`; a count above `i64::MAX` runs as
/// `i64::MAX`).
///
/// # Safety
/// `entry` must be the entry function of code compiled by this crate and placed, unchanged,
/// in executable memory; `ctx` must be filled for that code (every table and region pointer
/// valid for the whole call, `abort` 0, `stack_limit` above the end of the current stack with
/// room for the imports); `args` must hold one value per entry parameter; and while the call
/// runs, a fault inside the code must be handed to [`recover`] and the thread resumed as it
/// says (see `docs/graft-jit.md`).
#[inline(always)]
pub unsafe fn enter(entry: u64, ctx: *mut Context, args: &[u64; ENTRY_ARGS]) -> Result<u64, AbortReason> {
    // SAFETY: the caller upholds the contract above (`ctx` valid); the trampoline saves and restores every callee-saved register and the stack pointer, and returns normally on both paths.
    unsafe { with_fuel_rules(ctx, || graft_jit_enter(ctx, args[0], args[1], args[2], 0, entry)) }
}

/// [`enter`] on another stack: the call runs on the stack whose top (highest address,
/// exclusive) is `stack_top`, and the caller's stack is back in place when it returns or
/// aborts. The kernel runs grafts this way, on a stack of their own.
///
/// # Safety
/// As for [`enter`]; in addition `stack_top` must be 16-byte aligned and the top of writable
/// memory that nothing else uses during the call, deep enough for the graft's frames down to
/// `ctx.stack_limit` and for the imports' own use below that.
#[inline(always)]
pub unsafe fn enter_on_stack(
    entry: u64,
    ctx: *mut Context,
    args: &[u64; ENTRY_ARGS],
    stack_top: u64,
) -> Result<u64, AbortReason> {
    // SAFETY: as for `enter`, with the caller's guarantee on the stack.
    unsafe { with_fuel_rules(ctx, || graft_jit_enter_on(ctx, args[0], args[1], args[2], stack_top, entry)) }
}

/// Where a fault handler resumes the thread.
pub fn resume_address() -> u64 {
    graft_jit_resume as *const () as usize as u64
}

/// Machine code placed in memory: where, how long, and its trap table.
#[derive(Clone, Copy, Debug)]
pub struct CodeRegion<'a> {
    /// Address of the first byte of the code.
    pub base: u64,
    /// Length of the code in bytes.
    pub len: u64,
    /// Its trap table.
    pub traps: &'a TrapTable,
}

impl CodeRegion<'_> {
    /// Whether `rip` lies inside the code.
    pub fn contains(&self, rip: u64) -> bool {
        rip.wrapping_sub(self.base) < self.len
    }
}

/// How to resume a thread whose graft call is being aborted: set these three registers in
/// the saved frame and return from the fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Redirect {
    /// New instruction pointer: the trampoline's epilogue.
    pub rip: u64,
    /// New stack pointer: the one the trampoline saved.
    pub rsp: u64,
    /// New `rax`: the packed abort reason `enter` returns.
    pub rax: u64,
    /// The reason, unpacked.
    pub reason: AbortReason,
}

/// Decide what to do with a fault at `fault_rip` while `ctx`'s call runs in `code`.
///
/// `None`: the fault is not the graft's (outside its code, or no call in progress on `ctx`);
/// handle it as any other kernel fault. Otherwise resume as the [`Redirect`] says. A fault
/// inside the code at an address that is not a trap site (which the lowering never
/// produces) still aborts the call, with `HostContract`.
pub fn recover(ctx: &Context, code: &CodeRegion<'_>, fault_rip: u64) -> Option<Redirect> {
    if ctx.recovery_rsp == 0 || !code.contains(fault_rip) {
        return None;
    }
    let offset = u32::try_from(fault_rip - code.base).ok()?;
    let reason = match code.traps.lookup(offset) {
        Some(TrapReason::Fixed(r)) => r,
        Some(TrapReason::InContext) => ctx.abort_reason().unwrap_or(AbortReason::HostContract),
        None => AbortReason::HostContract,
    };
    abort_redirect(ctx, reason)
}

/// Abort the running call with `reason` from an interrupt that stopped the thread inside
/// graft code (the watchdog timer, a detach): the same resumption as a trap. The caller must
/// have checked that the interrupted `rip` lies inside the graft's code (never abort a
/// thread stopped inside an import: it may hold kernel locks). `None` if no call is in
/// progress on `ctx`.
pub fn abort_redirect(ctx: &Context, reason: AbortReason) -> Option<Redirect> {
    if ctx.recovery_rsp == 0 {
        return None;
    }
    Some(Redirect { rip: resume_address(), rsp: ctx.recovery_rsp, rax: reason.to_u64(), reason })
}
