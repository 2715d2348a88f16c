//! The I/O APIC: routes device interrupt lines (GSIs) to vectors of the local APIC.
//!
//! QEMU's `pc` machine has one I/O APIC at the standard address with the ISA interrupts on
//! pins 0-15 (IRQ 0 on pin 2); the firmware routes PCI INTx to ISA lines 5, 9, 10 and 11, which
//! QEMU declares level-triggered, active-high.
use core::fmt;

use ::x86_64::PhysAddr;
use spin::{Mutex, Once};

use crate::memory;

const IOAPIC_PHYS: u64 = 0xFEC0_0000;
const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;

const LEVEL_TRIGGERED: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;
const MASKED: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoApicError {
    Map(memory::MapError),
    /// The GSI is past the I/O APIC's pins.
    NoSuchPin { gsi: u8, pins: u8 },
}

impl fmt::Display for IoApicError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            IoApicError::Map(e) => write!(f, "mapping the I/O APIC: {e}"),
            IoApicError::NoSuchPin { gsi, pins } => write!(f, "interrupt line {gsi} is past the I/O APIC's {pins} pins"),
        }
    }
}

static BASE: Once<Result<usize, IoApicError>> = Once::new();
static REGS: Mutex<()> = Mutex::new(());

fn base() -> Result<usize, IoApicError> {
    *BASE.call_once(|| {
        memory::map_mmio(PhysAddr::new(IOAPIC_PHYS), 0x20).map(|v| v.as_u64() as usize).map_err(IoApicError::Map)
    })
}

fn read(base: usize, reg: u32) -> u32 {
    // SAFETY: `base` maps the I/O APIC's registers uncached; select, then read the window. REGS serialises the pair.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::read_volatile((base + IOWIN) as *const u32)
    }
}

fn write(base: usize, reg: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::write_volatile((base + IOWIN) as *mut u32, value);
    }
}

/// Trigger mode and polarity of an interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub level: bool,
    pub active_low: bool,
}

impl Trigger {
    /// A PCI INTx line as QEMU's `pc` machine routes it.
    pub const PCI_LEGACY: Trigger = Trigger { level: true, active_low: false };
}

/// Delivers interrupt line `gsi` as `vector` to the local APIC with id `apic_id`.
pub fn route(gsi: u8, vector: u8, trigger: Trigger, apic_id: u8) -> Result<(), IoApicError> {
    let base = base()?;
    super::without_interrupts(|| {
        let _r = REGS.lock();
        let pins = ((read(base, REG_VERSION) >> 16) & 0xff) as u8 + 1;
        if gsi >= pins {
            return Err(IoApicError::NoSuchPin { gsi, pins });
        }
        let mut entry = u64::from(vector) | (u64::from(apic_id) << 56);
        if trigger.level {
            entry |= LEVEL_TRIGGERED;
        }
        if trigger.active_low {
            entry |= ACTIVE_LOW;
        }
        let reg = REG_REDIRECTION + 2 * u32::from(gsi);
        // Masked while the halves are written, then unmasked.
        write(base, reg, (entry | MASKED) as u32);
        write(base, reg + 1, (entry >> 32) as u32);
        write(base, reg, entry as u32);
        Ok(())
    })
}
