//! The `syscall` instruction's entry and exit.
//!
//! On entry the CPU leaves the user RIP in RCX and RFLAGS in R11, masks interrupts (SFMASK), and
//! does not switch stacks: the entry stub saves the user stack pointer, loads the running
//! thread's kernel stack top, and builds a `SyscallFrame` there for `syscall_dispatch`. The exit
//! restores it and returns with `sysretq`. The stack slots are this CPU's (`cpu::CpuArch`).
use core::arch::global_asm;

use ::x86_64::VirtAddr;
use ::x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use ::x86_64::registers::rflags::RFlags;

use super::gdt;

/// Registers at the system call, as the entry stub saved them (lowest address first).
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct SyscallFrame {
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
    pub r9: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// User RIP (from RCX).
    pub rip: u64,
    /// User RFLAGS (from R11).
    pub rflags: u64,
    pub rsp: u64,
}

global_asm!(
    r#"
    .section .text.syscall_entry, "ax"
    .global syscall_entry
syscall_entry:
    movq %rsp, {cpu}+{user_rsp}(%rip)
    movq {cpu}+{kernel_rsp}(%rip), %rsp
    pushq {cpu}+{user_rsp}(%rip)
    pushq %r11
    pushq %rcx
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %rbp
    pushq %rbx
    pushq %r9
    pushq %r8
    pushq %r10
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rax
    movq %rsp, %rdi
    cld
    call syscall_dispatch
    popq %rax
    popq %rdi
    popq %rsi
    popq %rdx
    popq %r10
    popq %r8
    popq %r9
    popq %rbx
    popq %rbp
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    popq %rcx
    popq %r11
    popq %rsp
    sysretq
    .text
"#,
    cpu = sym super::cpu::CPU0,
    user_rsp = const core::mem::offset_of!(super::cpu::CpuArch, syscall_user_rsp),
    kernel_rsp = const core::mem::offset_of!(super::cpu::CpuArch, syscall_kernel_rsp),
    options(att_syntax)
);

unsafe extern "C" {
    fn syscall_entry();
}

#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch(frame: &mut SyscallFrame) {
    (super::hooks::handlers().syscall)(frame);
}

/// Enables `syscall`/`sysret` and points them at the entry stub.
pub fn init() {
    let sel = gdt::selectors();
    // SAFETY: the selectors follow the layout sysret requires (user data right before user code, kernel data right after kernel code), checked by `Star::write`.
    unsafe {
        if let Err(e) = Star::write(sel.user_code, sel.user_data, sel.kernel_code, sel.kernel_data) {
            panic!("STAR: {e}");
        }
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        SFMask::write(RFlags::INTERRUPT_FLAG | RFlags::TRAP_FLAG | RFlags::DIRECTION_FLAG | RFlags::ALIGNMENT_CHECK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}
