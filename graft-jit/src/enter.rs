//! Entering graft code and getting out of it when it traps: the trampoline and the recovery
//! contract shared by the kernel's fault handler and the host's signal handler.
//!
//! `graft_jit_enter(entry, ctx, args)` (System V) pushes the callee-saved registers, stores
//! its stack pointer in `ctx.recovery_rsp` (and `ctx` itself at that address), and calls the
//! entry shim. On return it stores the result in `ctx.result` and returns 0.
//!
//! When graft code traps, the handler asks [`recover`] for a [`Redirect`] and resumes the
//! faulting thread at `rip = graft_jit_resume`, `rsp = ctx.recovery_rsp`, `rax = packed
//! abort reason`: the trampoline's epilogue then pops the callee-saved registers it pushed and
//! returns `rax` to the caller of `graft_jit_enter`, as if the call had returned normally
//! with a non-zero status. Nothing else of the faulting state needs restoring: every other
//! register is caller-saved across the `enter` call.

use graft_ir::AbortReason;

use crate::context::{Context, offsets};
use crate::trap::{TrapReason, TrapTable};

// Stack at the call: 6 pushes + the alignment slot + the return address = 64 bytes, so `rsp`
// is 16-byte aligned at `call rax`. The alignment slot holds `ctx` for the shared epilogue
// (the faulting code may have clobbered every register by the time we resume).
core::arch::global_asm!(
    ".text",
    ".globl graft_jit_enter",
    ".type graft_jit_enter,@function",
    ".p2align 4",
    "graft_jit_enter:",
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rsp], rsi",
    "mov [rsi + {recovery_rsp}], rsp",
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "call rax",
    "mov rcx, [rsp]",
    "mov [rcx + {result}], rax",
    "xor eax, eax",
    ".globl graft_jit_resume",
    "graft_jit_resume:",
    "mov rcx, [rsp]",
    "mov qword ptr [rcx + {recovery_rsp}], 0",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size graft_jit_enter, . - graft_jit_enter",
    recovery_rsp = const offsets::RECOVERY_RSP,
    result = const offsets::RESULT,
);

unsafe extern "sysv64" {
    fn graft_jit_enter(entry: u64, ctx: *mut Context, args: *const u64) -> u64;
    fn graft_jit_resume();
}

/// Call a compiled graft: `entry` is the address of its entry shim (code base +
/// [`crate::Compiled::entry_offset`]), `args` its arguments (one `u64` per entry parameter,
/// the value's bits in the low end). Returns the result bits (zero-extended) or why the call
/// aborted. `ctx.fuel` holds the fuel left afterwards either way.
///
/// # Safety
/// `entry` must be the entry shim of code compiled by this crate and placed, unchanged, in
/// executable memory; `ctx` must be filled for that code (every table and region pointer
/// valid for the whole call, `abort` 0, `stack_limit` above the end of the current stack with
/// room for the imports); `args` must hold one value per entry parameter; and while the call
/// runs, a fault inside the code must be handed to [`recover`] and the thread resumed as it
/// says (see `docs/graft-jit.md`).
pub unsafe fn enter(entry: u64, ctx: *mut Context, args: *const u64) -> Result<u64, AbortReason> {
    // SAFETY: the caller upholds the contract above; the trampoline itself saves and restores every callee-saved register and returns normally on both paths.
    let status = unsafe { graft_jit_enter(entry, ctx, args) };
    if status == 0 {
        // SAFETY: `ctx` is valid (caller contract) and the call is over.
        Ok(unsafe { (*ctx).result })
    } else {
        Err(AbortReason::from_u64(status).unwrap_or(AbortReason::HostContract))
    }
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
