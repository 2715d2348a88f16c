//! The handlers generic kernel code registers with the architecture layer at start-up: `arch`
//! decodes what happened (which vector, which frame, which fault) and calls them; it never
//! names the subsystems behind them.
use core::cell::UnsafeCell;

use super::syscall::SyscallFrame;
use super::trap::TrapFrame;

/// What went wrong in user mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserFault {
    /// A page fault at `addr`.
    Page {
        addr: u64,
        /// The access was a write.
        write: bool,
        /// The page was mapped (a protection fault) rather than absent.
        present: bool,
        /// The access was an instruction fetch.
        fetch: bool,
    },
    /// Any other CPU exception (`vector` < 32), with its name.
    Exception { vector: u64, name: &'static str },
}

/// The handlers. Each runs with interrupts disabled, on the interrupted thread's kernel stack
/// (`user_fault` and `syscall` may block: they run on the thread's own stack).
#[derive(Clone, Copy)]
pub struct Handlers {
    /// The periodic timer (after its end-of-interrupt was signalled).
    pub timer: fn(&mut TrapFrame),
    /// A CPU exception in kernel mode, before the kernel's own recovery (exception fix-ups):
    /// returns true if it dealt with it (e.g. a fault inside graft code became an abort).
    pub kernel_fault: fn(&mut TrapFrame) -> bool,
    /// A CPU exception in user mode; returning resumes the user at `frame.rip`.
    pub user_fault: fn(&mut TrapFrame, UserFault),
    /// A system call.
    pub syscall: fn(&mut SyscallFrame),
    /// A single-step trap in kernel mode (an instruction tracer), if one is installed.
    pub debug_step: Option<fn(&mut TrapFrame)>,
}

fn no_timer(_: &mut TrapFrame) {}
fn no_kernel_fault(_: &mut TrapFrame) -> bool {
    false
}
fn no_user_fault(frame: &mut TrapFrame, fault: UserFault) {
    panic!("{fault:?} in user mode at rip {:#x} before any handler was installed", frame.rip)
}
fn no_syscall(frame: &mut SyscallFrame) {
    frame.rax = u64::MAX;
}

struct Table(UnsafeCell<Handlers>);

// SAFETY: written only by `install`/`replace_user_fault`, with interrupts off on the only CPU; read by the trap and system-call paths on that CPU, which cannot run during the write.
unsafe impl Sync for Table {}

static HANDLERS: Table = Table(UnsafeCell::new(Handlers {
    timer: no_timer,
    kernel_fault: no_kernel_fault,
    user_fault: no_user_fault,
    syscall: no_syscall,
    debug_step: None,
}));

/// Registers the kernel's handlers (at start-up, before interrupts and user mode).
pub fn install_handlers(h: Handlers) {
    super::without_interrupts(|| {
        // SAFETY: see `Table`: interrupts are off and this is the only CPU.
        unsafe { *HANDLERS.0.get() = h };
    });
}

/// Replaces the user-fault handler, returning the previous one (tests wrap the kernel's).
pub fn replace_user_fault(f: fn(&mut TrapFrame, UserFault)) -> fn(&mut TrapFrame, UserFault) {
    super::without_interrupts(|| {
        // SAFETY: see `Table`.
        unsafe { core::mem::replace(&mut (*HANDLERS.0.get()).user_fault, f) }
    })
}

#[inline(always)]
pub(super) fn handlers() -> Handlers {
    // SAFETY: see `Table`: callers run with interrupts off on the CPU that writes the table.
    unsafe { *HANDLERS.0.get() }
}

/// Handlers of device interrupt lines (ISA/PCI legacy lines 0..16), several per line (PCI
/// lines are shared): each asks its own device whether it interrupted.
const LINES: usize = 16;
const PER_LINE: usize = 4;

struct DeviceTable(UnsafeCell<[[Option<fn()>; PER_LINE]; LINES]>);

// SAFETY: as `Table`: written with interrupts off on the only CPU, read by the interrupt path on it.
unsafe impl Sync for DeviceTable {}

static DEVICES: DeviceTable = DeviceTable(UnsafeCell::new([[None; PER_LINE]; LINES]));

/// Adds `handler` to line `line`'s handlers; false if the line is out of range or full.
pub(super) fn add_device_handler(line: u8, handler: fn()) -> bool {
    super::without_interrupts(|| {
        // SAFETY: see `DeviceTable`.
        let table = unsafe { &mut *DEVICES.0.get() };
        let Some(slots) = table.get_mut(usize::from(line)) else { return false };
        match slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(handler);
                true
            }
            None => false,
        }
    })
}

/// Runs line `line`'s handlers (interrupts off).
pub(super) fn device_interrupt(line: u8) {
    // SAFETY: see `DeviceTable`: read with interrupts off.
    let slots = unsafe { (*DEVICES.0.get()).get(usize::from(line)).copied() };
    for handler in slots.into_iter().flatten().flatten() {
        handler();
    }
}
