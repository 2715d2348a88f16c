//! Interrupts and exceptions: one entry stub per vector (256 of them, generated in assembly), a
//! common path that saves every general register into a `TrapFrame`, and `trap_dispatch`, which
//! decides what each vector means. Handlers get the full frame, so they can print a register
//! dump and can redirect execution (exception fix-ups, later graft aborts).
use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use ::x86_64::PrivilegeLevel;
use ::x86_64::instructions::tables::lidt;
use ::x86_64::registers::control::Cr2;
use ::x86_64::structures::DescriptorTablePointer;
use spin::Once;

use super::hooks::{self, UserFault};
use super::{apic, cpu, fixup, gdt};

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vectors of device interrupt lines 0..16 (routed by the I/O APIC).
pub const DEVICE_VECTOR_BASE: u8 = 0x30;
/// Vector the local APIC reports spurious interrupts on.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Vectors the (masked) legacy PICs are remapped to, so that a stray PIC interrupt can never be
/// mistaken for an exception.
pub const PIC_BASE_VECTOR: u8 = 0xE0;

/// Registers saved on entry, in the order the entry path pushes them (lowest address first).
#[repr(C)]
#[derive(Clone, Debug)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Each stub is 16-byte aligned so stub `n` sits at `trap_stubs + 16 * n`. The CPU pushes an error
// code for vectors 8, 10-14, 17, 21, 29 and 30; the others push a zero so the frame is uniform.
global_asm!(
    r#"
    .section .text.trap_stubs, "ax"
    .balign 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

trap_common:
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax
    movq %rsp, %rdi
    cld
    call trap_dispatch
    .global trap_return
trap_return:
    popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    addq $16, %rsp
    iretq
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static trap_stubs: u8;
}

impl TrapFrame {
    /// A frame that `trap_return` turns into a first entry to user mode at `rip` with stack
    /// `rsp`, interrupts enabled, and `rdi`/`rsi` as given.
    pub fn new_user(rip: u64, rsp: u64, rdi: u64, rsi: u64) -> TrapFrame {
        let sel = gdt::selectors();
        TrapFrame {
            rax: 0, rbx: 0, rcx: 0, rdx: 0, rsi, rdi, rbp: 0,
            r8: 0, r9: 0, r10: 0, r11: 0, r12: 0, r13: 0, r14: 0, r15: 0,
            vector: 0, error_code: 0,
            rip,
            cs: u64::from(sel.user_code.0) | 3,
            rflags: 0x202,
            rsp,
            ss: u64::from(sel.user_data.0) | 3,
        }
    }
}

/// A 64-bit interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    flags: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const EMPTY: Gate =
        Gate { offset_low: 0, selector: 0, ist: 0, flags: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    fn new(handler: u64, selector: u16, ist: Option<u16>, dpl: PrivilegeLevel) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            // IST slots are numbered from 1 in the gate; 0 means "no stack switch".
            ist: ist.map_or(0, |i| i as u8 + 1),
            // present, DPL, type 0xE (64-bit interrupt gate: interrupts off on entry)
            flags: 0x80 | ((dpl as u8) << 5) | 0x0E,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

pub fn init() {
    let idt = IDT.call_once(|| {
        let base = core::ptr::addr_of!(trap_stubs) as u64;
        let cs = gdt::selectors().kernel_code.0;
        let mut gates = [Gate::EMPTY; 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let ist = match vector {
                8 => Some(cpu::IST_DOUBLE_FAULT),
                2 | 18 => Some(cpu::IST_NMI),
                _ => None,
            };
            // `int3` may later be used from user space (debuggers); everything else is kernel-only.
            let dpl = if vector == 3 { PrivilegeLevel::Ring3 } else { PrivilegeLevel::Ring0 };
            *gate = Gate::new(base + 16 * vector as u64, cs, ist, dpl);
        }
        Idt(gates)
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: ::x86_64::VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT lives in a static for the rest of the kernel's life and every gate points at a stub of `trap_stubs`.
    unsafe { lidt(&ptr) };
}

/// CPU exception names, by vector.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error", "debug", "non-maskable interrupt", "breakpoint", "overflow",
        "bound range exceeded", "invalid opcode", "device not available", "double fault",
        "coprocessor segment overrun", "invalid TSS", "segment not present",
        "stack-segment fault", "general protection fault", "page fault", "reserved (15)",
        "x87 floating-point exception", "alignment check", "machine check",
        "SIMD floating-point exception", "virtualization exception",
        "control protection exception", "reserved (22)", "reserved (23)", "reserved (24)",
        "reserved (25)", "reserved (26)", "reserved (27)", "hypervisor injection exception",
        "VMM communication exception", "security exception", "reserved (31)",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// How many breakpoint exceptions have been handled (and resumed from).
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// Entry from `trap_common` with interrupts disabled.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let h = hooks::handlers();
    let from_user = frame.cs & 3 == 3;
    // A fault in kernel mode may be the kernel's registered concern first (a check that
    // failed in graft code, ud2, or any other fault inside it: the call is aborted and the
    // kernel goes on).
    if matches!(frame.vector, 0 | 6 | 12 | 13 | 14) && !from_user && (h.kernel_fault)(frame) {
        return;
    }
    match frame.vector {
        1 if !from_user && h.debug_step.is_some() => {
            if let Some(step) = h.debug_step {
                step(frame);
            }
        }
        3 => {
            // `int3` leaves RIP after the instruction: returning resumes execution.
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            log::debug!("breakpoint at {:#x}", frame.rip.wrapping_sub(1));
        }
        14 => page_fault(frame, &h),
        v if v < 32 && from_user => (h.user_fault)(frame, UserFault::Exception { vector: v, name: exception_name(v) }),
        v if v == u64::from(TIMER_VECTOR) => {
            apic::end_of_interrupt();
            (h.timer)(frame);
        }
        v if (u64::from(DEVICE_VECTOR_BASE)..u64::from(DEVICE_VECTOR_BASE) + 16).contains(&v) => {
            hooks::device_interrupt((v - u64::from(DEVICE_VECTOR_BASE)) as u8);
            apic::end_of_interrupt();
        }
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v if v >= u64::from(PIC_BASE_VECTOR) && v < u64::from(PIC_BASE_VECTOR) + 16 => {
            // A spurious interrupt of the masked legacy PIC: nothing to acknowledge.
        }
        v if v < 32 => fatal(frame, None),
        v => log::warn!("unexpected interrupt on vector {v:#x}"),
    }
}

/// Page-fault error code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

fn page_fault(frame: &mut TrapFrame, h: &hooks::Handlers) {
    let addr = Cr2::read_raw();
    if frame.cs & 3 == 3 {
        let e = frame.error_code;
        let fault = UserFault::Page { addr, write: e & PF_WRITE != 0, present: e & PF_PRESENT != 0, fetch: e & PF_FETCH != 0 };
        (h.user_fault)(frame, fault);
        return;
    }
    if fixup::try_fixup(frame, addr) {
        return;
    }
    fatal(frame, Some(addr));
}

/// An exception the kernel cannot recover from: dump the registers and stop.
fn fatal(frame: &TrapFrame, fault_addr: Option<u64>) -> ! {
    let name = exception_name(frame.vector);
    super::serial::write_fmt_emergency(format_args!(
        "\n!!! {name} (vector {}, error code {:#x}){}\n{frame}",
        frame.vector,
        frame.error_code,
        FaultAddr(fault_addr),
    ));
    panic!("unhandled {name} at rip {:#x}", frame.rip);
}

struct FaultAddr(Option<u64>);

impl fmt::Display for FaultAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, " accessing {a:#x}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let regs: [(&str, u64); 20] = [
            ("rax", self.rax), ("rbx", self.rbx), ("rcx", self.rcx), ("rdx", self.rdx),
            ("rsi", self.rsi), ("rdi", self.rdi), ("rbp", self.rbp), ("rsp", self.rsp),
            ("r8", self.r8), ("r9", self.r9), ("r10", self.r10), ("r11", self.r11),
            ("r12", self.r12), ("r13", self.r13), ("r14", self.r14), ("r15", self.r15),
            ("rip", self.rip), ("rflags", self.rflags), ("cs", self.cs), ("ss", self.ss),
        ];
        for row in regs.chunks(4) {
            for (name, value) in row {
                write!(f, "  {name:>6}={value:#018x}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use crate::{check_eq, ktest};

    ktest! {
        fn breakpoint_is_handled_and_execution_resumes() -> TestResult {
            let before = super::breakpoint_count();
            let mut resumed = 0;
            for _ in 0..3 {
                super::super::breakpoint();
                resumed += 1;
            }
            check_eq!(resumed, 3);
            check_eq!(super::breakpoint_count(), before + 3);
            Ok(())
        }
    }
}
