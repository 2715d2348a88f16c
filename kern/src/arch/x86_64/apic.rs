//! Interrupt controllers: the legacy 8259 PICs are remapped out of the way and masked; the local
//! APIC delivers a periodic timer interrupt, calibrated against the PIT.
use core::fmt;

use ::x86_64::PhysAddr;
use ::x86_64::instructions::port::Port;
use ::x86_64::registers::model_specific::Msr;
use spin::Once;

use super::trap::{PIC_BASE_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::memory;

const IA32_APIC_BASE: u32 = 0x1B;

// Register offsets in the local APIC page.
const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xB0;
const REG_SVR: usize = 0xF0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3E0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const DIVIDE_BY_16: u32 = 0b0011;

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

#[derive(Debug)]
pub enum ApicError {
    /// CPUID/MSR say there is no local APIC.
    NotPresent,
    Map(memory::MapError),
    /// The timer did not count during calibration.
    TimerStuck,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ApicError::NotPresent => write!(f, "no local APIC"),
            ApicError::Map(e) => write!(f, "mapping the local APIC: {e}"),
            ApicError::TimerStuck => write!(f, "the APIC timer did not count during calibration"),
        }
    }
}

/// What the timer was set up with.
#[derive(Clone, Copy, Debug)]
pub struct TimerInfo {
    pub apic_id: u32,
    /// APIC timer counts (after the divider) per second.
    pub counts_per_sec: u64,
    pub tick_hz: u32,
    /// Time-stamp counter increments per second, measured against the same PIT interval.
    pub tsc_per_sec: u64,
}

static BASE: Once<usize> = Once::new();

fn read(reg: usize) -> u32 {
    let base = *BASE.get().expect("apic::init has run");
    // SAFETY: `base` maps the local APIC page uncached; `reg` is a register offset inside it.
    unsafe { core::ptr::read_volatile((base + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    let base = *BASE.get().expect("apic::init has run");
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((base + reg) as *mut u32, value) }
}

/// Remaps both 8259s to `PIC_BASE_VECTOR..+16` and masks every line.
pub fn mask_legacy_pic() {
    // SAFETY: the standard 8259 initialisation sequence on its fixed ports.
    unsafe {
        let mut cmd1 = Port::<u8>::new(0x20);
        let mut data1 = Port::<u8>::new(0x21);
        let mut cmd2 = Port::<u8>::new(0xA0);
        let mut data2 = Port::<u8>::new(0xA1);
        cmd1.write(0x11);
        cmd2.write(0x11);
        data1.write(PIC_BASE_VECTOR);
        data2.write(PIC_BASE_VECTOR + 8);
        data1.write(4);
        data2.write(2);
        data1.write(0x01);
        data2.write(0x01);
        data1.write(0xFF);
        data2.write(0xFF);
    }
}

pub fn init(tick_hz: u32) -> Result<TimerInfo, ApicError> {
    let msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let apic_base = unsafe { msr.read() };
    if apic_base & (1 << 11) == 0 {
        return Err(ApicError::NotPresent);
    }
    let phys = PhysAddr::new(apic_base & 0x000F_FFFF_FFFF_F000);
    let virt = memory::map_mmio(phys, 4096).map_err(ApicError::Map)?;
    BASE.call_once(|| virt.as_u64() as usize);

    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);

    let (counts, tsc) = calibrate()?;
    let counts_per_sec = counts * 1000 / CALIBRATION_MS;
    let tsc_per_sec = tsc * 1000 / CALIBRATION_MS;
    let initial = (counts_per_sec / u64::from(tick_hz)).clamp(1, u64::from(u32::MAX)) as u32;
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, initial);
    Ok(TimerInfo { apic_id: read(REG_ID) >> 24, counts_per_sec, tick_hz, tsc_per_sec })
}

/// Counts APIC timer ticks during `CALIBRATION_MS` measured by PIT channel 2 (one-shot, gated
/// through port 0x61, whose bit 5 goes high when the count reaches zero).
fn calibrate() -> Result<(u64, u64), ApicError> {
    let pit_count = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // SAFETY: PIT channel 2 and the speaker gate port are fixed legacy devices used by nothing else in this kernel.
    unsafe {
        let mut gate = Port::<u8>::new(0x61);
        let mut mode = Port::<u8>::new(0x43);
        let mut ch2 = Port::<u8>::new(0x42);
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // gate on, speaker off
        mode.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(pit_count as u8);
        ch2.write((pit_count >> 8) as u8);
        let g = gate.read() & !0x01;
        gate.write(g); // restart the count: gate low, then high
        gate.write(g | 0x01);

        write(REG_LVT_TIMER, LVT_MASKED);
        write(REG_TIMER_INITIAL, u32::MAX);
        let tsc0 = core::arch::x86_64::_rdtsc();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let tsc = core::arch::x86_64::_rdtsc().wrapping_sub(tsc0);
        let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
        write(REG_TIMER_INITIAL, 0);
        if elapsed == 0 {
            return Err(ApicError::TimerStuck);
        }
        Ok((u64::from(elapsed), tsc))
    }
}

/// Acknowledges the interrupt being handled.
/// This CPU's local APIC id (0 before `init`).
pub fn id() -> u8 {
    if BASE.get().is_none() {
        return 0;
    }
    (read(REG_ID) >> 24) as u8
}

pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}
