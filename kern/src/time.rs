//! Kernel time: the periodic timer's tick count.
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static TICKS: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU32 = AtomicU32::new(0);

/// Called from the timer interrupt.
pub fn on_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

pub fn set_hz(hz: u32) {
    HZ.store(hz, Ordering::Relaxed);
}

/// Timer interrupts since the timer was started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);

/// Records the time-stamp counter's rate; `uptime_ns` counts from this call.
pub fn set_tsc_hz(hz: u64) {
    TSC_BASE.store(rdtsc(), Ordering::Relaxed);
    TSC_HZ.store(hz, Ordering::Relaxed);
}

pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects and exists on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds since the timer was started, from the time-stamp counter (tick-based before it
/// is calibrated). Under `-icount` it counts guest instructions instead of host time.
pub fn uptime_ns() -> u64 {
    match TSC_HZ.load(Ordering::Relaxed) {
        0 => uptime_ms() * 1_000_000,
        hz => (u128::from(rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed))) * 1_000_000_000 / u128::from(hz)) as u64,
    }
}

/// `ns` nanoseconds in timer ticks, rounded up (at least 1; unbounded before the timer runs).
pub fn ns_to_ticks(ns: u64) -> u64 {
    match HZ.load(Ordering::Relaxed) {
        0 => u64::MAX,
        hz => (u128::from(ns) * u128::from(hz)).div_ceil(1_000_000_000).clamp(1, u128::from(u64::MAX)) as u64,
    }
}

/// Milliseconds since the timer was started (0 before).
pub fn uptime_ms() -> u64 {
    match HZ.load(Ordering::Relaxed) {
        0 => 0,
        hz => ticks() * 1000 / u64::from(hz),
    }
}
