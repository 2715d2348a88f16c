//! Boot sequence and what the kernel does once up.
use spin::Once;

use crate::cmdline::{self, Cmdline};
#[cfg(not(feature = "ktest"))]
use crate::console;
use crate::{arch, logger, memory, time};

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 100;

static CMDLINE: Once<Cmdline> = Once::new();

pub fn cmdline() -> &'static Cmdline {
    CMDLINE.call_once(Cmdline::default)
}

pub fn init(boot_info: &'static mut bootloader_api::BootInfo) {
    arch::init_early();
    logger::init(log::LevelFilter::Info);
    log::info!("graft kernel {} booting", env!("CARGO_PKG_VERSION"));

    if let Err(e) = memory::init(boot_info.physical_memory_offset.into_option(), &boot_info.memory_regions) {
        panic!("memory initialisation failed: {e}");
    }
    let line = arch::fwcfg::cmdline();
    let cmd = cmdline::parse(&line).unwrap_or_else(|e| {
        log::warn!("{e}; using the defaults");
        Cmdline::default()
    });
    log::set_max_level(cmd.log_level);
    CMDLINE.call_once(|| cmd);

    let frames = memory::frame_stats();
    log::info!("memory: {} MiB usable, {} KiB used", frames.total * 4 / 1024, frames.allocated * 4);
    match arch::init_interrupts(TICK_HZ) {
        Ok(t) => {
            time::set_hz(t.tick_hz);
            log::info!("timer: local APIC {} at {} Hz ({} counts/s)", t.apic_id, t.tick_hz, t.counts_per_sec);
        }
        Err(e) => panic!("timer initialisation failed: {e}"),
    }
}

pub fn run() -> ! {
    #[cfg(feature = "ktest")]
    crate::ktest::run_all(cmdline().test_filter.as_deref());

    #[cfg(not(feature = "ktest"))]
    match cmdline().mode {
        cmdline::Mode::Demo => demo(),
        cmdline::Mode::Shell => console::shell(),
    }
}

/// The non-interactive run of `./run.sh`: show that the machine is up, then power off.
#[cfg(not(feature = "ktest"))]
fn demo() -> ! {
    let start = time::ticks();
    while time::ticks() < start + 5 {
        arch::wait_for_interrupt();
    }
    console::print_status();
    log::info!("demo finished; powering off");
    arch::exit_qemu(arch::QemuExit::Success)
}
