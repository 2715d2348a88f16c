//! Memory management: physical frames, page tables, the kernel's virtual address space and heap.
//!
//! The bookkeeping (`frame`, `grow`) is plain logic tested on the host; the parts that touch page
//! tables and the CPU are built only for the kernel.
pub mod frame;
pub mod grow;

#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
pub use kernel::*;
#[cfg(target_os = "none")]
pub mod space;

pub const PAGE_SIZE: u64 = 4096;

/// Rounds `x` up to a multiple of `align` (a power of two).
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}
