//! x86_64 support: serial console, segments, traps, the local APIC timer, QEMU's firmware
//! configuration device and its exit port.
pub mod apic;
pub mod context;
pub mod cpu;
pub mod fixup;
pub mod fwcfg;
pub mod gdt;
pub mod hooks;
pub mod ioapic;
pub mod paging;
pub mod pci;
pub mod serial;
pub mod syscall;
pub mod trap;

use ::x86_64::instructions::{interrupts, port::Port};
use ::x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

pub use cpu::{CpuArch, set_kernel_stack};
pub use fixup::{MemoryFault, copy_checked, probe_read_u64};
pub use hooks::{Handlers, UserFault, install_handlers};

/// First stage, before memory management: console, segments, traps, SSE.
pub fn init_early() {
    serial::init();
    gdt::init();
    trap::init();
    syscall::init();
    enable_sse();
}

/// Second stage, once pages can be mapped: interrupt controllers and the periodic timer.
pub fn init_interrupts(tick_hz: u32) -> Result<apic::TimerInfo, apic::ApicError> {
    apic::mask_legacy_pic();
    let info = apic::init(tick_hz)?;
    interrupts::enable();
    Ok(info)
}

/// SSE for code that uses vector registers (the in-kernel JIT's output, user programs): FPU
/// present and not emulated, FXSAVE/FXRSTOR and SIMD exceptions enabled.
fn enable_sse() {
    // SAFETY: setting these bits only enables instructions the CPU supports on every x86_64.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// Runs `f` with interrupts disabled, restoring the previous state after.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    interrupts::without_interrupts(f)
}

pub fn enable_interrupts() {
    interrupts::enable();
}

pub fn disable_interrupts() {
    interrupts::disable();
}

pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Delivers device interrupt line `line` (a PCI function's legacy line, 0..16) to `handler`,
/// which runs with interrupts off and must ask its device whether it interrupted (lines are
/// shared). The line is routed to this CPU.
pub fn add_device_interrupt(line: u8, handler: fn()) -> Result<(), ioapic::IoApicError> {
    if line >= 16 || !hooks::add_device_handler(line, handler) {
        return Err(ioapic::IoApicError::NoSuchPin { gsi: line, pins: 16 });
    }
    ioapic::route(line, trap::DEVICE_VECTOR_BASE + line, ioapic::Trigger::PCI_LEGACY, apic::id())
}

/// The address the last page fault on this CPU was about (CR2).
pub fn page_fault_address() -> u64 {
    ::x86_64::registers::control::Cr2::read_raw()
}

/// Waits for the next interrupt.
pub fn wait_for_interrupt() {
    interrupts::enable_and_hlt();
}

/// Raises a breakpoint exception (`int3`).
pub fn breakpoint() {
    interrupts::int3();
}

/// Outcome reported to the host through QEMU's `isa-debug-exit` device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QemuExit {
    /// QEMU exits with status 33.
    Success = 0x10,
    /// QEMU exits with status 35.
    Failure = 0x11,
}

/// Stops the machine: exits QEMU with `code` when the debug-exit device is present, otherwise
/// halts forever.
pub fn exit_qemu(code: QemuExit) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device our runner configures; writing to it ends the VM. On a machine without it the write is ignored and we halt below.
    unsafe { Port::<u32>::new(0xf4).write(code as u32) };
    loop {
        interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}

/// The panic path: print what and where, then exit QEMU with the failure code.
pub fn panic(info: &core::panic::PanicInfo) -> ! {
    interrupts::disable();
    if let Some(test) = crate::ktest::current() {
        serial::write_fmt_emergency(format_args!("\ntest {test} ... FAILED (kernel panic)\n"));
    }
    serial::write_fmt_emergency(format_args!("\nKERNEL PANIC: {}\n", info.message()));
    if let Some(loc) = info.location() {
        serial::write_fmt_emergency(format_args!("  at {}:{}:{}\n", loc.file(), loc.line(), loc.column()));
    }
    exit_qemu(QemuExit::Failure)
}
