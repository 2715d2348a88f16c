//! Boot sequence and what the kernel does once up.
use spin::Once;

use crate::cmdline::{self, Cmdline};
#[cfg(not(any(feature = "ktest", feature = "bench")))]
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
    enable_write_protect();
    match boot_info.ramdisk_addr.into_option() {
        Some(addr) => match crate::fs::ramdisk::init(addr, boot_info.ramdisk_len) {
            Ok(n) => log::info!("ramdisk: {n} files, {} KiB", boot_info.ramdisk_len / 1024),
            Err(e) => log::error!("ramdisk unreadable: {e:?}"),
        },
        None => log::info!("no ramdisk"),
    }
    let line = arch::fwcfg::cmdline();
    let cmd = cmdline::parse(&line).unwrap_or_else(|e| {
        log::warn!("{e}; using the defaults");
        Cmdline::default()
    });
    log::set_max_level(cmd.log_level);
    CMDLINE.call_once(|| cmd);

    crate::cpu::init();
    install_handlers();

    log::info!("kernel at {:#x}, physical memory window at {:#x}", kernel_main_addr(), boot_info.physical_memory_offset.into_option().unwrap_or(0));
    let frames = memory::frame_stats();
    log::info!("memory: {} MiB usable, {} KiB used", frames.total * 4 / 1024, frames.allocated * 4);
    match arch::init_interrupts(TICK_HZ) {
        Ok(t) => {
            time::set_hz(t.tick_hz);
            time::set_tsc_hz(t.tsc_per_sec);
            log::info!("timer: local APIC {} at {} Hz ({} counts/s)", t.apic_id, t.tick_hz, t.counts_per_sec);
        }
        Err(e) => panic!("timer initialisation failed: {e}"),
    }
    crate::dev::init();
    match crate::fs::disk::mount(cmdline().cache_blocks) {
        Ok(s) => log::info!(
            "file system: ext2 on vda mounted at /, {} KiB blocks, {} of {} free, cache of {} blocks",
            s.block_size / 1024,
            s.free_blocks,
            s.blocks,
            cmdline().cache_blocks
        ),
        Err(crate::fs::disk::MountError::NoDisk) => log::info!("file system: no disk"),
        Err(e) => log::warn!("file system: not mounted: {e}"),
    }
}

/// Registers the kernel's handlers with `arch`, which calls them and never names what is
/// behind them.
fn install_handlers() {
    arch::install_handlers(arch::Handlers {
        timer: on_timer,
        kernel_fault: on_kernel_fault,
        user_fault: crate::task::on_user_fault,
        syscall: crate::syscall::dispatch,
        #[cfg(feature = "bench")]
        debug_step: Some(crate::bench::on_step),
        #[cfg(not(feature = "bench"))]
        debug_step: None,
    });
}

fn on_timer(frame: &mut arch::trap::TrapFrame) {
    time::on_tick();
    // A graft call past its time limit is stopped first; the scheduler never switches away
    // from a graft call.
    crate::graft::jit::watchdog(frame);
    crate::task::on_tick();
}

/// A CPU exception in kernel mode: a fault inside graft code aborts the call; a system call's
/// copy that touched user memory not yet backed (a not-present fault) gets the page.
fn on_kernel_fault(frame: &mut arch::trap::TrapFrame) -> bool {
    const NOT_PRESENT_MASK: u64 = 1;
    crate::graft::jit::on_fault(frame)
        || (frame.vector == 14
            && frame.error_code & NOT_PRESENT_MASK == 0
            && crate::task::resolve_kernel_fault(arch::page_fault_address()))
}

pub fn run() -> ! {
    #[cfg(feature = "ktest")]
    crate::ktest::run_all(cmdline().test_filter.as_deref());

    #[cfg(feature = "bench")]
    crate::bench::run();

    #[cfg(not(any(feature = "ktest", feature = "bench")))]
    {
        let mode = cmdline().mode;
        if crate::fs::ramdisk::file("bin/init").is_some() {
            match crate::task::spawn_init("bin/init", &["bin/init", mode.as_str()]) {
                Ok(pid) => log::info!("started init (process {}) in {} mode", pid.0, mode.as_str()),
                Err(e) => panic!("cannot start bin/init: {e}"),
            }
            crate::task::idle();
        }
        log::warn!("no bin/init in the ramdisk: kernel console only");
        match mode {
            cmdline::Mode::Shell => console::shell(),
            _ => demo(),
        }
    }
}

/// Makes the kernel honour read-only pages too, so that a copy to a read-only user page faults
/// (and is refused) instead of silently writing it.
fn enable_write_protect() {
    use ::x86_64::registers::control::{Cr0, Cr0Flags};
    // SAFETY: the kernel never writes to its own read-only mappings.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// The non-interactive run of `./run.sh`: show that the machine is up, then power off.
#[cfg(not(any(feature = "ktest", feature = "bench")))]
fn demo() -> ! {
    let start = time::ticks();
    while time::ticks() < start + 5 {
        arch::wait_for_interrupt();
    }
    console::print_status();
    log::info!("demo finished; powering off");
    arch::exit_qemu(arch::QemuExit::Success)
}

fn kernel_main_addr() -> u64 {
    init as *const () as u64
}
