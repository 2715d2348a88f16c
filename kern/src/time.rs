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

/// Milliseconds since the timer was started (0 before).
pub fn uptime_ms() -> u64 {
    match HZ.load(Ordering::Relaxed) {
        0 => 0,
        hz => ticks() * 1000 / u64::from(hz),
    }
}
