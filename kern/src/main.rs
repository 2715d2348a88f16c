//! The kernel's entry point: the bootloader jumps to `kernel_main` with the boot information.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod bare {
    use bootloader_api::config::{BootloaderConfig, Mapping};
    use bootloader_api::{BootInfo, entry_point};

    /// What we ask of the bootloader: all of physical memory mapped at an offset it chooses (page
    /// tables and frame contents are reached through it) and a kernel stack deep enough for the
    /// in-kernel compiler.
    pub static BOOTLOADER_CONFIG: BootloaderConfig = {
        let mut config = BootloaderConfig::new_default();
        config.mappings.physical_memory = Some(Mapping::Dynamic);
        // Everything the bootloader places (kernel image, stack, boot info, physical-memory
        // window, ramdisk) goes into the higher half, so that the lower half is free for user
        // address spaces, which share only the kernel's higher-half level-4 entries.
        config.mappings.dynamic_range_start = Some(0xFFFF_8000_0000_0000);
        config.kernel_stack_size = 512 * 1024;
        config
    };

    entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

    fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
        kern::init::init(boot_info);
        kern::init::run()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        kern::arch::panic(info)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kern is a bare-metal kernel: build it with `./run.sh` (target x86_64-unknown-none)");
    std::process::exit(2);
}
