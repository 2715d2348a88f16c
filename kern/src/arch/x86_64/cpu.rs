//! The architecture's per-CPU state, in one structure: the system-call entry's stack slots,
//! the TSS (the stack an interrupt from user mode switches to) and the interrupt-stack-table
//! stacks. Generic per-CPU state (`crate::cpu`) sits beside it; `arch` never reaches up to it.
//!
//! One CPU today: the entry stubs address `CPU0` directly. With SMP they would reach it
//! through GS (`swapgs`), and nothing outside this module would change.
use ::x86_64::VirtAddr;
use ::x86_64::structures::tss::TaskStateSegment;

/// Interrupt-stack-table slots (0-based, as the `x86_64` crate counts them): the double-fault
/// and NMI handlers get stacks of their own, so a kernel stack overflow (which ends in a double
/// fault) still reaches a handler that can report it. Page faults have no IST stack: a fault
/// from user mode runs on the faulting thread's kernel stack, where it may sleep.
pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
const IST_STACKS: usize = 2;
const IST_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

/// One CPU's architecture state. `repr(C)`: the system-call entry stub addresses the first two
/// fields by offset.
#[repr(C)]
pub struct CpuArch {
    /// Top of the running thread's kernel stack: the system-call entry switches to it.
    pub(super) syscall_kernel_rsp: u64,
    /// Scratch slot for the user stack pointer during the entry stub.
    pub(super) syscall_user_rsp: u64,
    tss: TaskStateSegment,
    ist: [Stack; IST_STACKS],
}

/// The first (only) CPU's state. Written with interrupts off on that CPU (or by the CPU itself
/// on a privilege change), never shared with another CPU.
#[unsafe(no_mangle)]
pub(super) static mut CPU0: CpuArch = CpuArch {
    syscall_kernel_rsp: 0,
    syscall_user_rsp: 0,
    tss: TaskStateSegment::new(),
    ist: [const { Stack([0; IST_STACK_SIZE]) }; IST_STACKS],
};

/// Fills this CPU's TSS (its IST stacks) and returns it for the GDT. Runs once at boot, before
/// interrupts are enabled.
pub(super) fn init_tss() -> &'static TaskStateSegment {
    // SAFETY: runs once at boot before interrupts are enabled; nothing else refers to CPU0's TSS yet, and afterwards only `set_kernel_stack` writes it (interrupts off).
    unsafe {
        let cpu = &mut *core::ptr::addr_of_mut!(CPU0);
        for (slot, index) in [IST_DOUBLE_FAULT, IST_NMI].into_iter().enumerate() {
            let base = core::ptr::addr_of!(cpu.ist[slot]) as u64;
            cpu.tss.interrupt_stack_table[index as usize] = VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        &*core::ptr::addr_of!(cpu.tss)
    }
}

/// Sets the kernel stack of the thread about to run on this CPU: the stack the next system
/// call (the entry stub) and the next interrupt or exception from user mode (the TSS) use.
pub fn set_kernel_stack(top: u64) {
    super::without_interrupts(|| {
        // SAFETY: aligned stores into this CPU's own state with interrupts off; the CPU reads `rsp0` only on a privilege change and the entry stub reads its slot only during a system call, neither of which can happen during the stores.
        unsafe {
            let cpu = core::ptr::addr_of_mut!(CPU0);
            (*cpu).syscall_kernel_rsp = top;
            (*cpu).tss.privilege_stack_table[0] = VirtAddr::new(top);
        }
    });
}
