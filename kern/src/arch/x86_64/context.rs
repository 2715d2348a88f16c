//! Switching between threads' kernel stacks.
//!
//! A thread that is not running has its callee-saved registers and a return address on its own
//! kernel stack, and the stack pointer saved in its thread record. `switch_stacks` saves the
//! current thread that way and resumes the next one. A new thread's stack is prepared so that the
//! switch "returns" into `trap_return` with a `TrapFrame` above it: its first run is a return
//! from an interrupt into user mode.
use core::arch::global_asm;

use super::trap::TrapFrame;

global_asm!(
    r#"
    .section .text.switch_stacks, "ax"
    .global switch_stacks
switch_stacks:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .text
"#,
    options(att_syntax)
);

// `call_on_stack(arg: rdi, f: rsi, stack_top: rdx)`: runs `f(arg)` on another stack and comes
// back to this one.
global_asm!(
    r#"
    .section .text.call_on_stack, "ax"
    .global call_on_stack_asm
call_on_stack_asm:
    pushq %rbp
    movq %rsp, %rbp
    movq %rdx, %rsp
    callq *%rsi
    movq %rbp, %rsp
    popq %rbp
    ret
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn call_on_stack_asm(arg: *mut core::ffi::c_void, f: extern "C" fn(*mut core::ffi::c_void), stack_top: u64);
    fn switch_stacks(save_rsp: *mut u64, next_rsp: u64);
    static trap_return: u8;
}

/// Saves the current thread's context (its stack pointer into `*save_rsp`) and resumes the
/// thread whose saved stack pointer is `next_rsp`. Returns when someone switches back.
///
/// # Safety
/// Interrupts must be disabled; `next_rsp` must come from a previous switch or from
/// `prepare_user_stack`, and its stack must stay allocated while the thread can run.
pub unsafe fn switch(save_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { switch_stacks(save_rsp, next_rsp) }
}

/// Runs `f(arg)` on the stack whose top is `stack_top` (16-byte aligned), then returns here.
///
/// # Safety
/// The stack must be mapped, unused by anyone else during the call, and large enough for `f`.
pub unsafe fn call_on_stack(stack_top: u64, f: extern "C" fn(*mut core::ffi::c_void), arg: *mut core::ffi::c_void) {
    // SAFETY: forwarded from the caller; the assembly restores our stack pointer from rbp.
    unsafe { call_on_stack_asm(arg, f, stack_top & !0xf) }
}

/// Whether the current stack pointer lies within `len` bytes below `top`.
pub fn on_stack_below(top: u64, len: u64) -> bool {
    let rsp: u64;
    // SAFETY: reads the stack pointer only.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp <= top && rsp > top - len
}

/// Lays out a new thread's kernel stack (`stack_top` is its highest address, 16-byte aligned)
/// so that switching to it enters user mode with `frame`. Returns the stack pointer to save.
///
/// # Safety
/// `stack_top` must be the top of at least 512 writable bytes owned by the new thread.
pub unsafe fn prepare_user_stack(stack_top: u64, frame: &TrapFrame) -> u64 {
    let frame_size = core::mem::size_of::<TrapFrame>() as u64;
    let frame_at = stack_top - frame_size;
    // Six callee-saved registers (zero) then the return address, below the frame.
    let switch_at = frame_at - 7 * 8;
    // SAFETY: both writes are inside the stack the caller gave us.
    unsafe {
        core::ptr::write(frame_at as *mut TrapFrame, frame.clone());
        let words = switch_at as *mut u64;
        for i in 0..6 {
            words.add(i).write(0);
        }
        words.add(6).write(core::ptr::addr_of!(trap_return) as u64);
    }
    switch_at
}
