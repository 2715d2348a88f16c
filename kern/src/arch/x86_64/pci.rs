//! PCI configuration space through the legacy I/O ports (configuration mechanism #1, what
//! QEMU's `pc` machine offers; it has no memory-mapped ECAM).
use ::x86_64::instructions::port::Port;
use spin::Mutex;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Serialises the address/data port pair.
static PORTS: Mutex<()> = Mutex::new(());

/// A PCI function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    pub bus: u8,
    /// 0..32
    pub device: u8,
    /// 0..8
    pub function: u8,
}

fn address(f: Function, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(f.bus) << 16)
        | (u32::from(f.device & 0x1f) << 11)
        | (u32::from(f.function & 0x7) << 8)
        | u32::from(offset & 0xfc)
}

/// Reads the 32-bit register at `offset` (rounded down to a multiple of 4).
pub fn read32(f: Function, offset: u8) -> u32 {
    super::without_interrupts(|| {
        let _p = PORTS.lock();
        // SAFETY: the standard configuration ports; the address register selects a register of configuration space, which reading does not change.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS).write(address(f, offset));
            Port::<u32>::new(CONFIG_DATA).read()
        }
    })
}

/// Writes the 32-bit register at `offset` (rounded down to a multiple of 4).
pub fn write32(f: Function, offset: u8, value: u32) {
    super::without_interrupts(|| {
        let _p = PORTS.lock();
        // SAFETY: the standard configuration ports; callers write registers of devices they drive.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS).write(address(f, offset));
            Port::<u32>::new(CONFIG_DATA).write(value);
        }
    })
}

/// The legacy interrupt line the firmware routed the function's INTx pin to (`None` if it
/// uses no pin).
pub fn interrupt_line(f: Function) -> Option<u8> {
    let r = read32(f, 0x3C);
    let (line, pin) = (r as u8, (r >> 8) as u8);
    (pin != 0 && line != 0xFF).then_some(line)
}
